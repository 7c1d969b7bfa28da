"""Expectation over transformation (EOT): any attack, with every candidate point queried M times and the
scores averaged, against randomized defenses.

Papers: Byun, Go, Kim, "On the Effectiveness of Small Input Noise for Defending Against Query-based Black-Box
Attacks", WACV 2022, Sec. 4.6; Qin et al., "Random Noise Defense Against Query-Based Black-Box Attacks",
NeurIPS 2021 (the EOT adaptive attack in the slides).

Distance: that of the wrapped attack.

Arguments:
    attack: any workbench attack (its own arguments and defaults are kept).
    m: queries averaged per candidate point (default 5); each of them counts against the budget.

The wrapped attack sees an oracle whose budget is ``budget // m`` points and whose scores are the mean of m
queries (of logits or probabilities, as the oracle returns). The result is converted back to real queries:
``first_success`` is the query that completed the successful point (point * m) and ``queries_per_point`` = m,
so ``robust_accuracy(b)`` reads the accuracy after b real queries and ``robust_accuracy(p * m)`` after p points.
Success is what the attacker saw (the averaged prediction); re-evaluate the final images with fresh queries
(``metrics.reevaluated_accuracy``) to compare with what the defense does on them.

Shape: the oracle's images (N, C, H, W) in [0, 1]; each query batch is repeated m times.

Example::

    >>> result = EOT(Square(eps=0.3), m=5).run(Oracle(noisy_model, x, y, budget=5000))
    >>> result.robust_accuracy(1000 * 5)  # after 1000 points
"""

from __future__ import annotations

import dataclasses

import torch

from workbench import checks
from workbench.attacks.base import Attack, AttackResult
from workbench.oracle import BudgetExceeded, Oracle


class AveragingOracle(Oracle):
    """A view of ``inner`` in which one query is the mean of ``m`` queries of ``inner`` at the same point."""

    def __init__(self, inner: Oracle, m: int):  # noqa: D107 - no Oracle.__init__: everything is delegated
        self.inner, self.m = inner, m
        self.model, self.reference, self.device = inner.model, inner.reference, inner.device
        self.x, self.y, self.scores, self.quantize = inner.x, inner.y, inner.scores, inner.quantize
        self.batch_size = inner.batch_size
        self.budget = inner.budget // m
        self.observed = self.reference_margin = None

    @property
    def queries(self) -> torch.Tensor:
        return -(-self.inner.queries // self.m)  # points started (ceil)

    @property
    def threat(self) -> tuple[str, float] | None:
        return self.inner.threat

    @property
    def forward_seconds(self) -> float:
        return self.inner.forward_seconds

    def set_threat(self, norm: str, eps: float) -> None:
        self.inner.set_threat(norm, eps)

    def query(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=self.device).long()
        if (self.queries + torch.bincount(idx, minlength=len(self.x)) > self.budget).any():
            raise BudgetExceeded(f"a point would exceed the budget of {self.budget} points of {self.m} queries")
        scores = self.inner.query(x.repeat_interleave(self.m, 0), idx.repeat_interleave(self.m))
        return scores.view(len(idx), self.m, -1).mean(1)


class EOT:
    __doc__ = __doc__

    def __init__(self, attack: Attack, *, m: int = 5):
        if not isinstance(attack, Attack):
            raise ValueError(f"attack must be a workbench Attack, got {type(attack).__name__}")
        checks.at_least("m", m, 1)
        self.attack, self.m = attack, m
        self.name, self.norm, self.eps = f"eot{m}-{attack.name}", attack.norm, attack.eps

    def __repr__(self) -> str:
        return f"EOT({self.attack!r}, m={self.m})"

    def run(self, oracle: Oracle, targets: torch.Tensor | None = None) -> AttackResult:
        if oracle.budget < self.m:
            raise ValueError(f"the oracle's budget ({oracle.budget}) must allow one point of m={self.m} queries")
        result = self.attack.run(AveragingOracle(oracle, self.m), targets)
        first = torch.where(result.success, result.first_success * self.m, result.first_success)
        return dataclasses.replace(result, queries=oracle.queries.clone(), first_success=first,
                                   budget=oracle.budget, queries_per_point=self.m)
