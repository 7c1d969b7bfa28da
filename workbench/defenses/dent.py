"""DENT: dynamic defense by test-time entropy minimization of the normalization layers' affine parameters.

Paper: Wang, Yang, Darrell, Yu, Song, "Fighting Gradients with Gradients: Dynamic Defenses against Adversarial
Attacks" (2021), run as the AAA and UniG papers ran it: on every query batch, the affine parameters (scale and
shift) of the normalization layers are reset to the model's and updated by ``steps`` Adam steps (lr 1e-3) on the
mean prediction entropy of the batch; the output is the adapted model's logits.

Normalization statistics come from the query batch (``stats="batch"``, as in Tent and DENT; running statistics
are never overwritten) or from the model's running averages (``stats="running"``). Either way the output for an
image depends on the rest of its batch: evaluate with fresh queries. The zoo's MNIST CNN has BatchNorm layers
after both convolutions, which DENT adapts.

Arguments:
    model: the classifier (images in [0, 1] -> logits) with BatchNorm / GroupNorm / LayerNorm layers.
    steps: Adam steps per query batch (default 6). lr: Adam learning rate (default 1e-3).
    stats: "batch" (default) or "running".

Example::

    defended = DENT(model)
    logits = defended(x)          # 6 entropy-minimization steps on x's batch, then the prediction
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from workbench import checks

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
STATS = ("batch", "running")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of the softmax of ``logits``."""
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1).mean()


class DENT(nn.Module):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, steps: int = 6, lr: float = 1e-3, stats: str = "batch"):
        super().__init__()
        checks.module("model", model)
        steps, lr = checks.at_least("steps", steps, 0), checks.positive("lr", lr)
        checks.choice("stats", stats, STATS)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.norms = [m for m in self.model.modules() if isinstance(m, NORMS) and m.weight is not None]
        if not self.norms:
            raise ValueError("model has no normalization layer with affine parameters for DENT to adapt")
        self.params = [p for m in self.norms for p in (m.weight, m.bias) if p is not None]
        self.original = [p.detach().clone() for p in self.params]
        self.momenta = [getattr(m, "momentum", None) for m in self.norms]
        self.steps, self.lr, self.stats = steps, float(lr), stats
        self.last_entropy: list[float] = []

    def extra_repr(self) -> str:
        return f"steps={self.steps}, lr={self.lr:g}, stats={self.stats!r}, layers={len(self.norms)}"

    def _use_batch_stats(self, on: bool) -> None:
        for m, momentum in zip(self.norms, self.momenta):
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(on)
                m.momentum = 0.0 if on else momentum  # momentum 0: the running statistics never change

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for p, p0 in zip(self.params, self.original):
                p.copy_(p0)
        self._use_batch_stats(self.stats == "batch")
        try:
            for p in self.params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(self.params, lr=self.lr)
            self.last_entropy = []
            with torch.enable_grad():
                for _ in range(self.steps):
                    loss = entropy(self.model(x))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    self.last_entropy.append(loss.item())
            with torch.no_grad():
                out = self.model(x)
            self.last_entropy.append(entropy(out).item())
            return out
        finally:
            for p in self.params:
                p.requires_grad_(False)
            self._use_batch_stats(False)
