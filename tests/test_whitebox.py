"""White-box FGSM / PGD / BPDA and the GCM layer: concealment, precision, and how BPDA undoes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests import scenarios
from tests.toy import linear_model
from workbench import metrics
from workbench.threat import inside
from workbench.attacks.whitebox import fgsm, input_gradient, pgd, straight_through
from workbench.defenses.gcm import GCM, Concealment


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_pgd_breaks_the_cnn_gcm_stops_pgd_and_bpda_undoes_it():
    """Acceptance (l-inf eps 0.3, 200 test images): PGD-40 < 5%; PGD through GCM fails; BPDA < 5% again.
    Measured (`python -m benchmarks.threshold_spread` over seeds 0-4 of PGD's start): undefended 0.000 ± 0.000, through GCM 0.940 ± 0.005, BPDA
    0.000 ± 0.000."""
    scenarios.check("whitebox")


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_stays_in_the_ball(cnn, test_set, norm, eps):
    x, y = test_set[:20]
    assert inside(pgd(cnn, x, y, norm=norm, eps=eps, steps=5, progress=False), x, eps, norm).all()
    assert torch.equal(pgd(cnn, x, y, norm=norm, eps=eps, steps=3, seed=1, progress=False),
                       pgd(cnn, x, y, norm=norm, eps=eps, steps=3, seed=1, progress=False))


def test_fgsm_is_one_signed_gradient_step():
    model = linear_model()
    x = torch.full((2, 1, 4, 4), 0.5)
    y = model(x).argmax(1)  # correctly classified: FGSM steps them (a misclassified image is left as it is)
    xr = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    assert torch.allclose(fgsm(model, x, y, eps=0.1), (x + 0.1 * grad.sign()).clamp(0, 1))


def test_gcm_changes_42_of_256_float32_levels_and_all_but_zero_in_float64():
    levels = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 16, 16)
    layer = Concealment()
    out = layer(levels)
    assert layer.last_changed == 42 and layer.last_total == 256
    assert (out - levels).abs().max() <= 2 ** -24 * 1.01 and levels[out != levels].max() < 0.25
    wide = Concealment(dtype=torch.float64)
    assert wide(levels.double()).ne(levels.double()).sum() == 255  # sin(0) = 0


def test_gcm_refuses_half_precision():
    with pytest.raises(ValueError, match="dtype"):
        Concealment(dtype=torch.float16)
    with pytest.raises(ValueError, match="float16"):
        Concealment()(torch.rand(1, 1, 2, 2).half())


def test_gcm_gradients_are_dominated_by_the_sine_term(cnn, test_set):
    """Where pixels take many different values (as after PGD's random start) the factor 1 + 1e12 cos(1e20 x) has a
    pseudo-random sign per pixel: the gradient direction is lost. Raw MNIST images are mostly one value (0, the
    background), where the factor is one constant (cos(0) = 1: a uniform positive 1e12), so the gradient's sign
    survives there and the cosine with the true gradient stays high."""
    x, y = test_set[:50]
    defended = GCM(cnn)
    jitter = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 0.02
    x_raw, x = x, x * 0.96 + 0.01 + jitter  # the same images, every pixel a different value

    def grad(model):
        return input_gradient(model, x, y).flatten(1)

    plain, concealed = grad(cnn), grad(defended)
    cosine = F.cosine_similarity(plain, concealed, dim=1)
    assert cosine.abs().mean() < 0.1
    assert concealed.norm(dim=1).mean() > 1e6 * plain.norm(dim=1).mean()
    assert torch.equal(defended(x).argmax(1), cnn(x).argmax(1))
    x = x_raw
    assert F.cosine_similarity(grad(cnn), grad(defended), dim=1).mean() > 0.3


def test_gcm_after_a_named_layer_and_bpda_there(cnn, test_set):
    x, y = test_set[:10]
    defended = GCM(cnn, layer="net.features.0")
    assert defended.concealment_name == "model.net.features.0.1"
    assert torch.allclose(defended(x), cnn(x), atol=1e-4) and defended.last_total == 10 * 32 * 28 * 28
    assert "Sequential" not in repr(cnn.net.features[0])  # the caller's model is untouched
    with pytest.raises(ValueError, match="layer"):
        GCM(cnn, layer="net.nope")
    with pytest.raises(ValueError, match="bpda"):
        with straight_through(cnn, "nope"):
            pass


def test_bpda_finds_gcm_after_a_named_layer(cnn, test_set):
    """The layer name ``concealment_name`` is a submodule BPDA can hook, and undoing it restores PGD. Measured
    (50 images, PGD-10, l-inf 0.3, PGD seeds 0-4): GCM after net.features.0 keeps 0.93 ± 0.01 accuracy without BPDA,
    0.00 with it (undefended 0.00)."""
    x, y = test_set[:50]
    defended = GCM(cnn, layer="net.features.0")
    assert defended.concealment_name in dict(defended.named_modules())
    assert defended.concealment is dict(defended.named_modules())[defended.concealment_name]
    concealed = metrics.accuracy(metrics.predict(defended, pgd(defended, x, y, eps=0.3, steps=10, progress=False)), y)
    undone = metrics.accuracy(metrics.predict(defended, pgd(defended, x, y, eps=0.3, steps=10, progress=False,
                                                            bpda=defended.concealment_name)), y)
    print(f"GCM after net.features.0: PGD-10 {concealed:.2f}, with BPDA {undone:.2f}")
    assert concealed > 0.6 and undone < 0.2
