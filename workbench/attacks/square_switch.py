"""Switch-direction Square (``switch``): the RLS paper's adaptive attack on AAA.

Paper: Dashtbani, Dousti Gandomani, Sadeghzadeh, "Random Logit Scaling: Defending Deep Neural Networks Against
Black-Box Score-Based Adversarial Example Attacks", TMLR 2026, Sec. 4; the rule as its code runs it
(HamidDasht/RLS-adversarial-defense, ``attacks/score/square_attack.py``, ``switch_dir`` with ``k`` = 10).

Distance: as Square, l-inf and l2.

Arguments: those of :class:`~workbench.attacks.square.Square` (defaults are the paper's), plus
    k: the unsuccessful iterations in a row an image tolerates before it switches the direction it accepts
        (default 10, the paper's).
The loss is the observed margin (default "margin").

Reasoning: a loss-attractor defense (AAA) inverts the observed loss inside each attractor period, so a greedy
attack that only accepts decreases settles in the bottom of a period, where no square lowers the observed loss
any more. That stall is the signature this attack reads. Every image starts greedy (keep strict decreases). A
candidate the current direction would not keep is unsuccessful; when an image's unsuccessful iterations in a row
exceed ``k``, it flips to keeping strict increases (climbing the inverted period, which lowers the true loss), and
the candidate of that iteration is already judged in the new direction (as the reference code does: it switches
before it accepts); a kept candidate resets the count, and ``k`` + 1 more refusals flip it back. Against an
undefended model the flips waste queries: this attack belongs in a worst case over a suite, not in place of one.

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> result = SquareSwitch(norm="linf", eps=8 / 255, k=10).run(Oracle(aaa_model, x, y, budget=1000))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench import checks
from workbench.attacks.base import Session
from workbench.attacks.square import Square, SquareState

SWITCH_K = 10  # the paper's k


@dataclass
class SwitchState(SquareState):
    ascending: torch.Tensor = field(default=None)  # (N,) images currently keeping increases
    refused: torch.Tensor = field(default=None)  # (N,) candidates refused in a row


class SquareSwitch(Square):
    __doc__ = __doc__
    name = "square-switch"
    targeted_loss = "margin"

    def __init__(self, *, norm: str = "linf", eps: float, p_init: float = 0.05, schedule: int = 10000,
                 k: int = SWITCH_K, loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, p_init=p_init, schedule=schedule, loss=loss, kappa=kappa, seed=seed,
                         progress=progress)
        self.k = checks.at_least("k", k, 1)

    def init(self, session: Session) -> SwitchState:
        state = super().init(session)
        n = len(session.x0)
        return SwitchState(state.x_best, state.loss, state.it, torch.zeros(n, dtype=torch.bool, device=session.device),
                           torch.zeros(n, dtype=torch.long, device=session.device))

    def accept(self, session: Session, state: SwitchState, idx: torch.Tensor, new_loss: torch.Tensor) -> torch.Tensor:
        old, ascending = state.loss[idx], state.ascending[idx]
        improved = torch.where(ascending, new_loss > old, new_loss < old)
        refused = torch.where(improved, 0, state.refused[idx] + 1)
        flip = refused > self.k
        ascending = ascending ^ flip
        state.ascending[idx] = ascending
        state.refused[idx] = torch.where(flip, 0, refused)
        return torch.where(ascending, new_loss > old, new_loss < old)  # judged in the direction just set
