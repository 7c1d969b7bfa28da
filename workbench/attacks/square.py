"""Square attack: random square-shaped updates accepted only when the loss strictly drops.

Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial attack
via random search", ECCV 2020.

Distance: l-inf (vertical-stripe initialization, squares of +-eps per channel) and l2 (a grid of pseudo-Gaussian
squares as initialization; each step moves mass between two windows of the perturbation, keeping its norm eps).

Arguments (defaults are the paper's):
    norm: "linf" | "l2" (default "linf"); eps: radius (required; ``attacks.build`` gives the dataset's).
    p_init: initial fraction of pixels a square covers (default 0.05 l-inf; pass 0.1 for the paper's l2 setting,
        0.3 for robust models).
    schedule: the number of iterations the p schedule is laid out for (default 10000, the paper's): p halves at
        iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of it. Robust accuracy at several budgets is
        read from one run with the schedule of the largest (the workbench's protocol).
    loss: "margin" (default for untargeted), "ce" (default for targeted: cross-entropy of the target) or
        "probability".
    seed: generator seed (default 0); progress: progress bar (default True).

Every image draws its own square location and signs (the original algorithm; ports that share one location and
one sign set across the batch run a weaker attack), and re-draws the signs of a square that would not change the
image. Query 1 is the clean image, query 2 the initialization.

Shape: the oracle's images (N, C, H, W) in [0, 1]; all images are attacked as one batch on the model's device.

Example::

    >>> oracle = Oracle(model, x, y, budget=1000)
    >>> result = Square(norm="linf", eps=0.3, seed=0).run(oracle)
    >>> result.robust_accuracy(100), result.robust_accuracy()
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from workbench import checks
from workbench.attacks.base import Attack, Session

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init: float, it: int, schedule: int = 10000) -> float:
    """The paper's piecewise-constant schedule of the square size fraction, rescaled to ``schedule`` iterations."""
    it = int(it / schedule * 10000)
    return p_init / 2 ** sum(it > h for h in _HALVINGS)


@dataclass
class SquareState:
    x_best: torch.Tensor  # (N, C, H, W) current point of every image
    loss: torch.Tensor  # (N,) loss at x_best
    it: int = 0  # iterations done (query 3 is iteration 0)


class Square(Attack):
    __doc__ = __doc__
    name = "square"
    targeted_loss = "ce"

    def __init__(self, *, norm: str = "linf", eps: float, p_init: float = 0.05, schedule: int = 10000,
                 loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, kappa=kappa, seed=seed, progress=progress)
        p_init = checks.positive("p_init", p_init)
        if p_init > 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init, self.schedule = p_init, checks.at_least("schedule", schedule, 1)

    def accept(self, session: Session, state: SquareState, idx: torch.Tensor, new_loss: torch.Tensor) -> torch.Tensor:
        """Which candidates to keep: strict improvement (adaptive variants override this)."""
        return new_loss < state.loss[idx]

    # ------------------------------------------------------------------------------------------ the algorithm
    def init(self, session: Session) -> SquareState:
        x, loss = self.start_from(session, self._init_linf(session) if session.norm == "linf" else self._init_l2(session))
        return SquareState(x, loss)

    def step(self, session: Session, state: SquareState, idx: torch.Tensor) -> None:
        x_best = state.x_best[idx]
        x_new = (self._candidate_linf if session.norm == "linf" else self._candidate_l2)(session, state, idx, x_best)
        new_loss = self.loss(session, session.evaluate(x_new, idx), idx)
        keep = self.accept(session, state, idx, new_loss) & ~session.last_refused  # a refused candidate: not kept
        kept = idx[keep]  # only the accepted rows are written (an image appears once in idx)
        state.x_best[kept] = x_new[keep]
        state.loss[kept] = new_loss[keep]
        state.it += 1

    def best(self, state: SquareState) -> torch.Tensor:
        return state.x_best

    def _side(self, session: Session, it: int, minimum: int) -> int:
        c, h, w = session.x0.shape[1:]
        p = p_schedule(self.p_init, it, self.schedule)
        s = max(int(round(math.sqrt(p * h * w))), minimum)  # p * n_features / c, n_features = c * h * w
        if minimum == 3 and s % 2 == 0:
            s += 1
        return min(s, h - 1, w - 1)

    # ------------------------------------------------------------------------------------------------ l-inf
    def _init_linf(self, session: Session) -> torch.Tensor:
        n, c, _, w = session.x0.shape
        return (session.x0 + session.eps * session.signs(n, c, 1, w)).clamp(0.0, 1.0)

    def _candidate_linf(self, session: Session, state: SquareState, idx: torch.Tensor, x_best: torch.Tensor):
        """``x_best`` with one s x s square per image set to x0 +- eps per channel: the work is done on the
        squares' pixels only (gathered), and written into a copy of ``x_best``."""
        b, c, h, w = x_best.shape
        s = self._side(session, state.it, 1)
        window = _window_index(session.randint(h - s, (b,)), session.randint(w - s, (b,)), s, w)
        x0 = _gather(session.x0, window, s, idx)
        signs = self._signs(session, x0, _gather(x_best, window, s))
        return _scatter(x_best, window, (x0 + session.eps * signs).clamp(0.0, 1.0))

    def _signs(self, session: Session, x0: torch.Tensor, x_best: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) per-channel signs, uniform over the sign sets that change the square ``x_best`` (B, C, s, s)
        of clean pixels ``x0`` (the reference re-draws until the square changes something: the same distribution,
        in one pass)."""
        b, c = x0.shape[:2]
        same = torch.stack([((x0 + session.eps * s).clamp(0.0, 1.0) - x_best).abs() < 1e-7
                            for s in (-1.0, 1.0)], -1).flatten(2, 3).all(2)  # (B, C, 2): channel k unchanged
        combos = (torch.arange(2 ** c, device=x0.device)[:, None] >> torch.arange(c, device=x0.device)) & 1
        stale = same[:, torch.arange(c, device=x0.device)[None, :], combos].all(-1)  # (B, 2^C)
        keys = session.uniform(b, 2 ** c) - 2.0 * stale  # stale sets only where every set is stale
        return (combos[keys.argmax(1)] * 2 - 1).float().view(b, c, 1, 1)

    # --------------------------------------------------------------------------------------------------- l2
    def _init_l2(self, session: Session) -> torch.Tensor:
        n, c, h, w = session.x0.shape
        if min(h, w) < 5:
            raise ValueError(f"Square l2 needs images of at least 5 x 5 pixels (its initialization tiles squares of "
                             f"side h // 5), got {h} x {w}; use norm='linf' for smaller images")
        s = h // 5
        start = (h - 5 * s) // 2
        delta = torch.zeros_like(session.x0)
        for top in range(start, start + s * (h // s), s):
            for left in range(start, start + s * (w // s), s):
                if top + s > h or left + s > w:
                    continue
                pattern = _pseudo_gaussian(session, n, s) * session.signs(n, c, 1, 1)
                delta[:, :, top:top + s, left:left + s] += pattern
        return (session.x0 + session.eps * delta / _norm(delta)).clamp(0.0, 1.0)

    def _candidate_l2(self, session: Session, state: SquareState, idx: torch.Tensor, x_best: torch.Tensor):
        x0 = session.x0[idx]
        b, c, h, w = x0.shape
        s = self._side(session, state.it, 3)
        delta = x_best - x0
        win1 = _window_index(session.randint(h - s, (b,)), session.randint(w - s, (b,)), s, w)
        win2 = _window_index(session.randint(h - s, (b,)), session.randint(w - s, (b,)), s, w)
        old = _gather(delta, win1, s)
        norm_win1 = old.pow(2).sum((2, 3), keepdim=True).sqrt()
        both = torch.zeros(b, 1, h * w, device=delta.device)
        both.scatter_(2, win1[:, None], 1.0).scatter_(2, win2[:, None], 1.0)
        norm_windows = (delta * both.view(b, 1, h, w)).pow_(2).sum((2, 3), keepdim=True).sqrt()
        room = (session.eps ** 2 - _norm(delta).pow(2)).clamp_min(0.0) / c
        new = _pseudo_gaussian(session, b, s) * session.signs(b, c, 1, 1) + old / (1e-10 + norm_win1)
        new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt() * (room + norm_windows.pow(2)).sqrt()
        flat = delta.flatten(2)  # this step's own tensor (a view of delta, or a copy): written in place
        flat.scatter_(2, win2[:, None].expand(b, c, -1), 0.0)
        flat.scatter_(2, win1[:, None].expand(b, c, -1), new.flatten(2))
        delta = flat.view(b, c, h, w)
        norm = _norm(delta)
        return delta.mul_(session.eps).div_(norm).add_(x0).clamp_(0.0, 1.0)


def _norm(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _window_index(top: torch.Tensor, left: torch.Tensor, s: int, w: int) -> torch.Tensor:
    """(B, s*s) flat pixel indices of one s x s square per image."""
    ar = torch.arange(s, device=top.device)
    return ((top[:, None] + ar)[:, :, None] * w + (left[:, None] + ar)[:, None, :]).flatten(1)


def _gather(t: torch.Tensor, index: torch.Tensor, s: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, s, s): the pixels ``index`` (B, s*s) of every image of ``t`` (or of its images ``rows``)."""
    b, c = index.shape[0], t.shape[1]
    t = t.flatten(2)
    if rows is not None:  # (B, C, s*s) read straight from the rows, without copying whole images first
        return t[rows[:, None, None], torch.arange(c, device=t.device)[:, None], index[:, None]].view(b, c, s, s)
    return t.gather(2, index[:, None].expand(b, c, -1)).view(b, c, s, s)


def _scatter(t: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    b, c = t.shape[:2]
    return t.flatten(2).scatter(2, index[:, None].expand(b, c, -1), values.flatten(2)).view_as(t)


def _pseudo_gaussian_rect(h: int, w: int) -> torch.Tensor:
    """Nested rectangles of weight 1/(k+1)^2 around the centre (the paper's pseudo-Gaussian), unit l2 norm."""
    delta = torch.zeros(h, w)
    ch, cw = h // 2, w // 2
    for k in range(max(h // 2 + 1, w // 2 + 1)):
        delta[max(ch - k, 0):min(ch - k + 2 * k + 1, h), max(cw - k, 0):min(cw - k + 2 * k + 1, w)] += 1.0 / (k + 1) ** 2
    return delta / delta.norm()


def _pseudo_gaussian(session: Session, b: int, s: int) -> torch.Tensor:
    """(B, 1, s, s): the paper's two-lobed pattern (upper half +, lower half -), transposed at random per image."""
    pattern = torch.cat([_pseudo_gaussian_rect(s // 2, s), -_pseudo_gaussian_rect(s - s // 2, s)])
    pattern = (pattern / pattern.norm()).to(session.device)
    flip = session.uniform(b) < 0.5
    return torch.where(flip.view(-1, 1, 1), pattern.T, pattern)[:, None]
