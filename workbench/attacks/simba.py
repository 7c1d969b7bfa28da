"""SimBA: simple black-box attack along the directions of an orthonormal basis.

Paper: Guo, Gardner, You, Wilson, Weinberger, "Simple Black-box Adversarial Attacks", ICML 2019.

Distance: l2 by construction (every accepted step adds +-step along a new unit direction); the workbench keeps
every candidate in the declared eps-ball, so ``norm="linf"`` clamps to the l-inf ball (the papers' l-inf use) and
``norm="l2"`` projects onto the l2 ball once the accumulated steps would leave it.

Arguments (defaults are the paper's):
    norm: "linf" | "l2" (default "linf"); eps: radius (required; ``attacks.build`` gives the dataset's).
    step: length of a step along one direction (default 0.2).
    basis: "dct" (low-frequency 2D DCT directions first, the paper's SimBA-DCT) or "pixel" (default "dct").
    freq: side of the low-frequency block of DCT coefficients tried first, per channel (default None: the whole
        image, as the papers ran CIFAR-10 with 32 on 32x32 images). After the block, the other frequencies follow.
    loss: "probability" (default: probability of the true class, or minus that of the target), "margin", "ce".
    seed: generator seed (default 0); progress: progress bar (default True).

Each image follows its own random order of directions and, per direction, tries -step first and +step only if
-step did not strictly lower the loss; a step is kept only if the loss strictly drops. After every direction has
been tried the image starts over with the same order (the reference stops there). A candidate that the projection
leaves unchanged (a pixel already at its bound) is not queried, where the reference code spends a query on it.
Every query counts, including the second try of a direction (the reference leaves its per-iteration
prediction check uncounted).

Shape: the oracle's images (N, C, H, W) in [0, 1]; the per-image orders take N * C * H * W int32.

Example::

    >>> result = SimBA(norm="linf", eps=0.3, basis="dct", seed=0).run(Oracle(model, x, y, budget=2500))
    >>> result.robust_accuracy(100), result.robust_accuracy(2500)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from workbench import checks
from workbench.attacks.base import Attack, Session
from workbench.threat import project

BASES = ("dct", "pixel")


@functools.lru_cache(maxsize=8)
def dct_matrix(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n): row k is the k-th cosine basis vector."""
    i = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float().to(device)


@dataclass
class SimBAState:
    x: torch.Tensor  # (N, C, H, W) current point
    loss: torch.Tensor  # (N,) loss at x
    order: torch.Tensor  # (N, C*H*W) int32: each image's order of directions
    k: torch.Tensor  # (N,) position in the order
    idle: torch.Tensor  # (N,) directions in a row whose candidates were all no-ops


class SimBA(Attack):
    __doc__ = __doc__
    name = "simba"
    default_loss = targeted_loss = "probability"

    def __init__(self, *, norm: str = "linf", eps: float, step: float = 0.2, basis: str = "dct",
                 freq: int | None = None, loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, kappa=kappa, seed=seed, progress=progress)
        checks.choice("basis", basis, BASES)
        self.step_size, self.basis = checks.positive("step", step), basis
        self.freq = None if freq is None else checks.at_least("freq", freq, 1)

    def init(self, session: Session) -> SimBAState:
        n = len(session.x0)
        order = torch.cat([self._order(session, min(256, n - i)) for i in range(0, n, 256)])
        loss = self.loss(session, session.clean_scores, torch.arange(n, device=session.device))
        zeros = torch.zeros(n, dtype=torch.long, device=session.device)
        return SimBAState(session.x0.clone(), loss, order, zeros, zeros.clone())

    def _order(self, session: Session, n: int) -> torch.Tensor:
        """Random orders of the directions for ``n`` images; for the DCT basis the low-frequency block first."""
        c, h, w = session.x0.shape[1:]
        keys = session.uniform(n, c * h * w)
        if self.basis == "dct":
            f = self.freq or max(h, w)
            u = torch.arange(h, device=session.device)[:, None]
            v = torch.arange(w, device=session.device)[None, :]
            high = ((u >= f) | (v >= f)).float().expand(c, h, w).flatten()
            keys = keys + high  # keys in [0, 1) for the block, [1, 2) for the rest
        return keys.argsort(1).int()

    def _directions(self, session: Session, which: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) unit vectors of the flat direction indices ``which`` (B,)."""
        b = len(which)
        c, h, w = session.x0.shape[1:]
        channel, rest = which // (h * w), which % (h * w)
        q = torch.zeros(b, c, h, w, device=session.device)
        if self.basis == "pixel":
            q.view(b, -1)[torch.arange(b, device=session.device), which] = 1.0
            return q
        u, v = rest // w, rest % w
        pattern = dct_matrix(h, session.device)[u][:, :, None] * dct_matrix(w, session.device)[v][:, None, :]
        q[torch.arange(b, device=session.device), channel] = pattern
        return q

    def step(self, session: Session, state: SimBAState, idx: torch.Tensor) -> None:
        d = state.order.shape[1]
        which = state.order[idx, state.k[idx] % d].long()
        q = self._directions(session, which)
        x, loss = state.x[idx], state.loss[idx]
        tried = torch.zeros(len(idx), dtype=torch.bool, device=session.device)
        queried_any = torch.zeros_like(tried)
        for sign in (-1.0, 1.0):
            cand = project(x + sign * self.step_size * q, session.x0[idx], session.eps, session.norm)
            moves = (cand != x).flatten(1).any(1)
            can = ~tried & moves & (session.handle.remaining(idx) >= 1) & ~session.success[idx]
            queried_any |= can
            if can.any():
                rows = can.nonzero().flatten()
                queried = cand[rows]
                new = self.loss(session, session.evaluate(queried, idx[rows]), idx[rows])
                better = new < loss[rows]
                tried[rows] = better  # a kept -step skips the +step
                x[rows[better]] = queried[better]
                loss[rows[better]] = new[better]
        state.x[idx], state.loss[idx] = x, loss
        state.k[idx] += 1
        state.idle[idx] = torch.where(queried_any, 0, state.idle[idx] + 1)
        session.exhausted[idx] = state.idle[idx] >= d  # a whole pass without a single possible move

    def best(self, state: SimBAState) -> torch.Tensor:
        return state.x
