"""The black box is closed by construction: an attack holds a QueryHandle that can query, read its budget, the
queries used and left, copies of the clean images and labels and the fixed threat model, and nothing else."""

from __future__ import annotations

import pytest
import torch

from tests.toy import linear_model
from workbench.attacks.eot import averaging
from workbench.attacks.square import Square
from workbench.defenses.aaa import AAA
from workbench.oracle import Oracle, QueryHandle


@pytest.fixture
def setup():
    model = AAA(linear_model(side=4), kappa=5)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2])
    oracle = Oracle(model, x, y, budget=10, record=True, reference=model.model)
    return oracle, oracle.handle("linf", 0.1), x


def test_the_handle_reaches_neither_model_nor_reference_nor_traces(setup):
    oracle, handle, _ = setup
    for name in ("model", "reference", "oracle", "_oracle", "observed", "reference_margin", "kept", "inner",
                 "set_threat", "handle", "forward_seconds", "forwards", "_queries"):
        assert not hasattr(handle, name), name
    with pytest.raises(TypeError):
        vars(handle)  # no __dict__ to look into
    assert set(QueryHandle.__slots__) == {"_query", "_used", "_x", "_y", "_info", "_refused", "_open"}  # closures


def test_the_handle_cannot_reset_the_counters_or_widen_the_ball(setup):
    oracle, handle, x = setup
    handle.query(handle.x, torch.arange(3))
    handle.queries.zero_()  # a copy
    handle.remaining().fill_(100)  # a copy
    assert oracle.queries.tolist() == [1, 1, 1] and handle.queries.tolist() == [1, 1, 1]
    for name, value in (("eps", 1.0), ("budget", 100), ("norm", "l2"), ("_info", (100, "linf", 1.0, "x", False))):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(handle, name, value)
    with pytest.raises(ValueError, match="threat model is fixed"):
        oracle.handle("linf", 1.0)
    with pytest.raises(ValueError, match="leave the linf ball"):
        handle.query((x + 0.3).clamp(0, 1), torch.arange(3))
    assert oracle.queries.tolist() == [1, 1, 1]


def test_editing_the_images_moves_no_ball_centre(setup):
    oracle, handle, x = setup
    handle.x.add_(0.5)  # the handle's copy
    x.add_(0.2)  # the caller's tensor, after the Oracle was built
    centre = oracle.x
    assert not torch.equal(centre, x) and torch.equal(centre, handle.x)
    with pytest.raises(ValueError, match="leave the linf ball"):
        handle.query(x.clamp(0, 1), torch.arange(3))  # 0.2 away from the real centre


def test_scores_carry_no_gradient(setup):
    _, handle, _ = setup
    x = handle.x.requires_grad_(True)
    assert not handle.query(x, torch.arange(3)).requires_grad


def test_an_attack_only_ever_sees_the_handle(setup):
    oracle, _, _ = setup
    seen = []

    class Looking(Square):
        def init(self, run):
            seen.append(run.handle)
            return super().init(run)

    fresh = Oracle(oracle.model, oracle.x, oracle.y, budget=5)
    Looking(eps=0.1, progress=False).run(fresh)
    assert isinstance(seen[0], QueryHandle) and not isinstance(seen[0], Oracle)
    assert not hasattr(seen[0], "model")


def test_eot_wraps_the_handle_not_the_model(setup):
    oracle, handle, _ = setup
    view = averaging(handle, 2)
    assert isinstance(view, QueryHandle) and view.budget == 5 and not hasattr(view, "model")
    view.query(view.x[:1], torch.tensor([0]))
    assert oracle.queries.tolist() == [2, 0, 0] and view.queries.tolist() == [1, 0, 0]


def test_non_finite_scores_are_refused_naming_images_and_model():
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    broken = AAA(linear_model(side=4), kappa=5)
    broken.post_process = lambda logits, t=None: torch.where(torch.arange(4)[:, None] == 2, float("nan"), logits)
    oracle = Oracle(broken, x, y, budget=3)
    with pytest.raises(ValueError, match=r"AAA returned non-finite scores .* images \[2\]"):
        oracle.query(x, torch.arange(4))
    assert oracle.queries.sum() == 0
    with pytest.raises(ValueError, match="beta"):
        AAA(linear_model(side=4), beta=float("inf"))
