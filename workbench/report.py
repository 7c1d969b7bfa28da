"""The defense report: for each defense on one dataset, what it costs on clean data and what it buys under a
score-based attack, in one table (pandas DataFrame, one row per defense).

Columns: clean accuracy, agreement with the undefended predictions, logit difference (mean l2 distance of the
logits), 15-bin ECE, time per query relative to the undefended model (forward passes over the clean images in
query batches of ``batch_size``), robust accuracy at each budget as the attacker observed it, and for
randomized or batch-dependent defenses (as ``workbench.probes`` measures them, never a list) the re-evaluated
robust accuracy (fresh queries on the final images, averaged over ``repeats``) beside it, each robust accuracy with
its 95% Wilson interval over the images (``lo`` / ``hi``). Deterministic defenses re-evaluate to the observed
value.

Example::

    table = defense_report({"AAA": aaa, "UniG": unig}, model, x, y, attack="square", budgets=(100, 1000))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from workbench import checks, metrics, runs
from workbench.metrics import clean_metrics
from workbench.probes import IMAGES


def seconds_per_image(model: nn.Module, x: torch.Tensor, batch_size: int = 100, repeats: int = 1) -> float:
    """Wall time of ``model``'s forward passes over ``x`` in batches of ``batch_size``, per image."""
    start = time.perf_counter()
    for _ in range(repeats):
        metrics.predict(model, x, batch_size)
    return (time.perf_counter() - start) / (repeats * len(x))


def defense_row(defended: nn.Module, undefended: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                attack: str = "square", dataset: str | None = None, budgets: Sequence[int] = (100, 1000),
                repeats: int = runs.REPEATS, seed: int = 0, batch_size: int = 100,
                reference_seconds: float | None = None, query_batch: int | None = None) -> dict[str, float]:
    """One row of the report (see the module docstring): the defense is probed once on the first images of ``x``
    and attacked through the run path (``runs.run``), which re-evaluates the final images wherever the probes find
    it randomized or batch-dependent. ``query_batch``: the most images the defense sees per query batch (default:
    the Oracle's policy; set it to study a batch-dependent defense like UniG)."""
    checks.images("x", x)
    budgets = sorted(checks.budgets("budgets", budgets))
    target = runs.Target.of(defended, x[:IMAGES], undefended)
    reference_seconds = reference_seconds or seconds_per_image(undefended, x, batch_size)
    row = {**clean_metrics(defended, undefended, x, y, batch_size),
           "time / query (x undefended)": seconds_per_image(defended, x, batch_size) / reference_seconds}
    record = runs.run(target, attack, x, y, budget=budgets[-1], dataset=dataset, seed=seed, repeats=repeats,
                      batch_size=query_batch or "auto")
    for column, value in [*((f"robust@{b}", record.robust_accuracy(b)) for b in budgets),
                          (f"re-evaluated@{budgets[-1]}", record.final_accuracy)]:
        row[column] = value
        row[f"{column} lo"], row[f"{column} hi"] = metrics.interval(value, len(x))
    row.update(metrics.detection(record))  # against a detector: detected, first detection, undetected success
    row["attack seconds"] = record.seconds
    return row


def defense_report(defenses: Mapping[str, nn.Module], undefended: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   **kwargs) -> pd.DataFrame:
    """The report for every named defense (each probed: randomized or batch-dependent ones get re-evaluated);
    ``kwargs`` go to ``defense_row``."""
    reference = seconds_per_image(undefended, x, kwargs.get("batch_size", 100), repeats=3)
    rows = {}
    for name, defended in tqdm(defenses.items(), desc="defenses", unit="defense"):
        rows[name] = defense_row(defended, undefended, x, y, reference_seconds=reference, **kwargs)
    return pd.DataFrame(rows).T
