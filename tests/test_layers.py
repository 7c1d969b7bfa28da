"""The house's layers, enforced on the source (every import statement, lazy ones included, read with ``ast``):
imports run downward only, no workbench module is imported inside a function, the models never reach the
attacks, the Oracle holds no speed machinery of its own, attacks never read the Oracle's state, and the
evaluation, the grids and the report build no Oracle of their own (they go through the run path)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

# Layer of every module (by dotted name without "workbench."; a package's entry covers its modules). A module may
# import a lower layer, or a module of its own package in the same layer; never a higher layer or a peer package.
LAYERS = {
    0: ("checks", "paths", "losses"),
    0.5: ("threat", "transforms"),
    1: ("cache", "protocol", "results", "registry"),
    1.5: ("stateful",),
    2: ("data", "models", "probes", "metrics", "published"),
    3: ("speed", "setting"),
    4: ("oracle",),
    5: ("attacks", "defenses"),
    6: ("runs",),
    7: ("plots", "report", "experiment"),
    8: ("evaluate", "experiments", "widgets", "training", "detection"),
    9: ("leaderboard",),
    10: ("course",),
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names}
ENTRY_POINTS = ("models.__main__",)  # command-line entry points, never imported by the library


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, inside_functions: bool = False) -> set[str]:
    """The workbench modules ``path`` imports (without the ``workbench.`` prefix); only those imported inside a
    function with ``inside_functions``."""
    tree = ast.parse(path.read_text())
    scopes = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))] \
        if inside_functions else [tree]
    found = set()
    for scope in scopes:
        for node in ast.walk(scope):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
                if node.module == "workbench":
                    found.update(alias.name for alias in node.names)
                else:
                    found.add(node.module.removeprefix("workbench."))
            elif isinstance(node, ast.Import):
                found.update(a.name.removeprefix("workbench.") for a in node.names if a.name.startswith("workbench."))
    return found


def _rank(module: str) -> int:
    top = module.split(".")[0]
    if top not in RANK:
        raise AssertionError(f"workbench.{module} has no layer in tests/test_layers.py: add it to LAYERS")
    return RANK[top]


@pytest.mark.parametrize("module", [m for m in _modules() if m and m not in ENTRY_POINTS])
def test_imports_run_downward_only(module):
    path = _modules()[module]
    for dep in _imports(path):
        same_package = dep.split(".")[0] == module.split(".")[0]
        assert _rank(dep) < _rank(module) or (same_package and _rank(dep) == _rank(module)), \
            f"workbench.{module} (layer {_rank(module)}) imports workbench.{dep} (layer {_rank(dep)})"


def test_no_workbench_module_is_imported_inside_a_function():
    lazy = {m: _imports(p, inside_functions=True) for m, p in _modules().items()}
    assert not {m: deps for m, deps in lazy.items() if deps}


def test_the_models_never_reach_the_attacks():
    modules = _modules()
    graph = {m: _imports(p) for m, p in modules.items() if m not in ENTRY_POINTS}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for dep in graph.get(m, ()):
                dep = dep if dep in graph else dep.rsplit(".", 1)[0]  # "from workbench.x import name"
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for module in (m for m in graph if m.split(".")[0] == "models"):
        assert not {m for m in reach(module) if m.startswith(("attacks", "training"))}, module


def test_the_oracle_holds_no_speed_machinery():
    """The Oracle calls the speed fence's interface (``speed.Forwards``) and never probes a model itself."""
    source = (PACKAGE / "oracle.py").read_text()
    assert "speed" in _imports(PACKAGE / "oracle.py") and "probe(" not in source


# The seams inside the grid package: what each module may import of its siblings (the command line imports any).
EXPERIMENTS = {"experiments.cells": set(), "experiments.execution": {"experiments.cells"},
               "experiments.presets": {"experiments.cells"}, "experiments.tables": {"experiments.presets"}}


@pytest.mark.parametrize("module", sorted(EXPERIMENTS))
def test_the_grid_package_keeps_its_seams(module):
    """Cells (schema, validation) know nothing of running; execution and the presets (data) build on cells only;
    the tables read the presets' names."""
    siblings = {d for d in _imports(_modules()[module]) if d.startswith("experiments.")}
    assert siblings <= EXPERIMENTS[module], f"workbench.{module} imports {sorted(siblings - EXPERIMENTS[module])}"


def test_the_speed_machinery_is_fenced():
    """Outside ``workbench/speed/`` the library imports only the package's interface (``workbench.speed``), never
    its modules (forward, threads, inference, the AAA solver's backends)."""
    reached = {m: sorted(d for d in _imports(p) if d.startswith("speed."))
               for m, p in _modules().items() if m.split(".")[0] != "speed"}
    assert not {m: deps for m, deps in reached.items() if deps}


def test_attacks_read_no_oracle_state():
    """Under attacks/, an ``oracle`` object is only ever asked to ``run`` a loop (or checked for its type)."""
    for path in sorted((PACKAGE / "attacks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "oracle":
                pytest.fail(f"{path.name}:{node.lineno} reads oracle.{node.attr}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) and node.attr != "serve":
                func = node.value.func
                if isinstance(func, ast.Name) and func.id == "fresh":
                    pytest.fail(f"{path.name}:{node.lineno} reads fresh(oracle).{node.attr}")


@pytest.mark.parametrize("name", ["evaluate", "experiments.cells", "experiments.execution", "report"])
def test_evaluation_grids_and_report_build_no_oracle(name):
    path = _modules()[name]
    assert "oracle" not in _imports(path)
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "Oracle"]
    assert not calls


def _carries_setting(value: object, setting: tuple) -> bool:
    """Whether one argument of a call carries the cell's setting: the cell, the protocol entry, the threat, the
    target or the experiment object themselves, the names of the cell's dataset, model, defense or attack, or
    its eps."""
    if isinstance(value, (str, float)):
        return value in setting[1]
    if isinstance(value, (list, tuple)):
        return any(_carries_setting(v, setting) for v in value)
    if isinstance(value, dict):
        return any(_carries_setting(v, setting) for v in value.values())
    return any(value is s for s in setting[0]) or type(value).__name__ in ("Protocol", "Threat", "Target", "Experiment")


def _cell_path() -> list[tuple[str, str]]:
    """The stops of one grid cell's setting from ``run_cell`` down to the Oracle, in order: every call of a
    workbench function that receives the setting (one of its arguments carries it: ``_carries_setting``) and
    passes it on (a call below it receives it too), up to the attack's first query, as (module, function).
    Argument checks (``checks``) and other leaves (a lookup, a validation, a constructor that keeps it) end a path
    and are not stops."""
    import sys

    from workbench import experiments

    c = experiments.cell(dataset="mnist", defense="none", attack="square", n=4, budgets=(10,))
    setting = ((c,), {"mnist", "mnist5k", 0.3, c.model, c.defense, c.attack})
    calls: list[tuple[str, str]] = []  # every call that receives the setting, in order
    passes: set[int] = set()  # the ones a later call below them received it from
    active: list[tuple[object, int | None]] = []  # the workbench frames running, with their index in calls
    done = False

    def profile(frame, event, arg):
        nonlocal done
        code = frame.f_code
        if done or not code.co_filename.startswith(str(PACKAGE)) or code.co_filename == str(PACKAGE / "checks.py"):
            return
        if event == "return":
            if active and active[-1][0] is frame:
                active.pop()
            return
        if event != "call":
            return
        if code.co_name == "query" and code.co_filename == str(PACKAGE / "oracle.py"):
            done = True  # the first query ends the path
            return
        count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 4) + bool(code.co_flags & 8)
        args = [frame.f_locals.get(name) for name in code.co_varnames[:count]]
        index = None
        if any(_carries_setting(a, setting) for a in args):
            module = Path(code.co_filename).relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
            index = len(calls)
            calls.append((module.removesuffix(".__init__"), code.co_name))
            above = next((i for _, i in reversed(active) if i is not None), None)
            if above is not None:
                passes.add(above)
        active.append((frame, index))

    sys.setprofile(profile)
    try:
        experiments.run_cell(c, device="cpu")
    finally:
        sys.setprofile(None)
    return [call for i, call in enumerate(calls) if i in passes]


def test_a_grid_cell_carries_its_setting_in_few_stops():
    """Issue 41's measure of how far one cell's setting travels: the calls that pass it on (``_cell_path``), the
    files they are in, and the climbs (a stop in a higher layer than the stop before it: the path went back up).
    Counted this way, at the commit before the experiment object: 33 stops in 9 files, 8 climbs (the dataset
    looked up by name six times on the way); with it: 20 stops in 11 files, 5 climbs, the protocol resolved once.
    (The issue counted 63 stops, 15 files and 32 climbs its own way; counting every call that receives the setting,
    leaves included, gives 72 / 13 / 13 before and 39 / 15 / 11 after.)"""
    stops = _cell_path()
    files = {module for module, _ in stops}
    climbs = sum(_rank(b[0]) > _rank(a[0]) for a, b in zip(stops, stops[1:]))
    print(f"{len(stops)} stops in {len(files)} files, {climbs} climbs:", *stops, sep="\n  ")
    assert len(stops) <= 35 and len(files) <= 12 and climbs <= 12
