"""RLS: Random Logit Scaling, the logits multiplied by a random positive factor drawn afresh for every query.

Paper: Dashtbani, Dousti Gandomani, Sadeghzadeh, "Random Logit Scaling: Defending Deep Neural Networks Against
Black-Box Score-Based Adversarial Example Attacks", TMLR 2026 (under review on OpenReview, CXafPv4aAG); defaults
from the configuration its public code ships (``rls.uniform``: low 0.5, high 10).

Every row of a query batch (one query of one image) gets its own factor ``m ~ U[low, high]`` and the defense
returns ``m * logits``. (The reference code, HamidDasht/RLS-adversarial-defense ``utils/model_loader.py``, draws one
factor per forward call and applies it to the whole batch; each image still sees a fresh factor at every query,
from the same distribution. One factor per row keeps a user's query independent of who else is in the batch.) Since ``m > 0`` the predicted class never changes, while the scale of every score, and so of
every loss an attacker computes from them (margin, cross-entropy, probability), jumps from query to query: a
greedy attack compares two losses measured under two different factors. A loss that a positive rescaling of the
logits cannot change (the DLR ratio of ``workbench.attacks.base``, attack ``square-dlr``) sees through it.

Arguments:
    model: the classifier (images in [0, 1] -> logits).
    low, high: the range of the uniform factor (defaults 0.5 and 10, the paper's; 0 < low <= high).
    seed: seed of the factors' generator (default 0; ``reseed`` restarts it).

Example::

    defended = RandomLogitScaling(model, low=0.5, high=10, seed=0)
    defended(x).argmax(1) == model(x).argmax(1)      # always
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.threat import model_device

RLS_LOW, RLS_HIGH = 0.5, 10.0  # the paper's uniform range (its code's defense configuration)


class RandomLogitScaling(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, low: float = RLS_LOW, high: float = RLS_HIGH, seed: int = 0):
        super().__init__(seed)
        checks.module("model", model)
        low, high = checks.positive("low", low), checks.positive("high", high)
        if high < low:
            raise ValueError(f"high must be >= low, got low={low:g}, high={high:g}")
        self.model, self.low, self.high = model, low, high

    def extra_repr(self) -> str:
        return f"low={self.low:g}, high={self.high:g}, seed={self.seed}"

    def factors(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 1) factors, one per query, from the defense's generator."""
        u = torch.rand(n, 1, generator=self._generator(device), device=device)
        return self.low + (self.high - self.low) * u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits * self.factors(len(x), model_device(self.model)).to(logits.dtype)
