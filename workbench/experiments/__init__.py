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

The package, one role per file: ``cells`` (the schema and its validation), ``execution`` (one cell through the
run path, a grid in processes or on Ray), ``presets`` (the preset grids, as data in ``presets.json``), ``tables``
(pivots and the recorded tables) and ``__main__`` (the command line).

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

from workbench.experiments.cells import Cell, cell, grid, validate
from workbench.experiments.execution import (EXECUTORS, PARALLEL_WORK, RAY_STARTS, cache_dir_default, default_workers,
                                             run_cell, start_ray, tabulate, weights_fingerprint)
from workbench.experiments.presets import note, preset, presets
from workbench.experiments.tables import recorded, summarize, with_kwargs

__all__ = ["Cell", "EXECUTORS", "PARALLEL_WORK", "RAY_STARTS", "cache_dir_default", "cell", "default_workers", "grid",
           "note", "preset", "presets", "recorded", "run_cell", "start_ray", "summarize", "tabulate", "validate",
           "weights_fingerprint", "with_kwargs"]
