"""The Oracle: counts every query per image, refuses queries past the budget or outside the ball, records."""

from __future__ import annotations

import pytest
import torch

from workbench.losses import margin
from workbench.oracle import BudgetExceeded, Oracle

# rounding-sensitive: run again under ATEN_CPU_CAPABILITY=default by .ci/run (docs/architecture.md)
pytestmark = pytest.mark.numerics


def test_counts_queries_per_image_including_repeats(cnn, test_set):
    x, y = test_set[:4]
    oracle = Oracle(cnn, x, y, budget=3)
    scores = oracle.query(x[[0, 0, 2]], torch.tensor([0, 0, 2]))
    assert scores.shape == (3, 10) and not scores.requires_grad
    assert oracle.queries.tolist() == [2, 0, 1, 0]
    oracle.query(x[[0]], torch.tensor([0]))
    with pytest.raises(BudgetExceeded):
        oracle.query(x[[0]], torch.tensor([0]))
    assert oracle.queries.tolist() == [3, 0, 1, 0]  # a refused query is not counted
    assert oracle.remaining().tolist() == [0, 3, 2, 3]


def test_scores_are_logits_or_probabilities(cnn, test_set):
    x, y = test_set[:5]
    logits = Oracle(cnn, x, y, budget=1).query(x, torch.arange(5))
    probs = Oracle(cnn, x, y, budget=1, scores="probabilities").query(x, torch.arange(5))
    assert torch.allclose(probs, logits.softmax(1), atol=1e-6)


def test_records_observed_and_reference_margins_in_query_order(cnn, test_set):
    x, y = test_set[:3]
    noisy = torch.nn.Sequential(cnn, torch.nn.Identity())
    oracle = Oracle(noisy, x, y, budget=4, record=True, reference=cnn)
    first = oracle.query(x, torch.arange(3))
    x2 = (x[[1, 1]] + 0.1).clamp(0, 1)
    second = oracle.query(x2, torch.tensor([1, 1]))
    assert torch.allclose(oracle.observed[:, 0], margin(first, y))
    assert torch.allclose(oracle.observed[1, 1:3], margin(second, y[[1, 1]]))
    assert torch.isnan(oracle.observed[0, 1:]).all() and torch.isnan(oracle.observed[1, 3])
    assert torch.allclose(oracle.reference_margin[1, 1:3], margin(cnn(x2), y[[1, 1]]))


def test_refuses_candidates_outside_the_ball(cnn, test_set):
    x, y = test_set[:2]
    oracle = Oracle(cnn, x, y, budget=5)
    handle = oracle.handle("linf", 0.1)
    with pytest.raises(ValueError, match="leave the linf ball"):
        handle.query((x + 0.2).clamp(0, 1), torch.arange(2))
    assert oracle.queries.sum() == 0


def test_quantizes_queries_inside_the_ball(cnn, test_set):
    x, y = test_set[:2]
    quantized = Oracle(cnn, x, y, budget=1, quantize=True).handle("linf", 0.1)
    exact = Oracle(cnn, x, y, budget=1)
    cand = (x + 0.0987).clamp(0, 1)
    expected = cnn(((cand * 255).round() / 255).clamp(max=(x + 0.1)))
    assert torch.allclose(quantized.query(cand, torch.arange(2)), expected, atol=1e-5)
    assert not torch.allclose(exact.query(cand, torch.arange(2)), expected, atol=1e-5)


@pytest.mark.parametrize("change, arg", [
    (lambda x, y: (x[0], y), "x"),                     # wrong shape
    (lambda x, y: (x + 2, y), "x"),                    # values outside [0, 1]
    (lambda x, y: (x * float("nan"), y), "x"),         # NaN
    (lambda x, y: (x, y + 10), "y"),                   # labels out of range
    (lambda x, y: (x, y[:1]), "y"),                    # labels of the wrong length
])
def test_bad_inputs_name_the_argument(cnn, test_set, change, arg):
    x, y = change(*test_set[:2])
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        oracle = Oracle(cnn, x, y, budget=1)
        oracle.query(oracle.x, torch.arange(len(oracle.x)))


def test_budget_and_scores_are_checked(cnn, test_set):
    x, y = test_set[:2]
    with pytest.raises(ValueError, match="budget"):
        Oracle(cnn, x, y, budget=0)
    with pytest.raises(ValueError, match="scores"):
        Oracle(cnn, x, y, budget=1, scores="softmax")


def test_auto_batches_keep_the_scores_and_spare_batch_dependent_defenses(cnn, test_set):
    """``batch_size="auto"`` chunks a batch-independent model's queries (scores equal up to float rounding, the
    same predictions) and leaves a batch-dependent defense's query batch whole (its output depends on it)."""
    from workbench.defenses.registry import build
    from workbench.speed.forward import CPU_BATCH

    x, y = test_set[:200]
    chunked, whole = Oracle(cnn, x, y, budget=1), Oracle(cnn, x, y, budget=1, batch_size=None)
    assert chunked.batch_size == CPU_BATCH and whole.batch_size is None
    a, b = chunked.query(x, torch.arange(200)), whole.query(x, torch.arange(200))
    assert torch.equal(a.argmax(1), b.argmax(1)) and (a - b).abs().max() < 1e-4
    assert Oracle(build("dent", cnn), x, y, budget=1).batch_size is None  # DENT: batch statistics
    assert Oracle(cnn, x[:CPU_BATCH], y[:CPU_BATCH], budget=1).batch_size is None  # nothing to chunk


def test_zoo_models_load_in_channels_last_with_the_same_scores(cnn, test_set):
    from workbench import models

    plain = models.load("mnist-cnn", channels_last=False)
    conv = next(m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = test_set.x[:100]
    assert (cnn(x) - plain(x)).abs().max() < 1e-4
