"""Adaptive attacks: op/bi Square against AAA (AAA Table 6's direction) and EOT against input noise."""

from __future__ import annotations

import pytest
import torch

from tests.toy import linear_model
from workbench import metrics
from workbench.attacks import build
from workbench.attacks.eot import EOT, averaging
from workbench.attacks.square import Square
from workbench.defenses.aaa import AAA
from workbench.defenses.noise import InputNoise
from workbench.oracle import BudgetExceeded, Oracle


def test_op_and_bi_square_beat_plain_square_against_aaa(cnn, test_set):
    """AAA Table 6's direction (60 images, 300 queries). Measured (measured with benchmarks/threshold_spread.py over seeds 0-4 of the attacks): robust
    accuracy of Square minus op-Square +0.327 ± 0.054, minus bi-Square +0.300 ± 0.042; the 0.2 threshold is
    more than two std below both means."""
    x, y = test_set[:60]
    aaa = AAA(cnn, "linear", temperature=1.414)
    robust = {name: build(name, progress=False).run(Oracle(aaa, x, y, budget=300)).robust_accuracy()
              for name in ("square", "square-op", "square-bi")}
    assert robust["square-op"] < robust["square"] - 0.2 and robust["square-bi"] < robust["square"] - 0.2, robust


def test_eot_averages_m_counted_queries_per_point():
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    model = InputNoise(linear_model(), sigma=0.1, clip=False, seed=4)
    inner = Oracle(model, x, y, budget=20)
    outer = averaging(inner.handle("linf", 1.0), 4)
    assert outer.budget == 5
    scores = outer.query(x[[0, 2]], torch.tensor([0, 2]))
    assert inner.queries.tolist() == [4, 0, 4] and outer.queries.tolist() == [1, 0, 1]
    model.reseed(4)
    manual = model(x[[0, 2]].repeat_interleave(4, 0)).view(2, 4, -1).mean(1)
    assert torch.allclose(scores, manual)
    with pytest.raises(BudgetExceeded):
        outer.query(x[[0]].repeat(5, 1, 1, 1), torch.zeros(5, dtype=torch.long))


def test_eot_reports_real_queries(cnn, test_set):
    x, y = test_set[:20]
    oracle = Oracle(cnn, x, y, budget=50)
    result = EOT(Square(progress=False), m=5).run(oracle)
    assert result.queries_per_point == 5 and result.budget == 50 and torch.equal(result.queries, oracle.queries)
    assert (result.first_success[result.success] % 5 == 0).all()
    with pytest.raises(ValueError, match="m"):
        EOT(Square(), m=0)


def test_eot_beats_single_queries_against_input_noise_at_equal_points(cnn, test_set):
    """Acceptance: sigma 0.02 input noise; after 100 points EOT-5 leaves fewer robust images than M=1, both as
    the attacker saw it and re-evaluated with fresh noisy queries. Measured (measured with benchmarks/threshold_spread.py over seeds 0-4 of the attack and
    the noise): observed M1 - M5 +0.068 ± 0.011, re-evaluated M1 - M5 +0.117 ± 0.045, re-evaluated minus observed
    (M1) +0.189 ± 0.035: each mean clears 0 by more than 2.5 std."""
    x, y = test_set[:100]
    noisy = InputNoise(cnn, sigma=0.02, seed=0)
    observed, fresh = {}, {}
    for m in (1, 5):
        noisy.reseed(0)
        result = build("square", eot=m, progress=False).run(Oracle(noisy, x, y, budget=100 * m))
        observed[m] = result.robust_accuracy(100 * m)
        fresh[m] = metrics.reevaluated_accuracy(noisy, result.x_adv, y, repeats=10)
    assert observed[5] < observed[1] and fresh[5] < fresh[1], (observed, fresh)
    assert fresh[1] > observed[1]  # a single noisy evaluation inflates success
