"""Metrics of the papers: accuracy, robust accuracy vs queries (one run gives every budget), queries to success,
15-bin ECE, logit difference between a defended and an undefended model, and prediction agreement; and the 95%
intervals every shown accuracy carries (``interval``: over images; ``seed_interval``: over seeds) with the ties
they imply in a ranking (``ties``).

Intervals over images are Wilson score intervals (Newcombe 1998's formulas, as ``scipy.stats.binomtest``'s
``proportion_ci(method="wilson")`` computes them; a test checks the two agree): an accuracy on n images is k
successes of n, the interval is closed-form (no seed, the same on every machine) and keeps its coverage near 0 and
1, where many defenses sit (a per-image bootstrap collapses to [0, 0] at an accuracy of 0, and the normal
approximation leaves [0, 1]).

Example::

    result = Square(eps=0.3).run(Oracle(model, x, y, budget=1000))
    robust_accuracy_curve(result, [100, 1000])      # {100: 0.31, 1000: 0.02}
    ece(model(x), y)                                  # 0.012
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from tqdm.auto import tqdm

from workbench import checks, transforms
from workbench.results import Result
from workbench.stateful import Stateful
from workbench.threat import model_device, unit


def _paired(logits: object, other: object, name: str = "y") -> None:
    """Raise unless ``logits`` is a non-empty (N, K) tensor and ``other`` a tensor with the same N rows."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not len(logits):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a non-empty (N, num_classes) tensor, got {shape}")
    if not isinstance(other, torch.Tensor) or len(other) != len(logits):
        shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
        raise ValueError(f"{name} must be a tensor with one row per row of logits ({len(logits)}), got {shape}")


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on ``x``, in batches, on the model's device (returned on the CPU)."""
    checks.module("model", model)
    checks.images("x", x)
    batch_size = checks.at_least("batch_size", batch_size, 1)
    device = model_device(model)
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    _paired(logits, y)
    return (logits.argmax(1).cpu() == y.cpu()).float().mean().item()


def agreement(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Fraction of rows where two models predict the same class."""
    _paired(logits, reference, "reference")
    return (logits.argmax(1).cpu() == reference.argmax(1).cpu()).float().mean().item()


def logit_difference(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over rows of the l2 distance between defended and undefended logits."""
    _paired(logits, reference, "reference")
    if logits.shape != reference.shape:
        raise ValueError(f"reference must have the shape of logits {tuple(logits.shape)}, got {tuple(reference.shape)}")
    return (logits.float().cpu() - reference.float().cpu()).norm(dim=1).mean().item()


def ece(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: 15 equal-width bins over the maximum softmax probability, weighted by count."""
    _paired(logits, y)
    checks.labels("y", y, len(logits), logits.shape[1])
    bins = checks.at_least("bins", bins, 1)
    probs = logits.float().softmax(1).cpu()
    conf, pred = probs.max(1)
    correct = (pred == y.cpu()).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # bin k holds (edges[k], edges[k+1]]
    gap = torch.zeros(bins).index_add_(0, which, conf - correct).abs()
    return (gap.sum() / max(len(conf), 1)).item()


def reliability(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and count (the data of a reliability diagram)."""
    _paired(logits, y)
    bins = checks.at_least("bins", bins, 1)
    probs = logits.float().softmax(1).cpu()
    conf, pred = probs.max(1)
    correct = (pred == y.cpu()).float()
    which = torch.bucketize(conf, torch.linspace(0, 1, bins + 1)[1:-1], right=True)
    count = torch.zeros(bins).index_add_(0, which, torch.ones_like(conf))
    mean_conf = torch.zeros(bins).index_add_(0, which, conf) / count.clamp_min(1)
    acc = torch.zeros(bins).index_add_(0, which, correct) / count.clamp_min(1)
    return {"confidence": mean_conf.numpy(), "accuracy": acc.numpy(), "count": count.numpy()}


def reevaluated(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, repeats: int = 10,
                batch_size: int = 1000) -> torch.Tensor:
    """Re-evaluation, the workbench's one definition: per image, the share of ``repeats`` fresh queries of its
    final image that classify it correctly (float64, on the CPU). An image counts as robust when that share is
    at least 1/2 (the majority of fresh queries): what the attacker saw came from one noisy draw each."""
    repeats = checks.at_least("repeats", repeats, 1)
    y = y.cpu()
    hits = [predict(model, x_adv, batch_size).argmax(1).cpu() == y for _ in range(repeats)]
    return torch.stack(hits).double().mean(0)


def reevaluated_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, repeats: int = 10,
                         batch_size: int = 1000) -> float:
    """The share of the final adversarial images that re-evaluation finds robust (``reevaluated`` >= 1/2); for a
    deterministic model simply the accuracy on ``x_adv``."""
    return float((reevaluated(model, x_adv, y, repeats, batch_size) >= 0.5).double().mean())


LEVEL = 0.95  # the confidence level of every interval the workbench shows


def interval(accuracy: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on ``n`` images (``accuracy * n`` of them correct; see the
    module docstring for why Wilson). NaN for an accuracy that is NaN."""
    n = checks.at_least("n", n, 1)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if accuracy != accuracy:  # NaN: nothing was measured
        return float("nan"), float("nan")
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
    k = int(round(accuracy * n))
    if abs(k - accuracy * n) > 1e-6 * n:
        raise ValueError(f"accuracy={accuracy} is not a share of n={n} images")
    z = NormalDist().inv_cdf(0.5 + 0.5 * level)
    p = k / n
    denom = 2 * (n + z ** 2)
    center = (2 * n * p + z ** 2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z ** 2)
    return (0.0 if k == 0 else center - delta), (1.0 if k == n else center + delta)


def seed_interval(values: Sequence[float], level: float = LEVEL, clip: bool = True) -> tuple[float, float, float]:
    """The mean of an accuracy measured at several seeds and the Student-t interval of that mean over the seeds,
    clipped to [0, 1] (``clip``: for accuracies as shares; NaN bounds for a single seed: one seed is one
    sample)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        raise ValueError("values must hold at least one accuracy")
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    from scipy import stats  # here: importing scipy.stats costs about a second, and most callers never get here

    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return (mean, max(0.0, mean - half), min(1.0, mean + half)) if clip else (mean, mean - half, mean + half)


def with_intervals(table: pd.DataFrame, columns: Sequence[str], n: int | str) -> pd.DataFrame:
    """``table`` with the columns ``"<c> lo"`` and ``"<c> hi"`` beside each accuracy column ``c``: its Wilson
    interval over ``n`` images (a number, or the name of a column holding each row's count)."""
    out = table.copy()
    for c in columns:
        counts = out[n] if isinstance(n, str) else pd.Series(n, index=out.index)
        bounds = [interval(float(a), int(k)) for a, k in zip(out[c], counts)]
        at = out.columns.get_loc(c) + 1
        out.insert(at, f"{c} lo", [b[0] for b in bounds])
        out.insert(at + 1, f"{c} hi", [b[1] for b in bounds])
    return out


def budget_columns(columns: Iterable[str], prefix: str = "robust@") -> list[str]:
    """The accuracy-per-budget columns of a table (``robust@100``, ...), without their interval bounds."""
    return [c for c in columns if c.startswith(prefix) and not c.endswith((" lo", " hi"))]


def ties(lo: Sequence[float], hi: Sequence[float]) -> list[int]:
    """Tie groups of a ranking (rows sorted best first, each with its interval ``lo``-``hi``): a row joins the
    group above it while its interval overlaps the interval of that group's first row, else it starts the next
    group. Returns each row's group rank (1-based; rows with the same rank are tied)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if lo.shape != hi.shape:
        raise ValueError(f"lo and hi must have the same length, got {len(lo)} and {len(hi)}")
    ranks, head = [], 0
    for i in range(len(lo)):
        if i and hi[i] < lo[head]:
            head = i
        ranks.append(head + 1)
    return ranks


def robust_accuracy_curve(result: Result, budgets: Iterable[int] | None = None) -> dict[int, float]:
    """Robust accuracy at each budget (default: every query 1..budget), all read from one run."""
    budgets = range(1, result.budget + 1) if budgets is None else checks.budgets("budgets", budgets, strict=False)
    return {int(b): result.robust_accuracy(int(b)) for b in budgets}


def robust_by_query(first: np.ndarray, budgets: Sequence[int] | np.ndarray) -> np.ndarray:
    """Share of images not fooled within each budget, from every image's first successful query (0 or -1:
    never), e.g. a column of ``evaluate``'s per-image table."""
    fooled = np.where(np.asarray(first) > 0, first, np.iinfo(np.int64).max)
    return 1 - (fooled[None, :] <= np.asarray(budgets)[:, None]).mean(1)


def earliest(firsts: np.ndarray) -> np.ndarray:
    """Per image, the first query at which any of several attacks succeeded (rows of ``firsts``; -1: none did)."""
    hits = np.where(firsts > 0, firsts, np.iinfo(np.int64).max).min(0)
    return np.where(hits == np.iinfo(np.int64).max, -1, hits)


def query_stats(result: Result, budget: int | None = None) -> dict[str, float]:
    """Mean and median queries of the images that were correct when clean and fooled within ``budget``."""
    budget = result.budget if budget is None else checks.at_least("budget", budget, 1)
    if budget > result.budget:
        raise ValueError(f"budget={budget} is above the run's budget of {result.budget} queries: the run cannot tell "
                         f"what happened after its last query")
    first = result.first_success
    return success_queries(torch.where(first <= budget, first, -1), result.clean_correct)


def success_queries(first_success: torch.Tensor, clean_correct: torch.Tensor) -> dict[str, float]:
    """Mean and median of ``first_success`` (the query of the first success, -1 for none) over the images that
    were correct when clean and fooled."""
    q = first_success[clean_correct & (first_success > 0)].double()
    if not len(q):
        return {"mean_queries": float("nan"), "median_queries": float("nan"), "n_fooled": 0}
    return {"mean_queries": q.mean().item(), "median_queries": q.median().item(), "n_fooled": int(len(q))}


def summary(result: Result, budgets: Sequence[int]) -> dict[str, float]:
    """One row for a table: clean accuracy as the attack saw it, robust accuracy per budget with its 95% interval
    over the images (``robust@b lo`` / ``hi``), query statistics (rounded for display: accuracies to 4 decimals,
    queries and seconds to 2)."""
    n = len(result.first_success)
    row = {"clean_accuracy": round(result.clean_correct.float().mean().item(), 4)}
    for b, acc in robust_accuracy_curve(result, budgets).items():
        lo, hi = interval(acc, n)
        row.update({f"robust@{b}": round(acc, 4), f"robust@{b} lo": round(lo, 4), f"robust@{b} hi": round(hi, 4)})
    row.update({k: round(v, 2) if isinstance(v, float) else v for k, v in query_stats(result).items()})
    row.update({k: round(v, 4) if isinstance(v, float) else v for k, v in detection(result).items()})
    row.update({"seconds": round(result.seconds, 2)})
    return row


DETECTION_COLUMNS = ("detected", "first detection", "undetected success", "refused share")


def detection(result: Result) -> dict[str, float]:
    """Against a detector (``result.first_detection`` recorded), the detection columns: ``detected`` (the share of
    images with a flagged query, with its 95% Wilson interval ``detected lo`` / ``hi``), ``first detection`` (the
    median query of the first flag over the detected images; NaN where none was), ``undetected success`` (the share
    misclassified before any flag: what succeeds where a detection ends the account, with its interval) and
    ``refused share`` (refused queries over all queries). Empty against a stateless defense."""
    if result.first_detection is None:
        return {}
    n = len(result.first_detection)
    detected = result.detected.double().mean().item()
    sneaked = result.undetected_success().double().mean().item()
    firsts = result.first_detection[result.detected].double()
    row = {"detected": detected}
    row["detected lo"], row["detected hi"] = interval(detected, n)
    row["first detection"] = float(firsts.median()) if len(firsts) else float("nan")
    row["undetected success"] = sneaked
    row["undetected success lo"], row["undetected success hi"] = interval(sneaked, n)
    row["refused share"] = result.refusals.sum().item() / max(1, result.queries.sum().item())
    return row


def screened(detector: Stateful, stream: torch.Tensor, *, accounts: str = "shared",
             batch_size: int = 100) -> pd.DataFrame:
    """What a detector sees of the query ``stream`` (images in the order they are sent), from a fresh memory: per
    query its ``distance`` to the account's memory (the detector's own measure; inf where it had nothing to compare
    with) and whether it was ``flagged``. From one account (``"shared"``) or one account per query (``"image"``:
    a stateful detector then never flags, a stateless one still may). The detector's memory is put back as it
    was."""
    checks.choice("accounts", accounts, ("shared", "image"))
    before = detector.snapshot()
    distance, flagged = [], []
    try:
        detector.reset()
        for i in tqdm(range(0, len(stream), batch_size), desc="screening", unit="batch", leave=False):
            chunk = stream[i:i + batch_size]
            ids = (torch.zeros(len(chunk), dtype=torch.long) if accounts == "shared"
                   else torch.arange(i, i + len(chunk)))
            seen = detector.screen(chunk, ids)
            distance.append(seen.distance)
            flagged.append(seen.flagged)
    finally:
        detector.restore(before)
    return pd.DataFrame({"query": range(1, len(stream) + 1), "distance": torch.cat(distance).numpy(),
                         "flagged": torch.cat(flagged).numpy()})


def false_positives(detector: Stateful, stream: torch.Tensor, *, accounts: str = "shared") -> dict[str, float]:
    """A detector's false-positive rate on the benign ``stream`` (``screened``), with its 95% Wilson interval."""
    rate = float(screened(detector, stream, accounts=accounts)["flagged"].mean())
    lo, hi = interval(rate, len(stream))
    return {"false positives": rate, "false positives lo": lo, "false positives hi": hi, "queries": len(stream)}


def detected_by_query(first_detection: torch.Tensor, budgets: Sequence[int]) -> dict[int, float]:
    """The share of images flagged within each budget (from ``Result.first_detection``)."""
    first = first_detection.detach().cpu()
    return {int(b): float(((first > 0) & (first <= b)).double().mean()) for b in budgets}


STREAMS = ("images", "jpeg", "brightness")


def benign_stream(x: torch.Tensor, kind: str) -> torch.Tensor:
    """A benign query stream from the images ``x``: ``"images"`` (them, in order), ``"jpeg"`` (each followed by its
    JPEG re-encoding at quality 75: a user uploading a photo twice) or ``"brightness"`` (each followed by a copy
    0.05 brighter)."""
    checks.choice("kind", kind, STREAMS)
    if kind == "images":
        return x
    changed = transforms.jpeg(x, 75) if kind == "jpeg" else transforms.brightness(x, 0.05)
    return torch.stack([x, changed], 1).flatten(0, 1)


def summaries(results: Mapping[str, Result], budgets: Sequence[int]) -> pd.DataFrame:
    """``summary`` of each named result as one table (one row per name), for notebooks to show."""
    return pd.DataFrame({name: summary(result, budgets) for name, result in results.items()}).T


def accepted_points(observed: torch.Tensor, start: int = 1) -> np.ndarray:
    """For one image's recorded losses (budget,), the index of the point a greedy attacker holds after every
    query: the running minimum of what it observed from query ``start`` on (Square accepts its initialization,
    query 2, unconditionally: ``start=2``). Entries past the last query are dropped."""
    seen = observed.detach().cpu().numpy()
    n = int((~np.isnan(seen)).sum())
    best = np.arange(n)
    for i in range(start, n):
        best[i] = i if i == start or seen[i] < seen[best[i - 1]] else best[i - 1]
    return best


def mean_pairwise_cosine(deltas: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of different rows of ``deltas`` (N, ...) (N >= 2): how alike the
    perturbations of different images are (1: one universal perturbation; ~0: unrelated ones)."""
    flat = deltas.flatten(1).float()
    if len(flat) < 2:
        raise ValueError(f"deltas must hold at least 2 perturbations, got {len(flat)}")
    rows = unit(flat)
    sim = rows @ rows.T
    n = len(flat)
    return ((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))).item()


def confidence_by_rank(probs: torch.Tensor, y: torch.Tensor, order: torch.Tensor, bins: int = 100) -> pd.DataFrame:
    """AAA Fig. 3 (left): samples sorted by ``order`` (e.g. the undefended model's true-class probability,
    ascending), split into ``bins`` equal bins; per bin the mean confidence (max probability) and accuracy."""
    checks.at_least("bins", bins, 1)
    if bins > len(y):
        raise ValueError(f"bins={bins} exceeds the number of samples ({len(y)})")
    idx = torch.argsort(order.cpu(), stable=True)
    conf, pred = probs.float().cpu()[idx].max(1)
    correct = (pred == y.cpu()[idx]).float()
    groups = torch.arange(len(idx)) * bins // len(idx)
    frame = pd.DataFrame({"bin": groups.numpy(), "confidence": conf.numpy(), "accuracy": correct.numpy()})
    return frame.groupby("bin").mean().reset_index()


def clean_metrics(defended: nn.Module, undefended: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 100) -> dict[str, float]:
    """Clean accuracy, agreement with the undefended predictions, logit difference and ECE of ``defended`` on
    ``x`` (query batches of ``batch_size``)."""
    clean = predict(undefended, x, batch_size)
    logits = predict(defended, x, batch_size)
    return {"clean acc": accuracy(logits, y), "agreement": agreement(logits, clean),
            "logit diff": logit_difference(logits, clean), "ECE": ece(logits, y)}


# ------------------------------------------------------------------------------------- attack replays
def changed_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box (row, col, height, width) of the pixels that differ between two images (C, H, W), or None
    where nothing changed."""
    rows, cols = ((after - before).abs().amax(0) > 0).nonzero(as_tuple=True)
    if not len(rows):
        return None
    r0, c0 = int(rows.min()), int(cols.min())
    return r0, c0, int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1


def accepted_boxes(kept: torch.Tensor, best: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(query index, box) of every accepted change smaller than the whole image (Square's squares)."""
    boxes, size = [], kept.shape[-2:]
    for i in range(1, len(best)):
        if best[i] != best[i - 1]:
            box = changed_box(kept[best[i - 1]], kept[best[i]])
            if box is not None and (box[2], box[3]) != tuple(size):
                boxes.append((i, box))
    return boxes
