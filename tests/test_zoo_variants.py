"""The zoo's fine-tuned variants (shipped weights): adversarial training resists PGD, Gaussian
augmentation keeps clean accuracy under its serving noise; AAA and UniG compose with the AT model."""

from __future__ import annotations

import torch

from tests import scenarios
from workbench import models
from workbench.defenses.registry import build


def test_adversarially_trained_model_resists_pgd(cnn, test_set):
    """PGD-40 (l-inf 0.3, 200 images). Measured (`python -m benchmarks.threshold_spread` over seeds 0-4 of PGD's start): the shipped AT model keeps
    0.450 ± 0.011, the plain CNN 0.000: a difference of 0.45, 14 std above the 0.3 threshold."""
    scenarios.check("at")
    at = models.load("mnist-cnn-at")
    x8, _ = test_set[:8]
    assert torch.equal(build("aaa-linear", "mnist-cnn-at")(x8).argmax(1), at(x8).argmax(1))
    unig = build("unig", "mnist-cnn-at")
    assert unig(x8).shape == (8, 10) and unig.last_losses[-1] < unig.last_losses[0]


def test_gaussian_fine_tuned_model_keeps_accuracy_under_its_noise(test_set):
    """Measured (`python -m benchmarks.threshold_spread` over seeds 0-4 of the noise): 0.971 ± 0.002 on the 1000 test images under sigma 0.05 noise."""
    assert build("rnd-gf", "mnist-cnn").sigma == 0.05
    scenarios.check("rnd-gf")
