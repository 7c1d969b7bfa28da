"""The adaptive attacks the newer defenses call for (switch-direction Square against loss attractors, Square on the
scale-free DLR ratio against logit rescaling) and how ``evaluate`` picks them and its EOT sample count from the
probes."""

from __future__ import annotations

import torch

from workbench import runs
from workbench.attacks import registry as attacks
from workbench.attacks.square_switch import SquareSwitch, SwitchState
from workbench.defenses import registry as defenses
from workbench.evaluate import EOT_RANGE, eot_samples, suite
from workbench.losses import dlr, margin, targeted_dlr
from workbench.probes import Probes


def test_the_dlr_ratio_ignores_a_shift_and_a_positive_rescaling_of_the_scores():
    """The property the scale-free attack rests on, on random scores: DLR(a z + b) = DLR(z) for a > 0, per row,
    and its sign is the margin's."""
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(64, 10, generator=gen) * 5, torch.randint(0, 10, (64,), generator=gen)
    a, b = torch.rand(64, 1, generator=gen) * 10 + 0.1, torch.randn(64, 1, generator=gen) * 3
    assert torch.allclose(dlr(a * z + b, y), dlr(z, y), atol=1e-5)
    assert torch.allclose(targeted_dlr(a * z + b, y), targeted_dlr(z, y), atol=1e-5)
    assert torch.equal(dlr(z, y) < 0, margin(z, y) < 0)


def test_square_on_the_dlr_ratio_sees_through_random_logit_scaling(cnn, test_set):
    """Against RLS the DLR attack reads the same losses as against the undefended model (up to float rounding), so
    it breaks the same images at the same queries: measured equal on all 30 images at seeds 0, 1, 2 (robust 0.17,
    0.07, 0.10 both ways; plain margin Square on RLS leaves 0.53, 0.47, 0.57); the test allows one image of
    difference for a rounding tie."""
    x, y = test_set[:30]
    rls = defenses.build("rls", cnn)
    plain = runs.run(cnn, "square-dlr", x, y, budget=200, dataset="mnist", seed=0, progress=False)
    scaled = runs.run(rls, "square-dlr", x, y, budget=200, dataset="mnist", seed=0, progress=False)
    assert int((plain.first_success != scaled.first_success).sum()) <= 1
    assert plain.success.sum() >= 15  # the attack works at this budget (measured 25, 28, 27 of 30 at seeds 0-2)


def test_switch_square_flips_the_direction_it_keeps_once_refusals_in_a_row_exceed_k():
    """The reference code's rule: greedy first; an image that refuses more than k = 3 candidates in a row keeps
    increases instead, judging that very candidate in the new direction; a kept candidate resets the count; another
    image's count is its own."""
    attack = SquareSwitch(eps=0.1, k=3, progress=False)
    state = SwitchState(torch.zeros(2, 1, 2, 2), torch.tensor([1.0, 1.0]), 0,
                        torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long))
    idx = torch.tensor([0, 1])
    kept = [attack.accept(None, state, idx, torch.tensor([2.0, 0.5])) for _ in range(3)]  # image 0 refused 3x
    assert [k.tolist() for k in kept] == [[False, True]] * 3
    assert state.ascending.tolist() == [False, False] and state.refused.tolist() == [3, 0]
    fourth = attack.accept(None, state, idx, torch.tensor([2.0, 0.5]))  # the 4th refusal flips image 0 ...
    assert fourth.tolist() == [True, True]  # ... and its candidate is kept as an increase
    assert state.ascending.tolist() == [True, False] and state.refused.tolist() == [0, 0]
    assert attack.accept(None, state, idx, torch.tensor([2.0, 2.0])).tolist() == [True, False]


def test_switch_square_is_square_until_an_image_stalls(cnn, test_set):
    """With k beyond the budget no image ever switches: the run is plain Square's, query for query."""
    x, y = test_set[:20]
    plain = runs.run(cnn, "square", x, y, budget=100, dataset="mnist", seed=1, progress=False)
    never = runs.run(cnn, "square-switch", x, y, budget=100, dataset="mnist", seed=1, progress=False,
                     attack_kwargs={"k": 1000})
    assert torch.equal(plain.first_success, never.first_success)


def _probes(**kw) -> Probes:
    base = dict(randomized=False, batch_dependent=False, keeps_predictions=True, changes_scores=True, difference=0.0)
    return Probes(**{**base, **kw})


def test_evaluate_picks_the_adaptive_attacks_from_the_probes():
    """A deterministic post-processing gets op-, bi- and switch-Square and the DLR Square; a randomized defense that
    keeps predictions gets the DLR Square and EOT, with as many queries per point as its noise calls for, and the
    kappa Square plain and under EOT (kappa: twice the margin noise, over sqrt(5) under EOT); one that changes
    predictions gets EOT; a batch-dependent one the kappa Square with twice the batch's logit change."""
    labels = lambda p: [planned.label for planned in suite(p)]  # noqa: E731
    standard = list(attacks.suite("standard"))
    assert labels(_probes()) == standard + ["square-op", "square-bi", "square-switch", "square-dlr"]
    assert labels(_probes(randomized=True, noise=0.11, margin_noise=0.5)) == standard + [
        "square-dlr", "eot5-square", "eot5-nes", "eot5-bandits", "square kappa=1", "eot5-square kappa=0.45"]
    assert labels(_probes(randomized=True, keeps_predictions=False, noise=0.0)) == standard + [
        "eot2-square", "eot2-nes", "eot2-bandits"]  # no margin noise measured: no kappa attack (it would be Square)
    assert labels(_probes(batch_dependent=True, keeps_predictions=False, difference=0.3)) == standard + [
        "square kappa=0.6"]
    assert labels(_probes(changes_scores=False)) == standard


def test_the_eot_sample_count_follows_the_noise_within_its_range():
    assert eot_samples(0.0) == EOT_RANGE[0] and eot_samples(10.0) == EOT_RANGE[1]
    assert eot_samples(0.1) == 4 and eot_samples(0.2) == 16  # (noise / 0.05) ** 2
    assert eot_samples(0.11) == 5


def test_evaluate_on_rls_is_at_most_the_scale_free_attack_and_well_below_plain_square(cnn, test_set):
    """The issue's acceptance on the embedded MNIST (30 images, 200 queries, seed 0): ``evaluate`` on RLS runs the
    DLR Square, so its worst case is at most that attack's; and it is far below plain Square's, which RLS does
    fool (measured at seeds 0-2: DLR 0.17 / 0.07 / 0.10, plain 0.53 / 0.47 / 0.57: the test asks for a gap of
    0.2, below the smallest measured gap of 0.36)."""
    from workbench.evaluate import evaluate
    x, y = test_set[:30]
    report = evaluate(defenses.build("rls", cnn), x, y, undefended=cnn, budget=200, progress=False)
    finals = report.attacks.set_index("attack")["final"]
    assert "square-dlr" in finals.index
    assert report.worst["final"] <= finals["square-dlr"] + 1e-12
    assert report.worst["final"] <= finals["square"] - 0.2
