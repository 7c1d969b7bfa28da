"""SignHunter: search over the signs of a perturbation at the corner of the eps-ball, coarse chunks first.

Paper: Al-Dujaili, O'Reilly, "Sign Bits Are All You Need for Black-Box Attacks", ICLR 2020.

Distance: l-inf (``x0 + eps * s`` for a sign vector ``s``) and l2 (``x0 + eps * s / sqrt(d)``), clipped to [0, 1].

Arguments (defaults are the paper's):
    norm: "linf" | "l2" (default "linf"); eps: radius (required; ``attacks.build`` gives the dataset's). The finite-difference probe of
        the reference equals eps, so eps is the only step there is.
    loss: "margin" (default, as the AAA and UniG evaluations ran every SQA), "ce" (the reference's), "probability".
    seed: generator seed (default 0; SignHunter itself is deterministic); progress: progress bar (default True).

The search starts from all signs +1 (query 2). At level h the d = C*H*W signs (in flattened order) are split into
2^h chunks of ceil(d / 2^h); one step flips one chunk and keeps the flip if the loss strictly drops. After the
finest level (chunks of one sign) the search restarts at level 0 from the current signs. Every query counts: the
reference re-evaluates the loss at the current point each step without counting it; here the loss of the kept
point is remembered instead.

Shape: the oracle's images (N, C, H, W) in [0, 1]; all images step through the same chunk schedule as one batch.

Example::

    >>> result = SignHunter(norm="linf", eps=0.3).run(Oracle(model, x, y, budget=1000))
    >>> result.robust_accuracy(1000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from workbench.attacks.base import Attack, Session


@dataclass
class SignHunterState:
    signs: torch.Tensor  # (N, d) current sign vector of every image
    x: torch.Tensor  # (N, C, H, W) its image (as queried: 8-bit oracles round it)
    loss: torch.Tensor  # (N,) loss at the current point
    level: int = 0  # h: chunks of ceil(d / 2^h)
    chunk: int = 0  # i: the next chunk to flip at this level


class SignHunter(Attack):
    __doc__ = __doc__
    name = "signhunter"

    def point(self, session: Session, signs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The image of the sign vectors ``signs`` (B, d) for the images ``idx``."""
        x0 = session.x0[idx]
        scale = session.eps if session.norm == "linf" else session.eps / math.sqrt(signs.shape[1])
        return (x0 + scale * signs.view_as(x0)).clamp(0.0, 1.0)

    def init(self, session: Session) -> SignHunterState:
        n = len(session.x0)
        signs = torch.ones(n, session.x0[0].numel(), device=session.device)
        x, loss = self.start_from(session, self.point(session, signs, torch.arange(n, device=session.device)))
        return SignHunterState(signs, x, loss)

    def step(self, session: Session, state: SignHunterState, idx: torch.Tensor) -> None:
        d = state.signs.shape[1]
        size = math.ceil(d / 2 ** state.level)
        start, end = state.chunk * size, min((state.chunk + 1) * size, d)
        signs = state.signs[idx]
        signs[:, start:end] *= -1
        x = self.point(session, signs, idx)
        new = self.loss(session, session.evaluate(x, idx), idx)
        keep = new < state.loss[idx]
        state.signs[idx[keep]] = signs[keep]
        state.x[idx[keep]] = x[keep]
        state.loss[idx[keep]] = new[keep]
        state.chunk += 1
        if end >= d:  # level done: next level, or a restart from the current signs after the finest one
            state.level = 0 if size == 1 else state.level + 1
            state.chunk = 0

    def best(self, state: SignHunterState) -> torch.Tensor:
        return state.x
