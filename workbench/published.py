"""The papers' own numbers, quoted as published, to set beside the workbench's recorded tables.

Quoted, not measured: these are the numbers printed in the papers' tables, on their own models and data, with the
table each comes from. The workbench's recorded tables are measured elsewhere (``cifar10-table`` on the JPEG (q75)
copy of CIFAR-10 with a ResNet-20, ``imagenet-samples-table`` on the embedded ImageNet samples with
EfficientNet-Lite0), so a side-by-side compares settings that differ in data, model and image count.

| dataset | paper | table | model | what |
| --- | --- | --- | --- | --- |
| cifar10 (l-inf 8/255) | AAA (Chen et al., NeurIPS 2022) | Table 2 | WRN-28-10 | none / AT / RND / AAA-linear x the five SQAs, 100 / 2500 queries, clean acc, ECE |
| cifar10 | AAA | Table 5 | WRN-28-10 | DENT under Square |
| cifar10 | AAA | Table 6 | WRN-28-10 | Square, bi-Square, op-Square vs none / AAA-linear / AAA-sine at 100 queries |
| cifar10 | UniG (Wu et al.) | Table 1 | PreActResNet-18 | none / AT / RND / RND-GF / DENT / UniG x the five SQAs, clean acc, logit diff |
| imagenet (l-inf 4/255) | AAA | Table 2 | WRN-50-2 | none / AT / RND / AAA-linear x the five SQAs, 100 / 2500 queries, clean acc, ECE (the table's ResNeXt-101 block is not quoted) |
| imagenet | UniG | Table 1 | WRN-50-2 (torchvision's) | none / AT / RND / DENT / UniG x the five SQAs on 1000 validation images, one per class |

Values are in percent except ``logit diff``; defense and attack names are the workbench's registry names. AAA's
Table 2 and UniG's Table 1 each hold both datasets: name the one you want (``side_by_side`` reads it from the
recorded table's protocol).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from . import checks, protocol

_FILE = Path(__file__).parent / "embedded" / "published.csv"
METRICS = ("clean acc", "ECE", "logit diff", "robust")


def quoted(paper: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The quoted numbers as a long table (dataset, paper, table, model, defense, attack, metric, budget, value);
    ``paper`` ("AAA" or "UniG") and ``dataset`` ("cifar10" or "imagenet") keep those rows."""
    table = pd.read_csv(_FILE, dtype={"attack": str}, keep_default_na=False,
                        converters={"budget": lambda s: int(s) if s else 0})
    for column, value in (("paper", paper), ("dataset", dataset)):
        if value is not None:
            checks.choice(column, value, tuple(table[column].unique()))
            table = table[table[column] == value].reset_index(drop=True)
    return table


def robust(paper: str, table: str, budget: int, dataset: str | None = None) -> pd.DataFrame:
    """One paper table's robust accuracy (percent) at ``budget`` queries as a defense x attack pivot, e.g.
    ``robust("AAA", "Table 6", 100)``; ``dataset`` is required where the table holds more than one
    (``robust("AAA", "Table 2", 2500, "imagenet")``)."""
    rows = quoted(paper, dataset)
    checks.choice("table", table, tuple(rows["table"].unique()))
    rows = rows[(rows["table"] == table) & (rows["metric"] == "robust")]
    if rows["dataset"].nunique() > 1:
        raise ValueError(f"dataset=None: {paper} {table} quotes {', '.join(map(repr, rows['dataset'].unique()))}; "
                         "name one")
    checks.choice("budget", int(budget), tuple(sorted(rows["budget"].unique().tolist())))
    rows = rows[rows["budget"] == int(budget)]
    return rows.pivot_table(index="defense", columns="attack", values="value", sort=False)


def side_by_side(recorded: pd.DataFrame, paper: str, table: str, budget: int) -> pd.DataFrame:
    """A recorded grid's robust accuracy at ``budget`` queries (percent) beside one paper table's, on the
    defenses and attacks both have: one row per defense, columns (attack, source) with source "paper" (the
    paper's own model and data) or "here" (the recorded grid's). The paper's dataset is the one whose settings
    the recorded grid's protocol takes (its ``dataset`` column: ``cifar10-jpeg`` reads CIFAR-10's,
    ``imagenet-samples`` ImageNet's)."""
    column = f"robust@{int(budget)}"
    if column not in recorded.columns:
        raise ValueError(f"recorded has no {column!r} column; it holds "
                         f"{', '.join(c for c in recorded.columns if c.startswith('robust@'))}")
    settings = {protocol.get(d).settings for d in recorded["dataset"].unique()} if "dataset" in recorded else set()
    if len(settings) > 1:
        raise ValueError(f"recorded mixes datasets of {sorted(settings)}; pass one dataset's rows")
    theirs = robust(paper, table, budget, settings.pop() if settings else None)
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
