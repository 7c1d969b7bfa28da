"""UniG: unifying the feature gradients of the images in a query batch, so that score-based attackers can only
probe a shared, universal-perturbation-like direction.

Paper: Wu, Chen, Fang, Huang, "UniG: Unifying Gradients to Improve Real-world Robustness for Deep Networks",
eq. (4) and Algorithm 1; single images: Sec. 4.6.

A Hadamard module A (one row per image) multiplies the features f that enter the classifier's last linear layer
L (found automatically: the last ``nn.Linear`` of the model; the output is L(A * f)). On every forward pass:

1. A ~ N(1, 0.5) per image (re-drawn for every query batch, from the module's own generator), clipped to
   ``|A - 1| <= delta`` (the reference clips only after the step, so its first gradient is taken at a point
   outside the constraint set; the output obeys the same constraint either way);
2. pseudo-labels = the undefended prediction argmax L(f);
3. p times: the feature gradients g_i = d CE(L(A * f_i), label_i) / d f_i (``create_graph``, second order),
   min-max normalized with one scalar min and max over the batch; the loss of eq. (4),
   ``sum_i ||g_i - g_{i+1}||^2`` over consecutive images in batch order; a plain gradient step of size alpha
   on A (Algorithm 1; the reference code uses SGD with momentum whose state carries over between queries); clip
   ``|A - 1| <= delta``;
4. output L(A * f) with the final A.

The output for an image depends on the other images in the batch and on the random draw of A: UniG is a
randomized, batch-dependent defense (seed it; evaluate with fresh queries). A batch of one image is padded with
``reference`` images (UniG Sec. 4.6 uses ten training images); without them a single image is refused.
``last_A`` (B, d) and ``last_losses`` (the loss before each step and after the last one) keep the last forward
pass inspectable (UniG Fig. 2a, 3b).

Arguments (defaults: the paper's CIFAR-10 setting delta 0.5, p 1, alpha 10; ImageNet: delta 0.1, alpha 1):
    model: the classifier (images in [0, 1] -> logits) whose last ``nn.Linear`` is the classifier layer.
    delta: clip radius of A around 1. p: gradient steps per forward pass. alpha: step size.
    init_std: std of A's Gaussian initialization (default 0.5).
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
from workbench.oracle import model_device


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` submodule of ``model`` (its classifier layer in every zoo architecture)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer: UniG needs the classifier's last linear layer")
    return linears[-1]


def unification_loss(g: torch.Tensor) -> torch.Tensor:
    """Eq. (4): squared l2 distances between the min-max normalized gradients of consecutive rows."""
    g = (g - g.min()) / (g.max() - g.min()).clamp_min(1e-12)
    return (g[1:] - g[:-1]).pow(2).sum()


class UniG(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, delta: float = 0.5, p: int = 1, alpha: float = 10.0,
                 init_std: float = 0.5, reference: torch.Tensor | None = None, seed: int = 0):
        super().__init__(seed)
        checks.positive("delta", delta)
        checks.at_least("p", p, 0)
        checks.positive("alpha", alpha)
        if init_std != 0:
            checks.positive("init_std", init_std)
        if reference is not None:
            checks.images("reference", reference)
        self.model, self.linear = model, last_linear(model)
        self.delta, self.p, self.alpha, self.init_std = float(delta), p, float(alpha), init_std
        self.reference = reference
        self.last_A: torch.Tensor | None = None
        self.last_losses: list[float] = []

    def extra_repr(self) -> str:
        return f"delta={self.delta:g}, p={self.p}, alpha={self.alpha:g}, init_std={self.init_std:g}, seed={self.seed}"


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
        losses = []
        with torch.enable_grad():
            for _ in range(self.p):
                a = a.detach().requires_grad_(True)
                loss = self._loss(a, f, labels, create_graph=True)
                grad_a, = torch.autograd.grad(loss, a)
                losses.append(loss.item())
                a = (a - self.alpha * grad_a).clamp(1 - self.delta, 1 + self.delta)
            losses.append(self._loss(a.detach().requires_grad_(True), f, labels, create_graph=False).item())
        self.last_A, self.last_losses = a.detach(), losses
        with torch.no_grad():
            return self._classify(a.detach() * f)

    def _classify(self, f: torch.Tensor) -> torch.Tensor:
        """The last linear layer without its hooks (calling the module would re-enter ours)."""
        return F.linear(f, self.linear.weight, self.linear.bias)

    def _loss(self, a: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, create_graph: bool) -> torch.Tensor:
        feats = f.detach().requires_grad_(True)
        ce = F.cross_entropy(self._classify(a * feats), labels, reduction="sum")
        g, = torch.autograd.grad(ce, feats, create_graph=create_graph)
        return unification_loss(g)
