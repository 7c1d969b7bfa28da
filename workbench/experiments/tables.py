"""Reading a grid's table: pivots of one value (over several seeds: the mean with its 95% Student-t interval over
the seeds; over one: the value with its 95% Wilson interval over the images), the cells' keyword arguments as
columns, and the tables recorded by ``python -m workbench.experiments NAME --record`` (with the intervals of
their accuracies)."""

from __future__ import annotations

import json

import pandas as pd

from workbench import checks, metrics, paths
from workbench.experiments.presets import presets

ACCURACIES = ("clean acc", "agreement", "re-evaluated")  # with the robust@b columns: the accuracies of a grid row


def summarize(table: pd.DataFrame, value: str, index: str = "defense", columns: str = "attack") -> pd.DataFrame:
    """A defense x attack pivot of ``value`` as text: over several seeds "mean [lo, hi]" (the 95% Student-t
    interval of the mean over the seeds), over one "value [lo, hi]" (the 95% Wilson interval over its ``n``
    images) where ``value`` is an accuracy, else the value."""
    grouped = table.groupby([index, columns], sort=False)
    if grouped.size().max() == 1:
        if not _is_accuracy(value):
            return grouped[value].first().unstack(columns)
        first = grouped[[value, "n"]].first()
        text = [_shown(v, *metrics.interval(v, int(n))) for v, n in zip(first[value], first["n"])]
        return pd.Series(text, index=first.index).unstack(columns)
    stats = grouped[value].agg(lambda v: _shown(*metrics.seed_interval(list(v))))
    return stats.unstack(columns)


def _is_accuracy(column: str) -> bool:
    return column.startswith("robust@") or column in ACCURACIES


def _shown(value: float, lo: float, hi: float) -> str:
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """A grid table with the 95% Wilson interval (``lo`` / ``hi``) of every robust accuracy and re-evaluated
    accuracy that lacks one (tables recorded before the intervals were), from each row's ``n``."""
    columns = metrics.budget_columns(table.columns) + [c for c in table.columns if c == "re-evaluated"]
    missing = [c for c in columns if f"{c} lo" not in table.columns]
    # a recorded table's NaN (a budget a cell did not run) keeps NaN bounds
    return metrics.with_intervals(table, missing, "n") if missing else table


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
    return with_intervals(pd.read_csv(path))
