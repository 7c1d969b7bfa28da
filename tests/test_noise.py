"""Input-noise defenses (RND / SND): seeded randomness, scaling, clipping, argument checks."""

from __future__ import annotations

import pytest
import torch

from tests.toy import linear_model
from workbench.defenses.noise import InputNoise


def test_noise_is_random_per_query_and_reproducible_from_the_seed():
    x = torch.rand(4, 1, 4, 4)
    defended = InputNoise(linear_model(), sigma=0.05, seed=3)
    a, b = defended(x), defended(x)
    assert not torch.equal(a, b)
    defended.reseed()
    assert torch.equal(defended(x), a)


def test_beta_scaling_shrinks_the_noise_and_clipping_keeps_the_box():
    x = torch.rand(2000, 1, 1, 1)
    seen = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())

    def record(module, inputs, output):
        seen.append(inputs[0].clone())

    model.register_forward_hook(record)
    InputNoise(model, sigma=0.5, seed=0)(x)
    InputNoise(model, sigma=0.5, beta=(1.0, 9.0), seed=0)(x)
    plain, scaled = (s - x for s in seen)
    assert scaled.abs().mean() < plain.abs().mean() * 0.3  # E[k] = 0.1 under Beta(1, 9)
    assert seen[0].min() >= 0 and seen[0].max() <= 1


def test_bad_arguments_name_the_argument():
    for kwargs, arg in [({"sigma": -1.0}, "sigma"), ({"logit_noise": -0.1}, "logit_noise"),
                        ({"beta": (1.0,)}, "beta"), ({"beta": (0.0, 1.0)}, "beta")]:
        with pytest.raises(ValueError, match=arg):
            InputNoise(linear_model(), **kwargs)
