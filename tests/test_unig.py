"""UniG: its unification step really lowers the gradient-variance loss, A stays in its box, it is seeded,
batch-dependent, pads single images, finds the classifier layer of every zoo architecture, and keeps clean
accuracy while resisting Square."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests import scenarios
from workbench import models
from workbench.defenses.unig import UniG, last_linear, unification_loss, unify


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
    a = torch.ones(5, 8, requires_grad=True)  # the un-squared norm has a finite (zero) gradient at equal rows
    grad, = torch.autograd.grad(unification_loss(g * a), a)
    assert torch.isfinite(grad).all()


def _algorithm_1_by_hand(a0, f, w, b, labels, alpha, delta, steps):
    """Algorithm 1 written out independently: closed-form feature gradients of the cross-entropy of a linear
    classifier, g_i = a_i * W^T (softmax(W (a_i * f_i) + b) - onehot(label_i)); min and max of the normalization
    from the gradients at a0, held constant; the loss sum_i ||g~_i - g~_{i+1}||; its gradient in A by central
    finite differences (float64); a plain step of size alpha; the clip to [1 - delta, 1 + delta]."""
    onehot = torch.nn.functional.one_hot(labels, w.shape[0]).double()

    def grads(a):
        return a * ((torch.softmax((a * f) @ w.T + b, 1) - onehot) @ w)

    low, high = grads(a0).min(), grads(a0).max()

    def loss(a):
        g = (grads(a) - low) / (high - low)
        return sum(torch.linalg.norm(g[i] - g[i + 1]) for i in range(len(g) - 1))

    a, h = a0.clone(), 1e-6
    for _ in range(steps):
        fd = torch.zeros_like(a)
        for idx in itertools.product(*map(range, a.shape)):
            e = torch.zeros_like(a)
            e[idx] = h
            fd[idx] = (loss(a + e) - loss(a - e)) / (2 * h)
        a = (a - alpha * fd).clamp(1 - delta, 1 + delta)
    return a, loss(a0)


@pytest.mark.parametrize("steps", [1, 2])
def test_unification_steps_match_algorithm_1_written_by_hand(steps):
    gen = torch.Generator().manual_seed(0)
    f = torch.rand(4, 5, generator=gen, dtype=torch.float64) * 2
    linear = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(3, 5, generator=gen, dtype=torch.float64))
        linear.bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    labels = torch.tensor([0, 2, 1, 2])
    a0 = (1 + 0.5 * torch.randn(4, 5, generator=gen, dtype=torch.float64)).clamp(0.5, 1.5)
    a, losses = unify(a0, f, linear, labels, p=steps, alpha=0.3, delta=0.5)
    expected, first = _algorithm_1_by_hand(a0, f, linear.weight.detach(), linear.bias.detach(), labels, 0.3, 0.5,
                                           steps)
    assert losses[0] == pytest.approx(first.item(), rel=1e-9)
    assert torch.allclose(a, expected, atol=1e-7), (a - expected).abs().max()
    assert not torch.allclose(a, a0)  # the step moved A


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


def test_registry_default_keeps_clean_predictions():
    """Acceptance: the registry default (delta 0.1, p 1, alpha 1) agrees with the undefended CNN on >= 99.5% of
    the 1000 test images (batches of 100) and keeps clean accuracy within 0.5 points. Measured over UniG seeds 0-4:
    agreement 1.0000 ± 0.0000, accuracy 0.974 ± 0.000 (= the CNN's); with min/max back-propagated (the defect this
    guards against) the agreement was 0.9886 ± 0.0009."""
    scenarios.check("unig-clean")


def test_square_is_resisted():
    """Square (l-inf 0.3, 100 images, 300 queries): UniG's re-evaluated robust accuracy far above the undefended
    model's (re-evaluated: the majority of 5 fresh queries). Measured (`python -m benchmarks.threshold_spread unig`,
    seeds 0-4 of the attack and of UniG): +0.434 ± 0.017 (min +0.42). The threshold was +0.5 for the earlier UniG that back-propagated through the normalization's
    min/max; the released code's computation (constants) is weaker on MNIST, and this test follows it."""
    scenarios.check("unig")
