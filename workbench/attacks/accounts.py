"""Account resets: any attack, sent from a fresh account whenever a query is refused, where the threat model lets
the attacker open accounts at will (``Oracle(new_accounts=True)``).

Papers: the threat the stateful detectors name themselves. Chen, Carlini and Wagner 2020 (Stateful Detection,
Sec. 5: an attacker who creates many accounts, "Sybil" accounts, spreads the queries of one attack over them) and
Li et al. 2022 (Blacklight, Sec. 7, account creation as the adaptive attacker's resource); the detectors answer
with a ban and rate limits per account, which this attack tests.

Distance: that of the wrapped attack.

Arguments:
    attack: any workbench attack that handles refusals (Square, SimBA, SignHunter, OARS's).

Reasoning: a detector's memory is per account. After a refusal the attacker moves the image to a new account
(an empty memory, no ban) and sends the refused query again: it passes, because nothing in the new account
resembles it. Every refusal costs one more query (the resent one counts against the budget; where no query is
left, the refusal stands). The wrapped attack sees a handle whose refusals are only the ones that stood.

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> oracle = Oracle(Blacklight(model), x, y, budget=1000, ban=True, new_accounts=True)
    >>> result = AccountReset(Square(eps=8 / 255)).run(oracle)
    >>> oracle.accounts_opened
"""

from __future__ import annotations

import dataclasses

import torch

from workbench.attacks.base import Attack, fresh
from workbench.oracle import Oracle, QueryHandle
from workbench.results import Result


def resetting(inner: QueryHandle) -> QueryHandle:
    """A view of ``inner`` that resends each refused query once from a fresh account of its image (budget
    allowing); ``refused`` reports what stayed refused."""
    stood: list[torch.Tensor | None] = [None]

    def query(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=inner.device).long()
        scores = inner.query(x, idx)
        refused = inner.refused
        if refused is None or not refused.any():
            stood[0] = refused
            return scores
        again = refused.nonzero().flatten()
        again = again[_affordable(inner, idx[again])]
        if len(again):
            inner.new_account(idx[again])
            scores = scores.clone()
            scores[again] = inner.query(x[again], idx[again])
            refused = refused.clone()
            refused[again] = inner.refused
        stood[0] = refused
        return scores

    return QueryHandle(query, lambda: inner.queries, inner.x, inner.y, budget=inner.budget, threat=inner.threat,
                       scores=inner.scores, quantize=inner.quantize, refused=lambda: stood[0])


def _affordable(handle: QueryHandle, idx: torch.Tensor) -> torch.Tensor:
    """Which of the rows ``idx`` (one image may repeat) still have a query left, in order."""
    left = handle.remaining().clone()
    keep = torch.zeros(len(idx), dtype=torch.bool, device=idx.device)
    for row, i in enumerate(idx.tolist()):
        if left[i] > 0:
            keep[row] = True
            left[i] -= 1
    return keep


class AccountReset:
    __doc__ = __doc__

    def __init__(self, attack: Attack):
        if not isinstance(attack, Attack) or not attack.handles_refusals:
            raise ValueError(f"attack must be a workbench Attack that handles refusals, got {attack!r}")
        self.attack = attack
        self.name = f"reset-{attack.name}"

    threat = property(lambda self: self.attack.threat, doc="the wrapped attack's threat model")
    norm = property(lambda self: self.attack.norm, doc="the wrapped attack's norm")
    eps = property(lambda self: self.attack.eps, doc="the wrapped attack's radius")

    def __repr__(self) -> str:
        return f"AccountReset({self.attack!r})"

    def run(self, oracle: Oracle, targets: torch.Tensor | None = None) -> Result:
        result, seconds, recorded = fresh(oracle).serve(
            self.threat, lambda handle: self.attack.run_on(resetting(handle), targets))
        return dataclasses.replace(result, forward_seconds=seconds, **recorded)
