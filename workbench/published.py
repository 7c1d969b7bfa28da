"""The papers' own CIFAR-10 numbers, quoted as published, to set beside the workbench's recorded tables.

Quoted, not measured: these are the numbers printed in the papers' tables (l-inf 8/255 on the lossless CIFAR-10
test set, their own models), with the table each comes from. The workbench's ``cifar10-table`` is measured on the
JPEG (q75) copy with a ResNet-20, so a side-by-side compares settings that differ in data, model and image count.

| paper | table | model | what |
| --- | --- | --- | --- |
| AAA (Chen et al., NeurIPS 2022) | Table 2 | WRN-28-10 | none / AT / RND / AAA-linear x the five SQAs, 100 / 2500 queries, clean acc, ECE |
| AAA | Table 5 | WRN-28-10 | DENT under Square |
| AAA | Table 6 | WRN-28-10 | Square, bi-Square, op-Square vs none / AAA-linear / AAA-sine at 100 queries |
| UniG (Wu et al.) | Table 1 | PreActResNet-18 | none / AT / RND / RND-GF / DENT / UniG x the five SQAs, clean acc, logit diff |

Values are in percent except ``logit diff``; defense and attack names are the workbench's registry names.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from . import checks

_FILE = Path(__file__).parent / "embedded" / "published_cifar10.csv"
METRICS = ("clean acc", "ECE", "logit diff", "robust")


def cifar10(paper: str | None = None) -> pd.DataFrame:
    """The quoted CIFAR-10 numbers as a long table (paper, table, model, defense, attack, metric, budget,
    value); ``paper`` ("AAA" or "UniG") keeps one paper's rows."""
    table = pd.read_csv(_FILE, dtype={"attack": str}, keep_default_na=False,
                        converters={"budget": lambda s: int(s) if s else 0})
    if paper is not None:
        checks.choice("paper", paper, tuple(table["paper"].unique()))
        table = table[table["paper"] == paper].reset_index(drop=True)
    return table


def robust(paper: str, table: str, budget: int) -> pd.DataFrame:
    """One paper table's robust accuracy (percent) at ``budget`` queries as a defense x attack pivot, e.g.
    ``robust("AAA", "Table 2", 2500)``."""
    rows = cifar10(paper)
    checks.choice("table", table, tuple(rows["table"].unique()))
    rows = rows[(rows["table"] == table) & (rows["metric"] == "robust")]
    checks.choice("budget", int(budget), tuple(sorted(rows["budget"].unique().tolist())))
    rows = rows[rows["budget"] == int(budget)]
    return rows.pivot_table(index="defense", columns="attack", values="value", sort=False)


def side_by_side(recorded: pd.DataFrame, paper: str, table: str, budget: int) -> pd.DataFrame:
    """A recorded grid's robust accuracy at ``budget`` queries (percent) beside one paper table's, on the
    defenses and attacks both have: one row per defense, columns (attack, source) with source "paper" (the
    paper's own model and data) or "here" (the recorded grid's)."""
    theirs = robust(paper, table, budget)
    column = f"robust@{int(budget)}"
    if column not in recorded.columns:
        raise ValueError(f"recorded has no {column!r} column; it holds "
                         f"{', '.join(c for c in recorded.columns if c.startswith('robust@'))}")
    ours = 100 * recorded.pivot_table(index="defense", columns="attack", values=column, sort=False)
    defenses = [d for d in theirs.index if d in ours.index]
    attacks = [a for a in theirs.columns if a in ours.columns]
    both = pd.concat({"paper": theirs.loc[defenses, attacks], "here": ours.loc[defenses, attacks]}, axis=1)
    both = both.swaplevel(axis=1)[[(a, s) for a in attacks for s in ("paper", "here")]]
    both.columns.names = ["attack", "source"]
    return both.round(2)


def orderings(both: pd.DataFrame, tie: float = 0.0) -> pd.DataFrame:
    """Which of a paper's orderings hold in a ``side_by_side`` table: for every attack and every pair of defenses
    that both sources report, the more robust one in the paper and here (``"tie"`` when the two differ by at
    most ``tie`` points; with 100 images one image is one point, and the binomial standard error of a robust
    accuracy near 50 % is 5 points) and whether the two agree. One row per (attack, pair)."""
    tie = checks.non_negative("tie", tie)
    rows = []
    for attack in dict.fromkeys(both.columns.get_level_values("attack")):
        cell = both[attack].dropna()
        for first, second in itertools.combinations(cell.index, 2):
            order = {s: _winner(first, second, cell.loc[first, s] - cell.loc[second, s], tie)
                     for s in ("paper", "here")}
            rows.append({"attack": attack, "pair": f"{first} vs {second}", **order,
                         "holds": order["paper"] == order["here"]})
    return pd.DataFrame(rows, columns=["attack", "pair", "paper", "here", "holds"])


def _winner(first: str, second: str, difference: float, tie: float) -> str:
    if abs(difference) <= tie:
        return "tie"
    return first if difference > 0 else second
