"""Opposite-direction Square (``op``): the adaptive attack of AAA against loss attractors.

Paper: Chen, Huang, Wang, Lu, Wang, Shi, Huang, "Adversarial Attack on Attackers: Post-Process to Mitigate
Black-Box Score-Based Query Attacks", NeurIPS 2022, Sec. 5.6 and Table 6.

Distance: as Square, l-inf and l2.

Arguments: those of :class:`~workbench.attacks.square.Square` (defaults are the paper's), plus
    threshold: the margin drop that counts as crossing an attractor (default 3.0: half of AAA's default tau of 6,
        the jump of crossing one attractor interval; ``tests/test_adaptive.py`` checks the two agree).
The loss is the observed margin (default "margin"; AAA reshapes the margin, which is what this attack exploits).

A candidate is kept when the observed margin increases (AAA's attractors invert the loss inside each period, so
going "up" moves the true margin down) or when it drops by more than ``threshold`` (the jump of crossing into the
next period down). Against an undefended model this walks away from the decision boundary.

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> result = SquareOp(norm="linf", eps=0.3, threshold=3.0).run(Oracle(aaa_model, x, y, budget=1000))
"""

from __future__ import annotations

import torch

from workbench import checks
from workbench.attacks.base import Session
from workbench.attacks.square import Square, SquareState


class SquareOp(Square):
    __doc__ = __doc__
    name = "square-op"
    targeted_loss = "margin"

    def __init__(self, *, norm: str = "linf", eps: float, p_init: float = 0.05, schedule: int = 10000,
                 threshold: float = 3.0, loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, p_init=p_init, schedule=schedule, loss=loss, kappa=kappa, seed=seed,
                         progress=progress)
        self.threshold = checks.positive("threshold", threshold)

    def opposite(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The ``op`` rule: the margin went up, or fell by more than the threshold."""
        return (new > old) | (new < old - self.threshold)

    def accept(self, session: Session, state: SquareState, idx: torch.Tensor, new_loss: torch.Tensor) -> torch.Tensor:
        return self.opposite(state.loss[idx], new_loss)
