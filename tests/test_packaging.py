"""The two dependency lists agree, notebooks are stored without outputs, the README documents the commands."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1].splitlines()
    listed = {_name(line.strip()[2:]) for line in pip_section
              if line.strip().startswith("- ") and not line.strip().startswith("- -e")}
    assert listed == wanted


def test_notebooks_are_numbered_and_stored_without_outputs():
    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert books
    for path in books:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def test_readme_gives_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make figures" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


LOWER = ("checks", "threat", "results", "losses", "data", "oracle", "metrics", "paths")


def _imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_imports_run_downward_only():
    """Nothing below the Oracle imports attacks or defenses (anywhere in the module, lazy imports included), the
    threat layer imports no other workbench module but checks, and no lazy-import workaround is left."""
    package = ROOT / "workbench"
    for name in LOWER:
        upward = {m for m in _imports(package / f"{name}.py") if m.startswith(("workbench.attacks",
                                                                             "workbench.defenses"))}
        assert not upward, f"workbench/{name}.py imports {sorted(upward)}"
    assert {m for m in _imports(package / "threat.py") if m.startswith("workbench")} <= {"workbench", "workbench.checks"}
    assert "__getattr__" not in (package / "attacks" / "__init__.py").read_text()
