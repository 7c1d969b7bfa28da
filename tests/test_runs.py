"""The run path: an attack by name or as an object, the Oracle's options passed through, one result type,
reseeding and re-evaluation done once, and the arguments that cannot go together refused by name."""

from __future__ import annotations

import pytest
import torch

from workbench import runs
from workbench.attacks import registry as attacks
from workbench.defenses.noise import InputNoise
from workbench.losses import margin
from workbench.results import Result


@pytest.fixture(scope="module")
def images(test_set):
    return test_set[:16]


def test_a_name_and_the_object_it_builds_give_the_same_run(cnn, images):
    x, y = images
    by_name = runs.run(cnn, "square", x, y, budget=60, seed=3)
    by_object = runs.run(cnn, attacks.build("square", dataset="mnist", seed=3, progress=False), x, y, budget=60,
                         seed=3)
    assert isinstance(by_name, Result) and isinstance(by_object, Result)
    assert torch.equal(by_name.first_success, by_object.first_success)
    assert torch.equal(by_name.queries, by_object.queries) and by_name.queries.max() <= 60
    assert by_name.reevaluated is None and torch.equal(by_name.robust, by_name.first_success < 0)
    assert by_name.final_accuracy == pytest.approx(by_name.robust_accuracy())


def test_the_oracle_s_recordings_come_back_in_the_result(cnn, images):
    x, y = images
    result = runs.run(cnn, "square", x, y, budget=30, record=True, reference=cnn, keep_images=2)
    assert result.observed.shape == (16, 30) and result.kept.shape == (2, 30, 1, 28, 28)
    clean = margin(cnn(x), y)
    assert torch.allclose(result.observed[:, 0], clean, atol=1e-5)  # query 1 is the clean image
    assert torch.allclose(result.reference_margin, result.observed, atol=1e-4, equal_nan=True)  # undefended
    plain = runs.run(cnn, "square", x, y, budget=30)
    assert plain.observed is None and torch.equal(plain.first_success, result.first_success)


def test_a_randomized_module_is_probed_reseeded_and_re_evaluated(cnn, images):
    """A bare module is probed on the attacked images: input noise is found randomized, so the final images are
    re-evaluated by fresh queries; the defense is reseeded at the run's seed, so a second run is identical."""
    x, y = images
    noisy = InputNoise(cnn, sigma=0.05, seed=123)
    first = runs.run(noisy, "square", x, y, budget=40, seed=1, repeats=4)
    again = runs.run(noisy, "square", x, y, budget=40, seed=1, repeats=4)
    assert first.reevaluated is not None and first.reevaluated.shape == (16,)
    assert torch.equal(first.final, first.reevaluated >= 0.5)
    assert torch.equal(first.first_success, again.first_success) and torch.equal(first.reevaluated, again.reevaluated)


@pytest.mark.parametrize("given, named", [({"eps": 0.1}, "eps"), ({"eot": 3}, "eot"), ({"norm": "l2"}, "norm"),
                                          ({"attack_kwargs": {"p_init": 0.1}}, "attack_kwargs")])
def test_an_attack_object_refuses_settings_of_its_own(cnn, images, given, named):
    x, y = images
    with pytest.raises(ValueError, match=named):
        runs.run(cnn, attacks.build("square", dataset="mnist"), x, y, budget=5, **given)


def test_refusals_name_the_argument(cnn, images, tmp_path):
    x, y = images
    with pytest.raises(ValueError, match="target"):
        runs.run("mnist-cnn", "square", x, y, budget=5)
    with pytest.raises(ValueError, match="attack"):
        runs.run(cnn, 42, x, y, budget=5)
    target = runs.Target.of(cnn, x, key="k")
    with pytest.raises(ValueError, match="cache_dir"):
        runs.run(target, "square", x, y, budget=5, record=True, cache_dir=tmp_path)
