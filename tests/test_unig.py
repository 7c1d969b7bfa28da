"""UniG: its unification step really lowers the gradient-variance loss, A stays in its box, it is seeded,
batch-dependent, pads single images, finds the classifier layer of every zoo architecture, and keeps clean
accuracy while resisting Square."""

from __future__ import annotations

import pytest
import torch

from workbench import metrics, models
from workbench.attacks import build as build_attack
from workbench.defenses.unig import UniG, last_linear, unification_loss
from workbench.oracle import Oracle


def test_the_unification_step_lowers_the_loss_and_keeps_a_in_its_box(cnn, test_set):
    x, _ = test_set[:64]
    for delta, alpha in [(0.1, 1.0), (0.5, 10.0)]:
        unig = UniG(cnn, delta=delta, p=3, alpha=alpha)
        unig(x)
        assert unig.last_losses[-1] < unig.last_losses[0]
        assert ((unig.last_A - 1).abs() <= delta + 1e-6).all() and unig.last_A.shape == (64, 128)
    still = UniG(cnn, delta=0.1, p=0)  # no step: nothing is optimized
    still(x)
    assert len(still.last_losses) == 1


def test_unification_loss_is_zero_for_identical_gradients():
    g = torch.rand(1, 8).repeat(5, 1)
    assert unification_loss(g) == 0 and unification_loss(torch.rand(5, 8)) > 0


def test_seeded_random_and_batch_dependent(cnn, test_set):
    x, _ = test_set[:16]
    unig = UniG(cnn, seed=3)
    a, b = unig(x), unig(x)
    assert not torch.equal(a, b)  # A is re-drawn for every query batch
    unig.reseed()
    assert torch.equal(unig(x), a)
    other = torch.cat([x[:8], test_set[100:108][0]])
    assert not torch.allclose(UniG(cnn, seed=3)(other)[:8], a[:8])  # the rest of the batch matters


def test_single_images_are_padded_with_reference_images(cnn, test_set):
    x, _ = test_set[:1]
    with pytest.raises(ValueError, match="reference"):
        UniG(cnn)(x)
    unig = UniG(cnn, reference=test_set[500:510][0])
    out = unig(x)
    assert out.shape == (1, 10) and unig.last_A.shape[0] == 11


@pytest.mark.parametrize("name, shape, features", [("preactresnet18", (2, 3, 32, 32), 512),
                                                    ("wrn-28-10", (2, 3, 32, 32), 640),
                                                    ("resnet18", (2, 3, 64, 64), 512)])
def test_unig_finds_the_classifier_of_every_architecture(name, shape, features):
    torch.manual_seed(0)
    net = models.build(name).eval()
    assert last_linear(net).in_features == features
    unig = UniG(net, delta=0.5, alpha=10)
    out = unig(torch.rand(shape))
    assert out.shape[0] == 2 and unig.last_A.shape == (2, features) and out.dtype == torch.float32


def test_clean_accuracy_kept_and_square_resisted(cnn, test_set):
    """Acceptance: clean accuracy within 0.5 points of the undefended CNN on the 1000 test images; Square (l-inf
    0.3, 100 images, 300 queries) re-evaluated robust accuracy far above the undefended model's."""
    unig = UniG(cnn, delta=0.1, p=1, alpha=1.0, reference=test_set[:10][0])
    clean = metrics.accuracy(metrics.predict(cnn, test_set.x, 100), test_set.y)
    defended = metrics.accuracy(metrics.predict(unig, test_set.x, 100), test_set.y)
    assert abs(defended - clean) <= 0.005
    x, y = test_set[:100]
    plain = build_attack("square", progress=False).run(Oracle(cnn, x, y, budget=300)).robust_accuracy()
    result = build_attack("square", progress=False).run(Oracle(unig, x, y, budget=300))
    assert metrics.reevaluated_accuracy(unig, result.x_adv, y, repeats=5) > plain + 0.5
