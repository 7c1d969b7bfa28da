"""Square on the un-dashed margin: an adaptive attack that inverts DLD's dashed line.

Paper: the attack is ours, against DLD, the Dashed Line Defense (AISTATS 2026; fyzdalao/Dashed-Line-Defense,
``victim.py``, ``dashed_line_single_forward``), after Tramer et al. 2020 ("On Adaptive Attacks to Adversarial
Example Defenses": undo what the defense does when it can be undone).

Distance: as Square, l-inf and l2.

Arguments: those of :class:`~workbench.attacks.square.Square` (defaults are the paper's), plus
    tau: DLD's period (default 6, its code's default); h: DLD's fixed split (0.3, a constant in its code).
The loss is the margin (untargeted only).

Reasoning: DLD shows, for a true top-1 minus top-2 margin m with b = floor(m / tau) tau and r = m - b, either
b + h tau - h r (values in (b, b + h tau]) or b + h tau + (1 - h) r (values in [b + h tau, b + tau)). Both stay
inside the period [b, b + tau), and the two branches cover disjoint parts of it. So the shown margin s tells b
(floor(s / tau) tau) and the branch (s - b below or above h tau), and m follows exactly:
m = b + (s - b - h tau) / (1 - h) on the high branch, m = b + (h tau - (s - b)) / h on the low one. Square run on
that m is Square against the undefended model, with DLD's own parameters as the only knowledge it needs (public, as
the defense's code is). The predicted label is the model's either way, since DLD moves only the top-1 logit.

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> result = SquareUndash(eps=8 / 255).run(Oracle(DLD(model), x, y, budget=1000))
"""

from __future__ import annotations

import torch

from workbench import checks
from workbench.attacks.base import Session
from workbench.attacks.square import Square

DLD_TAU, DLD_H = 6.0, 0.3  # DLD's main.py default and the constant in its dashed_line_single_forward


def undash(shown: torch.Tensor, tau: float = DLD_TAU, h: float = DLD_H) -> torch.Tensor:
    """The true margin behind DLD's shown margin ``shown`` (>= 0; negative margins are left as they are)."""
    b = torch.floor(shown / tau) * tau
    offset = shown - b
    high = offset >= h * tau
    true = torch.where(high, b + (offset - h * tau) / (1 - h), b + (h * tau - offset) / h)
    return torch.where((shown >= 0) & torch.isfinite(shown), true, shown)


class SquareUndash(Square):
    __doc__ = __doc__
    name = "square-undash"

    def __init__(self, *, norm: str = "linf", eps: float, p_init: float = 0.05, schedule: int = 10000,
                 tau: float = DLD_TAU, h: float = DLD_H, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, p_init=p_init, schedule=schedule, loss="margin", kappa=kappa,
                         seed=seed, progress=progress)
        self.tau, self.h = checks.positive("tau", tau), checks.positive("h", h)
        if self.h >= 1:
            raise ValueError(f"h must be in (0, 1), got {h}")

    def loss(self, session: Session, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if session.targets is not None:
            raise ValueError("square-undash attacks untargeted only (DLD's margin is the top-1 minus top-2 one)")
        return undash(super().loss(session, scores, idx), self.tau, self.h)
