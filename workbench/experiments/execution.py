"""Running a grid: one cell through the run path (``run_cell``), every cell of a grid into one table
(``tabulate``), on this machine in processes (one per core by default) or as Ray tasks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import checks, experiment, metrics, paths, runs
from workbench.defenses import registry as defenses
from workbench.experiments.cells import Cell, validate

EXECUTORS = ("local", "ray")


def run_cell(c: Cell, device: str | torch.device | None = None, progress: bool = False,
             cache_dir: str | Path | None = None, recompute: bool = False) -> dict[str, Any]:
    """Run one cell through the run path (its experiment set up once, ``experiment.setup``; its attack's record
    cached under ``cache_dir``) and return its row: the clean metrics, robust accuracy at each budget as the
    attacker observed it, the final outcome (``re-evaluated``), each with its 95% Wilson interval over the images
    (``lo`` / ``hi``), query statistics and provenance."""
    start = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(c.seed)
    exp = experiment.setup(c.defense, c.model, dataset=c.dataset, n=c.n, budgets=c.budgets, norm=c.norm, eps=c.eps,
                           seed=c.seed, weights=c.weights, device=device, defense_kwargs=dict(c.defense_kwargs))
    clean = exp.clean()
    targets = None
    if c.targeted:
        gen = torch.Generator().manual_seed(c.seed)
        targets = (exp.y + torch.randint(1, exp.num_classes, exp.y.shape, generator=gen)) % exp.num_classes
    kwargs = dict(c.attack_kwargs)
    eot = kwargs.pop("eot", 1)
    attack_start = time.perf_counter()
    record = exp.run(c.attack, eot=eot, targets=targets, attack_kwargs=kwargs, cache_dir=cache_dir,
                     recompute=recompute, progress=progress)
    # the attack's wall time as computed (also when its record comes from the cache: a resumed grid reports what
    # the cells cost), plus this call's set-up and clean metrics
    seconds = record.seconds + attack_start - start
    stats = metrics.query_stats(record)
    robust = {}
    for b in c.budgets:
        robust[f"robust@{b}"] = record.robust_accuracy(b)
        robust[f"robust@{b} lo"], robust[f"robust@{b} hi"] = metrics.interval(robust[f"robust@{b}"], c.n)
    final = record.final_accuracy
    return {"dataset": c.dataset, "model": c.model, "defense": c.defense, "attack": c.attack, "norm": c.norm,
            "eps": exp.threat.eps, "n": c.n, "seed": c.seed, "targeted": c.targeted, **clean, **robust,
            "re-evaluated": final, **dict(zip(("re-evaluated lo", "re-evaluated hi"), metrics.interval(final, c.n))),
            "mean queries": stats["mean_queries"], "median queries": stats["median_queries"],
            **metrics.detection(record), "seconds": seconds, "key": c.key(), "config": json.dumps(c.config(), sort_keys=True, default=str),
            **(record.computed or runs.provenance(device))}


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
