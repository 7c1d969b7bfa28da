"""Bi-directional Square (``bi``): greedy until an image shows the signature of a loss attractor, then ``op``.

Paper: Chen et al., "Adversarial Attack on Attackers: Post-Process to Mitigate Black-Box Score-Based Query
Attacks", NeurIPS 2022, Sec. 5.6 and Table 6.

Distance: as Square, l-inf and l2.

Arguments: those of :class:`~workbench.attacks.square.Square` (defaults are the paper's), plus
    threshold: the upward margin jump that reveals an attractor (default 3.0, half of AAA's tau = 6).
The loss is the observed margin (default "margin").

Each image starts with Square's greedy rule (keep strict decreases). The first time a candidate's observed
margin is more than ``threshold`` above the current one, that image switches for good to the ``op`` rule of
:class:`~workbench.attacks.square_op.SquareOp` (that candidate included). An undefended model can show such a
jump too (a square that raises the margin by more than the threshold), and then ``bi`` walks the wrong way for
that image: compare it with plain Square on the undefended model (``python -m benchmarks.attack_table`` does).

Shape: the oracle's images (N, C, H, W) in [0, 1].

Example::

    >>> result = SquareBi(norm="linf", eps=0.3).run(Oracle(aaa_model, x, y, budget=1000))
    >>> result.robust_accuracy()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.attacks.base import Session
from workbench.attacks.square import SquareState
from workbench.attacks.square_op import SquareOp


@dataclass
class BiState(SquareState):
    switched: torch.Tensor = field(default=None)  # (N,) images that switched to the op rule


class SquareBi(SquareOp):
    __doc__ = __doc__
    name = "square-bi"

    def init(self, session: Session) -> BiState:
        state = super().init(session)
        return BiState(state.x_best, state.loss, state.it, torch.zeros_like(session.success))

    def accept(self, session: Session, state: BiState, idx: torch.Tensor, new_loss: torch.Tensor) -> torch.Tensor:
        old = state.loss[idx]
        switched = state.switched[idx] | (new_loss > old + self.threshold)
        state.switched[idx] = switched
        return torch.where(switched, self.opposite(old, new_loss), new_loss < old)
