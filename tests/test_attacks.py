"""Properties every registered attack must have: exact budgets, eps-balls and [0, 1], determinism, nothing
changes under a vanishing eps; with and without 8-bit queries, l-inf and l2, plain and under EOT."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.attacks import build, names, registry
from workbench.threat import inside
from workbench.oracle import BudgetExceeded, Oracle

EPS = {"linf": 0.3, "l2": 2.0}


@pytest.mark.parametrize("name", names())
@settings(max_examples=8, deadline=None)
@given(norm=st.sampled_from(["linf", "l2"]), quantize=st.booleans(), budget=st.integers(1, 45),
       scale=st.floats(0.05, 1.0), seed=st.integers(0, 1000), eot=st.sampled_from([1, 1, 3]))
def test_budget_ball_and_bookkeeping(cnn, test_set, name, norm, quantize, budget, scale, seed, eot):
    if norm not in registry.spec(name).cls.norms:  # an attack in one norm says so by name
        with pytest.raises(ValueError, match="norm"):
            build(name, dataset="mnist", norm=norm)
        return
    eps = scale * EPS[norm]
    x, y = test_set[seed % 900:seed % 900 + 5]
    oracle = Oracle(cnn, x, y, budget=budget * eot, quantize=quantize)  # refuses out-of-ball and over-budget
    attack = build(name, dataset="mnist", norm=norm, eps=eps, seed=seed, progress=False, eot=eot)
    result = attack.run(oracle)
    assert (result.queries <= budget * eot).all() and torch.equal(result.queries, oracle.queries)
    assert inside(result.x_adv, x, eps, norm).all()
    done = result.success
    inner = getattr(attack, "attack", attack)
    step = {"nes": 2 * getattr(inner, "pairs", 1), "bandits": 2}.get(name, 1) * eot  # queries sent in one batch
    after = result.queries[done] - result.first_success[done]
    assert (after >= 0).all() and (after < step).all()  # nothing queried after the step that succeeded
    assert (result.first_success[~done] == -1).all()
    if quantize:
        assert torch.allclose(result.x_adv * 255, (result.x_adv * 255).round(), atol=1e-4)
    cost = getattr(attack, "attack", attack).cost  # queries per step: the unused rest is below one step
    assert (result.queries[~done] > (budget - cost) * eot).all()
    assert (cnn(result.x_adv[done]).argmax(1) != y[done]).all()  # successes are misclassified (all deterministic)


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_result(cnn, test_set, name, norm):
    if norm not in registry.spec(name).cls.norms:
        pytest.skip(f"{name} attacks in {registry.spec(name).cls.norms} only")
    x, y = test_set[100:110]

    def run(seed):
        return build(name, dataset="mnist", norm=norm, seed=seed, progress=False).run(Oracle(cnn, x, y, budget=60))

    a, b = run(5), run(5)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.first_success, b.first_success)
    assert torch.equal(a.queries, b.queries)


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("norm, quantize", [("linf", False), ("l2", True)])
def test_vanishing_eps_changes_nothing(cnn, test_set, name, norm, quantize):
    if norm not in registry.spec(name).cls.norms:
        pytest.skip(f"{name} attacks in {registry.spec(name).cls.norms} only")
    x, y = test_set[200:230]
    clean = cnn(x).argmax(1)
    result = build(name, dataset="mnist", norm=norm, eps=1e-7, progress=False).run(
        Oracle(cnn, x, y, budget=50, quantize=quantize))
    assert torch.equal(cnn(result.x_adv).argmax(1), clean)
    assert torch.equal(result.success, clean != y)  # only the images misclassified from the start


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="name"):
        build("squares")
    with pytest.raises(ValueError, match="p_init"):
        build("nes", dataset="mnist", p_init=0.1)
    with pytest.raises(ValueError, match="dataset"):
        build("square", dataset="svhn")
    with pytest.raises(ValueError, match="eot"):
        build("square", dataset="mnist", eot=0)
    with pytest.raises(ValueError, match="needs dataset="):  # an attack's eps is the dataset's: no default
        build("square")
    assert build("nes", dataset="cifar10").lr == pytest.approx(2 / 255)
    assert build("nes", dataset="mnist", lr=0.01).lr == 0.01  # overrides win over the preset
    assert registry.settings("square", "imagenet", "l2") == {"norm": "l2", "eps": 5.0, "p_init": 0.1}


@pytest.mark.parametrize("name", names())
def test_every_attack_file_carries_the_uniform_docstring(name):
    doc = type(build(name, dataset="mnist")).__doc__
    for part in ("Paper", "Distance", "Arguments", "Shape", "Example"):
        assert part in doc, f"{name}: docstring lacks {part!r}"


def test_an_oracle_cannot_be_pushed_past_its_budget(cnn, test_set):
    x, y = test_set[:2]
    oracle = Oracle(cnn, x, y, budget=3)
    oracle.query(x, torch.arange(2))
    with pytest.raises(BudgetExceeded):
        oracle.query(x.repeat(3, 1, 1, 1), torch.tensor([0, 0, 0, 1, 1, 1]))
