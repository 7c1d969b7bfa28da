"""Each attack's own rules, checked on tiny analysable models: SimBA's bases and orders, SignHunter's chunk
schedule, NES's gradient estimate and exact last step, Bandits' prior update, the op/bi acceptance rules."""

from __future__ import annotations

import pytest
import torch

from tests.toy import Recorder, linear_model
from workbench.attacks.bandits import Bandits, eg_step
from workbench.attacks.base import Session
from workbench.attacks.nes import NES
from workbench.attacks.signhunter import SignHunter
from workbench.attacks.simba import SimBA, dct_matrix
from workbench.attacks.square_bi import BiState, SquareBi
from workbench.attacks.square_op import SquareOp
from workbench.oracle import Oracle


def _gray(n: int = 3, c: int = 1, side: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((n, c, side, side), 0.5), torch.zeros(n, dtype=torch.long)


def _robust_model(c: int = 1, side: int = 4) -> torch.nn.Module:
    """A linear model whose class 0 wins by a margin no attack in the ball can overcome."""
    model = linear_model(c, side)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([8.0, 0.0, 0.0]))  # no saturation: probabilities still move
    return model


def test_dct_basis_is_orthonormal():
    d = dct_matrix(7)
    assert torch.allclose(d @ d.T, torch.eye(7), atol=1e-5)


def test_simba_orders_are_per_image_and_low_frequencies_come_first():
    x, y = _gray(2, 2, 6)
    session = Session(Oracle(linear_model(2, 6), x, y, budget=5), None, seed=0)
    order = SimBA(eps=0.3, basis="dct", freq=2)._order(session, 2)
    assert not torch.equal(order[0], order[1])
    for row in order:
        assert sorted(row.tolist()) == list(range(72))
        first = row[:8].long()  # 2 channels x a 2x2 block
        rest = first % 36
        assert ((rest // 6 < 2) & (rest % 6 < 2)).all()


@pytest.mark.filterwarnings("ignore:eps=10")  # a ball larger than the box, on purpose
def test_simba_steps_are_orthogonal_moves_of_the_step_length():
    x, y = _gray()
    for basis in ("pixel", "dct"):
        result = SimBA(norm="l2", eps=10.0, step=0.2, basis=basis, progress=False).run(
            Oracle(_robust_model(), x, y, budget=17))  # at most 16 directions: one pass, each used once
        sq = (result.x_adv - x).flatten(1).pow(2).sum(1) / 0.04  # = number of kept steps
        assert torch.allclose(sq, sq.round(), atol=1e-3) and (sq >= 1).all()
        if basis == "pixel":
            moved = (result.x_adv - x).abs()
            assert (torch.isclose(moved, torch.tensor(0.2)) | (moved == 0)).all()


@pytest.mark.filterwarnings("ignore:eps=10")  # a ball larger than the box, on purpose
def test_simba_keeps_a_step_only_when_the_true_class_probability_drops():
    x, y = _gray()
    model = Recorder(_robust_model())
    result = SimBA(norm="l2", eps=10.0, progress=False).run(Oracle(model, x, y, budget=30))
    p_true = torch.cat([model.model(c).softmax(1)[:, 0] for c in model.calls])
    final = model.model(result.x_adv).softmax(1)[:, 0]
    assert (final < model.model(x).softmax(1)[:, 0]).all() and final.min() >= p_true.min() - 1e-7


def test_signhunter_flips_chunks_coarse_to_fine_and_restarts():
    x, y = _gray(1, 1, 2)  # d = 4: levels of 1, 2, 4 chunks, then a restart
    model = Recorder(_robust_model(1, 2))
    attack = SignHunter(norm="linf", eps=0.1, progress=False)
    attack.run(Oracle(model, x, y, budget=2 + 7 + 1))
    deltas = [torch.sign(c - x).flatten() for c in model.calls[1:]]
    assert deltas[0].tolist() == [1, 1, 1, 1]  # query 2: all signs +1
    flipped = [(d != prev).nonzero().flatten().tolist() for d, prev in zip(deltas[1:], [deltas[0]] * 8)]
    # each query flips one chunk relative to the point kept before it; the first step flips everything
    assert flipped[0] == [0, 1, 2, 3]
    sizes = [len((deltas[i + 1] != kept).nonzero()) for i, kept in enumerate(_kept(deltas, model))]
    assert sizes == [4, 2, 2, 1, 1, 1, 1, 4]


def _kept(deltas, model):
    """The sign vector kept before each step (a flip is kept when the loss dropped)."""
    with torch.no_grad():
        loss = [float(model.model(c)[0, 0] - model.model(c)[0, 1:].max()) for c in model.calls[1:]]
    kept, best, out = deltas[0], loss[0], []
    for d, l in zip(deltas[1:], loss[1:]):
        out.append(kept)
        if l < best:
            kept, best = d, l
    return out


def test_nes_estimates_the_gradient_sign():
    x, y = _gray(1, 1, 6)
    model = _robust_model(1, 6)
    attack = NES(norm="linf", eps=0.2, sigma=0.001, lr=0.05, pairs=400, progress=False)
    result = attack.run(Oracle(model, x, y, budget=1 + 800))  # one step
    w = model[1].weight
    logits = model(x)
    runner = logits[0, 1:].argmax() + 1
    true_grad = (w[0] - w[runner]).view_as(x)
    agree = (torch.sign(result.x_adv - x) == -torch.sign(true_grad)).float().mean()
    assert agree > 0.9


def test_nes_shrinks_its_last_step_to_the_budget():
    x, y = _gray(2)
    model = Recorder(_robust_model())
    result = NES(eps=0.3, pairs=20, progress=False).run(Oracle(model, x, y, budget=1 + 40 + 6))
    assert [len(c) for c in model.calls] == [2, 80, 12]  # clean, 20 pairs x 2 images, 3 pairs x 2 images
    assert (result.queries == 47).all()


def test_bandits_spend_two_queries_a_step_and_never_a_lone_one():
    x, y = _gray(2)
    model = Recorder(_robust_model())
    result = Bandits(eps=0.3, prior_size=2, progress=False).run(Oracle(model, x, y, budget=1 + 2 * 5 + 1))
    assert [len(c) for c in model.calls] == [2] + [4] * 5 and (result.queries == 11).all()


def test_exponentiated_gradient_prior_stays_in_range_and_follows_the_gradient():
    prior = torch.zeros(1, 1, 2, 2)
    g = torch.tensor([1.0, -1.0, 0.0, 50.0]).view(1, 1, 2, 2)
    new = eg_step(prior, g, lr=1.0)
    assert (new.abs() <= 1).all() and new.flatten()[0] > 0 > new.flatten()[1] and new.flatten()[2] == 0
    assert torch.isfinite(eg_step(prior, g, lr=1e6)).all()


def test_op_rule_accepts_increases_and_big_drops():
    op = SquareOp(eps=0.3, threshold=3.0)
    old = torch.tensor([5.0, 5.0, 5.0, 5.0])
    new = torch.tensor([5.5, 4.0, 1.5, 5.0])
    assert op.opposite(old, new).tolist() == [True, False, True, False]


def test_bi_rule_is_greedy_until_a_jump_then_op_for_good():
    bi = SquareBi(eps=0.3, threshold=3.0)
    state = BiState(torch.zeros(2, 1, 2, 2), torch.tensor([5.0, 5.0]), 0, torch.zeros(2, dtype=torch.bool))
    idx = torch.tensor([0, 1])
    assert bi.accept(None, state, idx, torch.tensor([4.0, 6.0])).tolist() == [True, False]  # greedy
    assert bi.accept(None, state, idx, torch.tensor([9.0, 5.5])).tolist() == [True, False]  # image 0 jumps
    assert state.switched.tolist() == [True, False]
    assert bi.accept(None, state, idx, torch.tensor([5.5, 4.0])).tolist() == [True, True]  # 0: op, 1: greedy
