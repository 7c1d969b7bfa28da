"""Experiment grids: defense x attack x budget x seed cells, run once each, cached on disk, resumable, returned
as one tidy pandas DataFrame (one row per cell).

A :class:`Cell` names everything a run depends on (dataset, model, defense and its arguments, attack and its
arguments, norm, eps, budgets, number of images, seed) and ``key()`` identifies it. Its attack runs through the
one run path (``workbench.runs``), whose per-image records are cached in ``cache_dir`` atomically under a hash of
everything they depend on, the weights fingerprint included: running the same grid again attacks nothing, and a
run killed at any point resumes without losing or recomputing a finished attack; cells computed with a retrained
model are never mixed with older ones.

Every budget of a cell comes from one attack run with the largest budget (the workbench's protocol). Each row
holds clean accuracy, agreement with the undefended predictions, logit difference, ECE (all on the attacked
images), robust accuracy at every budget as the attacker saw it, the re-evaluated robust accuracy (fresh queries
on the final images) for randomized or batch-dependent defenses, mean / median queries of the successes, wall
time (the attack's as computed, also when read from the cache, plus the cell's set-up), and provenance
(configuration, seed; package version, git commit, torch version and device of the run that computed the attack).

Cells run on this machine by default, one process per core (``workers``; a grid smaller than
``PARALLEL_WORK`` images x queries in this process), sharing the cache; ``executor="ray"`` runs them as Ray
tasks (optional dependency) so a cluster or several GPUs share a big grid.

Command line::

    python -m workbench.experiments smoke            # prints the table as markdown, writes smoke.csv
    python -m workbench.experiments mnist-table --csv results/mnist-table.csv

Example::

    >>> cells = grid(defenses=["none", "aaa-linear"], attacks=["square"], n=100, budgets=(100, 1000))
    >>> table = tabulate(cells)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import cache, checks, data, metrics, paths, protocol, runs, setting
from workbench.attacks import registry as attacks
from workbench.defenses import registry as defenses
from workbench.probes import IMAGES
from workbench.report import clean_metrics

EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a grid. ``eps=None`` takes the dataset's preset; ``weights`` is a local checkpoint for models
    without shipped weights (CIFAR-10 / ImageNet). A cell needs ``dataset`` or ``model``: the other is the zoo
    model's dataset, or the dataset's standard model (``setting.resolve``; there is no default dataset)."""

    dataset: str | None = None
    model: str | None = None
    defense: str = "none"
    defense_kwargs: tuple[tuple[str, Any], ...] = ()
    attack: str = "square"
    attack_kwargs: tuple[tuple[str, Any], ...] = ()
    norm: str = "linf"
    eps: float | None = None
    budgets: tuple[int, ...] = (100, 1000, 2500)
    n: int = 500
    seed: int = 0
    targeted: bool = False
    weights: str | None = None
    fingerprint: str = ""  # of the weights files, filled in by ``run``: a retrained model never reuses old cells

    def __post_init__(self) -> None:
        if self.dataset is None and self.model is None:
            raise ValueError("a cell needs dataset= or model= (a zoo model, whose dataset is then used)")
        if self.dataset is None:
            object.__setattr__(self, "dataset", setting.resolve(model=self.model, needed_by="a cell").name)
        if self.model is None and self.dataset in protocol.names():  # an unknown dataset: validate() names it
            object.__setattr__(self, "model", protocol.get(self.dataset).model)

    def config(self) -> dict[str, Any]:
        """The cell as plain JSON-able data."""
        cfg = dataclasses.asdict(self)
        cfg["defense_kwargs"] = dict(self.defense_kwargs)
        cfg["attack_kwargs"] = dict(self.attack_kwargs)
        cfg["budgets"] = list(self.budgets)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Cell:
        """The cell a recorded row's ``config`` (the JSON of :meth:`config`) describes; keys that are not cell
        fields (none today) are ignored."""
        return cell(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})

    def key(self) -> str:
        """The cell's identity: a hash of the configuration and the workbench version."""
        return cache.key({**self.config(), "workbench": cache.version()})


def cell(**fields: Any) -> Cell:
    """A :class:`Cell` from keyword arguments; dict-valued ``defense_kwargs`` / ``attack_kwargs`` and list
    budgets are turned into their hashable forms."""
    for name in ("defense_kwargs", "attack_kwargs"):
        if isinstance(fields.get(name), dict):
            fields[name] = tuple(sorted(fields[name].items()))
    if "budgets" in fields:
        fields["budgets"] = checks.sequence("budgets", fields["budgets"])  # validate() checks them
    for name in ("n", "seed"):
        if name in fields:
            fields[name] = checks.integer(name, fields[name])
    if fields.get("eps") is not None:
        fields["eps"] = checks.number("eps", fields["eps"])
    unknown = set(fields) - set(Cell.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown cell fields {sorted(unknown)}; choose from {', '.join(Cell.__dataclass_fields__)}")
    return Cell(**fields)


def grid(*, defenses: Sequence[str], attacks: Sequence[str], seeds: Sequence[int] = (0,), **common: Any) -> list[Cell]:
    """The cross product defenses x attacks x seeds, with ``common`` fields shared by every cell."""
    return [cell(defense=d, attack=a, seed=s, **common) for d, a, s in itertools.product(defenses, attacks, seeds)]


# ------------------------------------------------------------------------------------------------- checks
def validate(cells: Sequence[Cell], cache_dir: str | Path | None = None) -> None:
    """Fail before anything runs, naming the cell (its index) and the field: every field is checked, every attack
    and defense is built with its keyword arguments (defenses on a tiny dummy classifier), and the cache folder
    must be writable."""

    if not cells:
        raise ValueError("the grid has no cells")
    for i, c in enumerate(cells):
        where = f"cell {i} ({c.defense} x {c.attack})"
        if not isinstance(c, Cell):
            raise ValueError(f"cell {i} must be a Cell (experiments.cell(...)), got {type(c).__name__}")
        _field(where, "dataset", lambda: protocol.get(c.dataset))
        if c.model is None:
            raise ValueError(f"{where}: field model: dataset {c.dataset!r} names no standard model; give model=")
        _field(where, "defense", lambda: defenses.factory(c.defense))
        _field(where, "attack", lambda: checks.choice("attack", c.attack, attacks.names()))
        _field(where, "norm", lambda: checks.choice("norm", c.norm, checks.NORMS))
        if c.eps is not None:
            _field(where, "eps", lambda: checks.positive("eps", c.eps))
        _field(where, "n", lambda: checks.at_least("n", c.n, 1))
        _field(where, "seed", lambda: checks.at_least("seed", c.seed, 0))
        _field(where, "targeted", lambda: checks.flag("targeted", c.targeted))
        entry = protocol.get(c.dataset)
        if c.n > entry.attacked:
            raise ValueError(f"{where}: n={c.n} would reach the last {entry.held_out} of the {entry.test_size} "
                             f"{c.dataset} test images, held out for calibration (at most {entry.attacked})")
        _field(where, "budgets", lambda: checks.budgets("budgets", c.budgets))
        allowed = attacks.parameters(c.attack) + ("eot",)
        for key, _ in c.attack_kwargs:
            if key not in allowed or key in ("norm", "eps", "seed", "progress"):
                raise ValueError(f"{where}: attack_kwargs has {key!r}, not an argument of attack {c.attack!r} "
                                 f"(norm, eps and seed are cell fields)")
        kwargs = {**dict(c.attack_kwargs), **({"eps": c.eps} if c.eps is not None else {})}
        _field(where, "attack_kwargs", lambda: attacks.build(c.attack, dataset=c.dataset, norm=c.norm, seed=c.seed,
                                                             progress=False, **kwargs))
        _field(where, "defense_kwargs", lambda: defenses.check(c.defense, c.dataset, **dict(c.defense_kwargs)))
    if cache_dir is not None:
        cache.writable(Path(cache_dir))


def _field(where: str, name: str, check) -> None:
    try:
        check()
    except ValueError as err:
        raise ValueError(f"{where}: field {name}: {err}") from None


# ---------------------------------------------------------------------------------------------- one cell
def run_cell(c: Cell, device: str | torch.device | None = None, progress: bool = False,
             cache_dir: str | Path | None = None, recompute: bool = False) -> dict[str, Any]:
    """Run one cell through the run path (``runs.run``: its record is cached under ``cache_dir``) and return its
    row (see the module docstring)."""
    start = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(c.seed)
    entry = protocol.get(c.dataset)
    test = data.load(c.dataset, "test")
    x, y = test[:c.n]
    target = runs.target(c.defense, c.model, dataset=c.dataset, weights=c.weights,
                            held_out=test[len(test) - entry.held_out:], seed=c.seed, device=device,
                            probe_images=test.x[:IMAGES], **dict(c.defense_kwargs))
    clean = clean_metrics(target.defended, target.undefended, x, y)
    targets = None
    if c.targeted:
        gen = torch.Generator().manual_seed(c.seed)
        k = test.num_classes
        targets = (y + torch.randint(1, k, y.shape, generator=gen)) % k
    kwargs = dict(c.attack_kwargs)
    eot = kwargs.pop("eot", 1)
    attack_start = time.perf_counter()
    record = runs.run(target, c.attack, x, y, budget=c.budgets[-1], dataset=c.dataset, norm=c.norm, eps=c.eps,
                      seed=c.seed, eot=eot, targets=targets, attack_kwargs=kwargs, cache_dir=cache_dir,
                      recompute=recompute, progress=progress)
    # the attack's wall time as computed (also when its record comes from the cache: a resumed grid reports what
    # the cells cost), plus this call's set-up and clean metrics
    seconds = record.seconds + attack_start - start
    stats = metrics.query_stats(record)
    row = {"dataset": c.dataset, "model": c.model, "defense": c.defense, "attack": c.attack, "norm": c.norm,
           "eps": c.eps if c.eps is not None else entry.eps[c.norm], "n": c.n, "seed": c.seed,
           "targeted": c.targeted, **clean, **{f"robust@{b}": record.robust_accuracy(b) for b in c.budgets},
           "re-evaluated": record.final_accuracy, "mean queries": stats["mean_queries"],
           "median queries": stats["median_queries"], "seconds": seconds, "key": c.key(),
           "config": json.dumps(c.config(), sort_keys=True, default=str),
           **(record.computed or runs.provenance(device))}
    return row


# --------------------------------------------------------------------------------------------- the grid
def cache_dir_default() -> Path:
    return paths.data_dir() / "experiments"


def weights_fingerprint(c: Cell) -> str:
    """The fingerprint (``runs.fingerprint``) of the weights files the cell's model (and its zoo variant, for
    ``at`` / ``rnd-gf``) load from."""
    return runs.fingerprint(c.model, c.weights, defenses.variant(c.defense))


def _fingerprinted(cells: list[Cell]) -> list[Cell]:
    prints: dict[tuple, str] = {}
    out = []
    for c in cells:
        which = (c.model, c.weights, defenses.variant(c.defense))
        if which not in prints:
            prints[which] = weights_fingerprint(c)
        out.append(dataclasses.replace(c, fingerprint=prints[which]))
    return out


def tabulate(cells: Sequence[Cell], *, executor: str = "local", workers: int | None = None,
        cache_dir: str | Path | None = None, device: str | None = None, progress: bool = True,
        recompute: bool = False) -> pd.DataFrame:
    """Run every cell and return all rows as a DataFrame (in the cells' order). Each cell's attack run goes
    through ``runs.run``, whose records are cached in ``cache_dir``: a cell whose record is there (and valid) is
    not attacked again (``recompute``: every attack runs again, and its record is rewritten).

    ``executor="local"`` runs the cells on this machine in ``workers`` processes at once, each on its share of this
    process's threads, so that together they do not oversubscribe the cores; they share the cache, so a killed
    run resumes. Default: one per core on a CPU (one on a GPU) for a grid of at least ``PARALLEL_WORK`` images x
    queries, else this process; 1: this process. ``"ray"``: Ray tasks."""
    checks.choice("executor", executor, EXECUTORS)
    recompute, progress = checks.flag("recompute", recompute), checks.flag("progress", progress)
    if workers is not None:
        workers = checks.at_least("workers", workers, 1)
    cells = list(cells)
    folder = Path(cache_dir) if cache_dir is not None else cache_dir_default()
    validate(cells, folder)
    cells = _fingerprinted(cells)
    rows: dict[str, dict[str, Any]] = {}
    todo = list({c.key(): c for c in cells}.values())
    if workers is None:  # a small grid stays here: a fresh process costs seconds of imports before its first cell
        work = sum(c.n * c.budgets[-1] for c in todo)
        workers = default_workers(device) if work >= PARALLEL_WORK else 1
    workers = min(len(todo), workers)
    with tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress) as bar:
        if executor == "ray":
            _run_ray(todo, folder, device, recompute, rows, bar)
        elif workers > 1:
            _run_processes(todo, folder, device, recompute, rows, bar, workers)
        else:
            for c in todo:
                bar.set_postfix_str(f"{c.defense} x {c.attack} seed {c.seed}", refresh=True)
                rows[c.key()] = run_cell(c, device, progress, folder, recompute)
                bar.update(1)
    return pd.DataFrame([rows[c.key()] for c in cells])


# Images x largest budget summed over a grid's cells from which the local executor starts worker processes by
# default: a spawned process imports torch and the workbench (about 4 s here) before its first cell, which a
# notebook's small fast-mode grid (and the smoke preset) would only wait for.
PARALLEL_WORK = 200_000


def default_workers(device: str | None) -> int:
    """Processes a local grid runs at once by default: one per core this process may use on a CPU, one on a GPU."""
    if device is not None and torch.device(device).type != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_processes(todo: list[Cell], folder: Path, device: str | None, recompute: bool, rows: dict, bar,
                   workers: int) -> None:
    """The cells in ``workers`` fresh processes ("spawn": nothing of this process's state is copied), each on
    ``threads // workers`` threads (at least one) of this process's ``threads``."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_cell, c, device, False, folder, recompute): c for c in todo}
        for done in as_completed(futures):
            rows[futures[done].key()] = done.result()
            bar.update(1)


def _run_ray(todo: list[Cell], folder: Path, device: str | None, recompute: bool, rows: dict, bar) -> None:
    start_ray()
    import ray  # optional, heavy: imported only for executor="ray" (start_ray says how to install it)

    task = ray.remote(run_cell)
    pending = {task.remote(c, device, False, folder, recompute): c for c in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        c = pending.pop(done[0])
        rows[c.key()] = ray.get(done[0])
        bar.update(1)


# Ray gives a new local node a fixed 30 s (ray/_private/node.py, not configurable) to start its GCS, raylet and
# agents, about ten Python and C++ processes. On this 2-core machine that took 8 s quiet, 13-14 s beside two
# busy processes and 21 s beside four: a test run beside a busy core can miss it. Each miss is retried.
RAY_STARTS = 3


def start_ray(**options: Any) -> None:
    """Start a local Ray (no dashboard, workers' logs kept out of the driver's output; ``options`` go to
    ``ray.init``) unless one is running. Where Ray's own startup times out on a busy machine, the processes that
    attempt left behind are stopped and Ray is started again, up to ``RAY_STARTS`` times in all."""
    try:
        import ray
    except ImportError:
        raise ValueError("executor='ray' needs Ray: pip install 'ray[default]' (or use executor='local')") from None
    import psutil  # installed with Ray's extra (and with Jupyter)

    if ray.is_initialized():
        return
    for attempt in range(1, RAY_STARTS + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **options})
            return
        except Exception as error:  # Ray raises a bare Exception when its node misses the startup limit
            if "timed out during startup" not in str(error):
                raise
            _stop_new_children(before)
            if attempt == RAY_STARTS:
                raise RuntimeError(f"Ray did not start in {RAY_STARTS} attempts of Ray's fixed 30 s each (the "
                                   "machine is busy): run again when it is quieter, or use executor='local'") from error
            warnings.warn(f"Ray's startup timed out (attempt {attempt} of {RAY_STARTS}, a busy machine); "
                          "starting it again", RuntimeWarning, stacklevel=2)


def _stop_new_children(before: set[int]) -> None:
    """Stop this process's child processes that are not in ``before`` (what a failed Ray start left running)."""
    import psutil

    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in new:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(new, timeout=10)


# ---------------------------------------------------------------------------------------------- presets


def _presets() -> dict[str, list[Cell]]:
    SQAS = attacks.suite("standard")  # noqa: N806 (the table's column order: the suite, as the papers list it)
    every = list(defenses.names())
    mnist = {"dataset": "mnist", "model": "mnist-cnn"}
    cifar = {"dataset": "cifar10-jpeg", "model": "cifar10-resnet20"}
    return {
        "smoke": grid(defenses=["none", "aaa-linear"], attacks=["square", "signhunter"], n=20, budgets=(10, 50),
                      **mnist),
        # DENT costs ~20 forward passes per query on a CPU: its row uses 20 images to keep the table under 30 min
        "mnist-table": [c if c.defense != "dent" else dataclasses.replace(c, n=20)
                        for c in grid(defenses=every, attacks=SQAS, n=100, budgets=(100, 1000, 2500), **mnist)],
        "mnist-generalization": (
            grid(defenses=every, attacks=["square"], n=100, budgets=(100, 1000), targeted=True, **mnist)
            + grid(defenses=every, attacks=["square"], n=100, budgets=(100, 1000), norm="l2", **mnist)),
        "mnist-adaptive": (
            grid(defenses=["aaa-linear", "aaa-sine"], attacks=["square", "square-op", "square-bi"], n=100,
                 budgets=(100, 1000), **mnist)
            + [cell(defense=d, attack="square", attack_kwargs={"eot": m}, n=100, budgets=(100 * m, 300 * m), **mnist)
               for d in ("rnd", "snd") for m in (1, 5)]),
        "mnist-seeds": grid(defenses=["none", "aaa-linear", "unig", "rnd"], attacks=["square"], seeds=range(5),
                            n=100, budgets=(100, 1000), **mnist),
        # CIFAR-10 (JPEG q75) with the shipped ResNet-20 zoo: the papers' threat model on a CPU; DENT's row uses
        # 20 images (about 20 forward passes per query)
        "cifar10-table": [c if c.defense != "dent" else dataclasses.replace(c, n=20)
                          for c in grid(defenses=every, attacks=SQAS, n=100, budgets=(100, 1000, 2500), **cifar)],
        "cifar10-adaptive": (
            grid(defenses=["aaa-linear", "aaa-sine"], attacks=["square", "square-op", "square-bi"], n=100,
                 budgets=(100, 1000, 2500), **cifar)
            + [cell(defense=d, attack="square", attack_kwargs={"eot": m}, n=100, budgets=(100 * m, 1000 * m),
                    **cifar) for d in ("rnd", "snd") for m in (1, 5)]),
        # the papers' own setting, for a GPU and your data and weights (the defenses' CIFAR-10 defaults, e.g. UniG
        # delta 0.5, alpha 10, come from their specs)
        "cifar10-papers": grid(defenses=["none", "aaa-linear", "unig", "rnd", "dent"], attacks=SQAS, n=1000,
                               budgets=(100, 2500), dataset="cifar10", model="wrn-28-10"),
        "imagenet-table": grid(defenses=["none", "aaa-linear", "unig", "rnd"], attacks=SQAS, n=500,
                               budgets=(100, 2500), dataset="imagenet", model="resnet50"),
    }


def presets() -> tuple[str, ...]:
    """The preset names."""
    return tuple(_presets())


def preset(name: str) -> list[Cell]:
    """The cells of a preset grid."""
    table = _presets()
    checks.choice("name", name, tuple(table))
    return table[name]


def summarize(table: pd.DataFrame, value: str, index: str = "defense", columns: str = "attack") -> pd.DataFrame:
    """A defense x attack pivot of ``value``; over several seeds each entry is "mean ± std"."""
    grouped = table.groupby([index, columns], sort=False)[value]
    if grouped.size().max() == 1:
        return grouped.first().unstack(columns)
    stats = grouped.agg(["mean", "std"])
    text = stats.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1)
    return text.unstack(columns)


def with_kwargs(table: pd.DataFrame) -> pd.DataFrame:
    """The table with one column per attack / defense keyword argument that any cell set (from the ``config``
    column), e.g. ``eot`` for EOT cells; cells that did not set it get the attack's default (empty)."""
    configs = table["config"].map(json.loads)
    extra = pd.DataFrame([{**c["defense_kwargs"], **c["attack_kwargs"]} for c in configs], index=table.index)
    return table.join(extra)


def recorded(name: str) -> pd.DataFrame:
    """The table of preset ``name`` as last recorded by ``python -m workbench.experiments NAME --record`` (a
    measurement with its provenance columns: commit, versions, device, seconds per cell), for notebooks that show
    a grid too long to rerun in ``make figures``."""
    checks.choice("name", name, presets())
    path = paths.tables_dir() / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded table for preset {name!r} at {path}; make it with "
                                f"`python -m workbench.experiments {name} --record`")
    return pd.read_csv(path)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=presets())
    parser.add_argument("--csv", default=None, help="where to write the table (default: <preset>.csv)")
    parser.add_argument("--record", action="store_true",
                        help="also record the table as data/tables/<preset>.csv (what the notebooks show)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--workers", type=int, default=None,
                        help="local processes at once (default: one per core on a CPU; 1: in this process)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights", default=None, help="local checkpoint of the model (CIFAR-10 / ImageNet)")
    parser.add_argument("--recompute", action="store_true", help="ignore the cache: run every cell again")
    args = parser.parse_args(None if argv is None else list(argv))
    start = time.perf_counter()
    cells = preset(args.preset)
    if args.weights:
        cells = [dataclasses.replace(c, weights=args.weights) for c in cells]
    table = tabulate(cells, executor=args.executor, workers=args.workers, cache_dir=args.cache_dir, device=args.device,
                recompute=args.recompute)
    columns = ["defense", "attack", "norm", "targeted", "seed", "clean acc", "logit diff", "ECE"] + \
        [c for c in table.columns if c.startswith("robust@")] + ["re-evaluated", "mean queries", "seconds"]
    print(table[columns].to_markdown(index=False, floatfmt=".3f"))
    out = Path(args.csv or f"{args.preset}.csv")
    for target in [out] + ([paths.tables_dir() / f"{args.preset}.csv"] if args.record else []):
        paths.atomic_write(target, lambda tmp: table.to_csv(tmp, index=False))
    print(f"\n{len(table)} cells in {time.perf_counter() - start:.0f} s; table written to {out}")


if __name__ == "__main__":
    main()
