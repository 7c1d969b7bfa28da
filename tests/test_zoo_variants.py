"""The zoo's fine-tuned variants (shipped weights): adversarial training resists PGD, Gaussian
augmentation keeps clean accuracy under its serving noise; AAA and UniG compose with the AT model."""

from __future__ import annotations

import torch

from workbench import metrics, models
from workbench.attacks.whitebox import pgd
from workbench.defenses.registry import build


def test_adversarially_trained_model_resists_pgd(cnn, test_set):
    at = models.load("mnist-cnn-at")
    x, y = test_set[:200]
    robust = metrics.accuracy(metrics.predict(at, pgd(at, x, y, progress=False)), y)
    plain = metrics.accuracy(metrics.predict(cnn, pgd(cnn, x, y, progress=False)), y)
    assert robust > plain + 0.3
    x8, _ = test_set[:8]
    assert torch.equal(build("aaa-linear", "mnist-cnn-at")(x8).argmax(1), at(x8).argmax(1))
    unig = build("unig", "mnist-cnn-at")
    assert unig(x8).shape == (8, 10) and unig.last_losses[-1] < unig.last_losses[0]


def test_gaussian_fine_tuned_model_keeps_accuracy_under_its_noise(test_set):
    served = build("rnd-gf", "mnist-cnn")
    assert served.sigma == 0.05
    assert metrics.accuracy(metrics.predict(served, test_set.x), test_set.y) > 0.95
