"""Metrics against reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import metrics
from workbench.results import Result


def _reference_ece(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    probs = torch.softmax(logits, 1).numpy()
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(conf[in_bin].mean() - (pred[in_bin] == y.numpy()[in_bin]).mean())
    return total


def test_ece_matches_a_loop_over_bins():
    gen = torch.Generator().manual_seed(0)
    logits, y = 3 * torch.randn(500, 10, generator=gen), torch.randint(0, 10, (500,), generator=gen)
    assert metrics.ece(logits, y) == pytest.approx(_reference_ece(logits, y), abs=1e-6)
    rel = metrics.reliability(logits, y)
    assert rel["count"].sum() == 500


def test_logit_difference_and_agreement():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 4.0], [0.0, 1.0]])
    assert metrics.logit_difference(a, b) == pytest.approx(2.0)
    assert metrics.agreement(a, b) == 0.5 and metrics.accuracy(a, torch.tensor([0, 1])) == 1.0


def test_robust_accuracy_curve_and_query_stats_from_one_run():
    result = Result(first_success=torch.tensor([1, 5, -1, 10]), queries=torch.tensor([1, 5, 10, 10]),
                    clean_correct=torch.tensor([False, True, True, True]),
                    budget=10, seconds=0.0)
    assert result.success.tolist() == [True, True, False, True]
    assert metrics.robust_accuracy_curve(result, [1, 4, 5, 10]) == {1: 0.75, 4: 0.75, 5: 0.5, 10: 0.25}
    stats = metrics.query_stats(result)
    assert stats["mean_queries"] == 7.5 and stats["median_queries"] == 5 and stats["n_fooled"] == 2
    with pytest.raises(ValueError, match="budget"):
        result.robust_accuracy(11)
