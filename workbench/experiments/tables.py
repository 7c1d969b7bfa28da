"""Reading a grid's table: pivots of one value (mean ± std over seeds), the cells' keyword arguments as columns,
and the tables recorded by ``python -m workbench.experiments NAME --record``."""

from __future__ import annotations

import json

import pandas as pd

from workbench import checks, paths
from workbench.experiments.presets import presets


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
