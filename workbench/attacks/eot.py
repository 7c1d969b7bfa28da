"""Expectation over transformation (EOT): any attack, with every candidate point queried M times and the
scores averaged, against randomized defenses.

Papers: Byun, Go, Kim, "On the Effectiveness of Small Input Noise for Defending Against Query-based Black-Box
Attacks", WACV 2022, Sec. 4.6; Qin et al., "Random Noise Defense Against Query-Based Black-Box Attacks",
NeurIPS 2021 (the EOT adaptive attack in the slides).

Distance: that of the wrapped attack.

Arguments:
    attack: any workbench attack (its own arguments and defaults are kept).
    m: queries averaged per candidate point (default 5); each of them counts against the budget.

The wrapped attack sees a query handle (``averaging``: it wraps the attacker's handle, never the model) whose budget is ``budget // m`` points and whose scores are the mean of m
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
from workbench.attacks.base import Attack, fresh
from workbench.oracle import BudgetExceeded, Oracle, QueryHandle
from workbench.results import Result


def averaging(inner: QueryHandle, m: int) -> QueryHandle:
    """A view of the handle ``inner`` in which one query is the mean of ``m`` queries of ``inner`` at the same
    point: its budget is ``inner.budget // m`` points and its count the points started (ceil of queries / m)."""
    m = checks.at_least("m", m, 1)
    budget = inner.budget // m

    def points() -> torch.Tensor:
        return -(-inner.queries // m)

    def query(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=inner.device).long()
        if (points() + torch.bincount(idx, minlength=len(inner)) > budget).any():
            raise BudgetExceeded(f"a point would exceed the budget of {budget} points of {m} queries")
        scores = inner.query(x.repeat_interleave(m, 0), idx.repeat_interleave(m))
        return scores.view(len(idx), m, -1).mean(1)

    def refused() -> torch.Tensor | None:
        inner_refused = inner.refused
        return None if inner_refused is None else inner_refused.view(-1, m).any(1)

    return QueryHandle(query, points, inner.x, inner.y, budget=budget, threat=inner.threat, scores=inner.scores,
                       quantize=inner.quantize, refused=refused)


class EOT:
    __doc__ = __doc__

    def __init__(self, attack: Attack, *, m: int = 5):
        if not isinstance(attack, Attack):
            raise ValueError(f"attack must be a workbench Attack, got {type(attack).__name__}")
        self.attack, self.m = attack, checks.at_least("m", m, 1)
        self.name = f"eot{m}-{attack.name}"

    threat = property(lambda self: self.attack.threat, doc="the wrapped attack's threat model")
    norm = property(lambda self: self.attack.norm, doc="the wrapped attack's norm")
    eps = property(lambda self: self.attack.eps, doc="the wrapped attack's radius")

    def __repr__(self) -> str:
        return f"EOT({self.attack!r}, m={self.m})"

    def run(self, oracle: Oracle, targets: torch.Tensor | None = None) -> Result:
        def loop(handle: QueryHandle) -> tuple[Result, torch.Tensor, int]:
            if handle.budget < self.m:
                raise ValueError(f"the oracle's budget ({handle.budget}) must allow one point of m={self.m} queries")
            return self.attack.run_on(averaging(handle, self.m), targets), handle.queries, handle.budget

        (result, queries, budget), seconds, recorded = fresh(oracle).serve(self.threat, loop)
        first = torch.where(result.success, result.first_success * self.m, result.first_success)
        return dataclasses.replace(result, queries=queries, first_success=first, budget=budget,
                                   forward_seconds=seconds, queries_per_point=self.m, **recorded)
