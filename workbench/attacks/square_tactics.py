"""Square with DLD's adaptive tactics: reverse, simulated annealing, explore.

Paper: DLD, the Dashed Line Defense (AISTATS 2026); the tactics as its code runs them
(fyzdalao/Dashed-Line-Defense, ``square.py``, ``square_attack_linf`` with ``attack_tactic``; defaults from its
``main.py``).

Distance: as Square, l-inf and l2.

Arguments: those of :class:`~workbench.attacks.square.Square` (defaults are the paper's), plus
    tactic: "reverse", "sa" or "explore".
    reverse_after: reverse: the unsuccessful iterations an image tolerates before it reverses (default 23).
    temperature, cooling, reheat_after: sa: the starting temperature (25, in margin units), its factor per
        iteration (0.997) and the unsuccessful iterations after which it is reset to the start (20).
    explore: explore: the probability of keeping a candidate that does not improve (0.5).
The loss is the observed margin (default "margin").

Reasoning: DLD draws the observed margin as a dashed line, so a smaller true margin may show a larger one and a
greedy Square stalls on a dash. The tactics leave a dash:

- reverse: an image keeps decreases; after more than ``reverse_after`` unsuccessful iterations in a row it flips
  to keeping increases (and back), and the candidate of the flipping iteration is kept whatever its loss (as the
  reference does, unlike the RLS paper's switch rule, which judges it in the new direction); a success is always
  kept;
- sa: a candidate is kept when it improves or with probability exp(-(new - best) / T); T starts at
  ``temperature``, is multiplied by ``cooling`` every iteration, and is reset to the start after more than
  ``reheat_after`` unsuccessful iterations in a row;
- explore: a candidate is kept when it improves or with probability ``explore``.

Against an undefended model the tactics waste queries: they belong in a worst case over a suite.

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> result = SquareTactic(eps=0.05, tactic="sa").run(Oracle(DLD(model), x, y, budget=2500))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench import checks
from workbench.attacks.base import Session
from workbench.attacks.square import Square, SquareState

TACTICS = ("reverse", "sa", "explore")
REVERSE_AFTER, TEMPERATURE, COOLING, REHEAT_AFTER, EXPLORE = 23, 25.0, 0.997, 20, 0.5  # DLD's main.py


@dataclass
class TacticState(SquareState):
    ascending: torch.Tensor = field(default=None)  # (N,) reverse: keeping increases
    stalled: torch.Tensor = field(default=None)  # (N,) unsuccessful iterations in a row
    temperature: torch.Tensor = field(default=None)  # (N,) sa


class SquareTactic(Square):
    __doc__ = __doc__
    name = "square-tactic"
    targeted_loss = "margin"

    def __init__(self, *, norm: str = "linf", eps: float, tactic: str, p_init: float = 0.05, schedule: int = 10000,
                 reverse_after: int = REVERSE_AFTER, temperature: float = TEMPERATURE, cooling: float = COOLING,
                 reheat_after: int = REHEAT_AFTER, explore: float = EXPLORE, loss: str | None = None,
                 kappa: float = 0.0, seed: int = 0, progress: bool = True):
        super().__init__(norm=norm, eps=eps, p_init=p_init, schedule=schedule, loss=loss, kappa=kappa, seed=seed,
                         progress=progress)
        checks.choice("tactic", tactic, TACTICS)
        self.tactic = tactic
        self.reverse_after = checks.at_least("reverse_after", reverse_after, 0)
        self.temperature, self.cooling = checks.positive("temperature", temperature), checks.positive("cooling", cooling)
        self.reheat_after = checks.at_least("reheat_after", reheat_after, 0)
        self.explore = checks.non_negative("explore", explore)
        self.name = f"square-{tactic}"

    def init(self, session: Session) -> TacticState:
        state = super().init(session)
        n = len(session.x0)
        return TacticState(state.x_best, state.loss, state.it,
                           torch.zeros(n, dtype=torch.bool, device=session.device),
                           torch.zeros(n, dtype=torch.long, device=session.device),
                           torch.full((n,), self.temperature, device=session.device))

    def accept(self, session: Session, state: TacticState, idx: torch.Tensor, new_loss: torch.Tensor) -> torch.Tensor:
        old = state.loss[idx]
        improved = new_loss < old
        if self.tactic == "explore":
            return improved | (session.uniform(len(idx)) < self.explore)
        if self.tactic == "sa":
            t = state.temperature[idx]
            keep = improved | (torch.exp(-(new_loss - old) / t) > session.uniform(len(idx)))
            stalled = torch.where(keep, 0, state.stalled[idx] + 1)
            t = t * self.cooling
            reheat = stalled > self.reheat_after
            state.temperature[idx] = torch.where(reheat, torch.full_like(t, self.temperature), t)
            state.stalled[idx] = torch.where(reheat, 0, stalled)
            return keep
        ascending = state.ascending[idx]
        succeeded = self.fooled_by(session, new_loss)
        keep = torch.where(ascending, new_loss > old, improved) | succeeded
        stalled = torch.where(keep, 0, state.stalled[idx] + 1)
        flip = stalled > self.reverse_after
        keep = keep | flip
        state.stalled[idx] = torch.where(keep, 0, stalled)
        state.ascending[idx] = ascending ^ flip
        return keep

    @staticmethod
    def fooled_by(session: Session, loss: torch.Tensor) -> torch.Tensor:
        """The reference keeps a successful candidate in any direction: margin loss <= 0 (-kappa with kappa)."""
        return loss <= -session.kappa
