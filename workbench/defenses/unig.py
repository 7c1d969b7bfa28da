"""UniG: unifying the feature gradients of the images in a query batch, so that score-based attackers can only
probe a shared, universal-perturbation-like direction.

Paper: Wu, Chen, Fang, Huang, "UniG: Unifying Gradients to Improve Real-world Robustness for Deep Networks",
eq. (4) and Algorithm 1; single images: Sec. 4.6.

A Hadamard module A (one row per image) multiplies the features f that enter the classifier's last linear layer
L (found automatically: the last ``nn.Linear`` of the model; the output is L(A * f)). On every forward pass:

1. A ~ N(1, 0.5) per image (re-drawn for every query batch, from the module's own generator), clipped to
   ``|A - 1| <= delta``;
2. pseudo-labels = the undefended prediction argmax L(f);
3. p times: the feature gradients g_i = d CE(L(A * f_i), label_i) / d f_i (``create_graph``, second order),
   min-max normalized with one scalar min and max over the batch, **taken from the gradients at the starting A
   and held constant** (detached, as the released code does); the loss ``sum_i ||g_i - g_{i+1}||`` over
   consecutive images in batch order; a plain gradient step of size alpha on A (Algorithm 1); clip
   ``|A - 1| <= delta``;
4. output L(A * f) with the final A.

Where this follows the released code and where it does not, with the effect measured on the zoo CNN (agreement
with the undefended predictions on the 1000 MNIST-5k test images, batches of 100, delta 0.1, p 1, alpha 1, mean
± std over seeds 0-4; this implementation: 1.0000 ± 0.0000, clean accuracy unchanged at 0.974):

- min / max of the normalization are constants of the step, as in the released code. Back-propagating through
  them (what this module did before) flips clean predictions: agreement 0.9886 ± 0.0009.
- the distance is the un-squared l2 norm, as in the released code; eq. (4) prints it squared
  (``squared=True``): agreement 1.0000 ± 0.0000 too.
- the initial A is clipped into the box before the first step; the released code takes the first gradient at the
  unclipped draw and clips only after the step (agreement 0.9994 ± 0.0009; with delta 0.1 the loss could rise
  after the step). The output obeys the same constraint either way.
- plain gradient descent (Algorithm 1); the released code uses SGD with momentum 0.9 and weight decay 5e-4 whose
  state carries over from one query batch to the next (agreement 0.9988 ± 0.0004 when imitated). Carrying an
  optimizer state across queries makes the defense's output depend on the attacker's earlier queries; left out.

The output for an image depends on the other images in the batch and on the random draw of A: UniG is a
randomized, batch-dependent defense (seed it; evaluate with fresh queries). A batch of one image is padded with
``reference`` images (UniG Sec. 4.6 uses ten training images; the released code crashes on a batch of one);
without them a single image is refused. ``last_A`` (B, d) and ``last_losses`` (the loss before each step and
after the last one) keep the last forward pass inspectable (UniG Fig. 2a, 3b).

Arguments (defaults: the paper's CIFAR-10 setting delta 0.5, p 1, alpha 10; ImageNet: delta 0.1, alpha 1):
    model: the classifier (images in [0, 1] -> logits) whose last ``nn.Linear`` is the classifier layer.
    delta: clip radius of A around 1. p: gradient steps per forward pass. alpha: step size.
    init_std: std of A's Gaussian initialization (default 0.5).
    squared: square the distances of eq. (4) (default False, as the released code).
    reference: images (k, C, H, W) used to pad single-image batches (default None).
    seed: seed of A's initialization (default 0).

Example::

    defended = UniG(model, delta=0.5, p=1, alpha=10, reference=train.x[:10], seed=0)
    logits = defended(x)
    defended.last_losses          # [loss before the step, loss after it]
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.speed import one_thread
from workbench.threat import model_device


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` submodule of ``model`` (its classifier layer in every zoo architecture)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer: UniG needs the classifier's last linear layer")
    return linears[-1]


def normalization(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scalar min and max of the min-max normalization over the whole batch, detached: constants of the
    step, as the reference code takes them (back-propagating through them flips clean predictions)."""
    return g.min().detach(), g.max().detach()


def unification_loss(g: torch.Tensor, low: torch.Tensor | None = None, high: torch.Tensor | None = None,
                     squared: bool = False) -> torch.Tensor:
    """Eq. (4) as the reference code computes it: the gradients min-max normalized with the constants ``low`` /
    ``high`` (default: ``normalization(g)``), then the sum over consecutive rows of the l2 distance between them
    (``squared=True``: the squared distance, as eq. (4) is printed)."""
    if low is None or high is None:
        low, high = normalization(g)
    g = (g - low) / (high - low).clamp_min(1e-12)
    diff = (g[1:] - g[:-1]).flatten(1)
    return diff.pow(2).sum() if squared else diff.norm(dim=1).sum()


def feature_gradients(a: torch.Tensor, f: torch.Tensor, linear: nn.Linear, labels: torch.Tensor,
                      create_graph: bool) -> torch.Tensor:
    """g_i = d CE(L(a_i * f_i), label_i) / d f_i for every row (second-order graph kept with ``create_graph``)."""
    feats = f.detach().requires_grad_(True)
    logits = F.linear(a * feats, linear.weight, linear.bias)
    g, = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), feats, create_graph=create_graph)
    return g


def unify(a: torch.Tensor, f: torch.Tensor, linear: nn.Linear, labels: torch.Tensor, *, p: int, alpha: float,
          delta: float, squared: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Algorithm 1's inner loop: ``p`` plain gradient steps of size ``alpha`` on the unification loss from ``a``,
    each followed by the clip ``|a - 1| <= delta``. The normalization's min and max are taken from the
    gradients at the starting point and kept as constants for every step. Returns the final ``a`` (detached)
    and the loss before each step and after the last."""
    low = high = None
    losses = []
    with torch.enable_grad():
        for _ in range(p + 1):
            a = a.detach().requires_grad_(True)
            last = len(losses) == p
            g = feature_gradients(a, f, linear, labels, create_graph=not last)
            if low is None:
                low, high = normalization(g)
            loss = unification_loss(g, low, high, squared)
            losses.append(loss.item())
            if last:
                break
            grad_a, = torch.autograd.grad(loss, a)
            a = (a - alpha * grad_a).clamp(1 - delta, 1 + delta)
    return a.detach(), losses


class UniG(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, delta: float = 0.5, p: int = 1, alpha: float = 10.0,
                 init_std: float = 0.5, squared: bool = False, reference: torch.Tensor | None = None,
                 seed: int = 0):
        super().__init__(seed)
        checks.module("model", model)
        self.delta, self.p = checks.positive("delta", delta), checks.at_least("p", p, 0)
        self.alpha, self.init_std = checks.positive("alpha", alpha), checks.non_negative("init_std", init_std)
        self.squared = checks.flag("squared", squared)
        if reference is not None:
            checks.images("reference", reference)
        self.model, self.linear = model, last_linear(model)
        self.reference = reference
        self.last_A: torch.Tensor | None = None
        self.last_losses: list[float] = []

    def extra_repr(self) -> str:
        return (f"delta={self.delta:g}, p={self.p}, alpha={self.alpha:g}, init_std={self.init_std:g}, "
                f"squared={self.squared}, seed={self.seed}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if n == 1:
            if self.reference is None:
                raise ValueError("UniG needs a batch of at least 2 images, or reference images to pad a single "
                                 "one with (UniG(..., reference=train_images[:10]))")
            x = torch.cat([x, self.reference.to(x.device, x.dtype)])

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            return self._defended_output(inputs[0].detach())

        handle = self.linear.register_forward_hook(hook)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        return out[:n]

    def _defended_output(self, f: torch.Tensor) -> torch.Tensor:
        gen = self._generator(model_device(self.model))
        a = 1 + self.init_std * torch.randn(f.shape, generator=gen, device=f.device, dtype=f.dtype)
        a = a.clamp(1 - self.delta, 1 + self.delta)  # start inside the feasible set (see the docstring)
        with torch.no_grad():
            labels = self._classify(f).argmax(1)
        with one_thread():  # small second-order steps on (B, d) features: threads only add waiting
            a, self.last_losses = unify(a, f, self.linear, labels, p=self.p, alpha=self.alpha, delta=self.delta,
                                        squared=self.squared)
        self.last_A = a
        with torch.no_grad():
            return self._classify(a * f)

    def _classify(self, f: torch.Tensor) -> torch.Tensor:
        """The last linear layer without its hooks (calling the module would re-enter ours)."""
        return F.linear(f, self.linear.weight, self.linear.bias)
