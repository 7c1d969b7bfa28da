"""OARS's adaptive Square: Square that learns how large its steps must be for a stateful detector to let them pass.

Paper: Feng, Mangaokar, Chen, Fernandes, Jha and Prakash, "Stateful Defenses for Machine Learning Models Are Not
Yet Secure Against Black-box Attacks", CCS 2023 (OARS: Oracle-guided Adaptive Rejection Sampling). Code:
nmangaokar/ccs_23_oars_stateful_attacks, ``attacks/adaptive/Square.py``; defaults from its CIFAR-10 Blacklight
config (``configs/cifar/blacklight/square/untargeted/adaptive/config.json``).

Reasoning: a detector flags a query close to a past one (Blacklight: half its pixel-window hashes shared). A Square
candidate changes one small square, so it is flagged. A candidate that changes more (several squares, larger ones)
slips past, at the price of a coarser search. OARS measures the price with the detector itself: each refusal is
an answer, and a binary search on sampled candidates finds the least change that is not refused.

Distance: l-inf only (as the reference).

Arguments (defaults from the reference's CIFAR-10 config): Square's (``p_init`` 0.05, ``schedule``, ``loss``,
``kappa``, ``seed``, ``progress``), and the search's, below.

Per image, after the clean query and the stripe initialization (queries 1-2):

1. the number of squares per candidate: a binary search on [``ns_lower``, ``ns_upper``] (10, 100) for
   ``ns_steps`` (10) steps; at each, ``ns_samples`` (5) candidates with the midpoint's number of squares of the
   schedule's first size; the midpoint is taken (and the upper end moves to it) where at most ``ns_hit_rate``
   (0) of them were refused, else the lower end moves up;
2. the least square side: the same search on [``size_lower``, ``size_upper``] (1, 32), ``size_steps`` (10) steps of
   ``size_samples`` (10) candidates with the number found, accepted at a refused share of at most
   ``size_hit_rate`` (0.5);
3. Square's loop with candidates of that many squares of side max(the schedule's side, the least side); a refused
   candidate is not kept and counts as an attempt; after ``max_attempts`` (300) refusals in a row the image is
   given up ("step movement failure" in the reference).

Every sampled candidate is a real query: it counts against the budget, and one that happens to misclassify
counts as a success (the attacker sees its scores unless it was refused). The schedule advances with every query
of the loop, refused ones included, as the reference's loop counter does.

Shape: the oracle's images (N, C, H, W) in [0, 1], attacked as one batch.

Example::

    >>> oracle = Oracle(Blacklight(model), x, y, budget=1000, refusal="closest")
    >>> result = OARSSquare(eps=0.05).run(oracle)
    >>> result.robust_accuracy(), metrics.detection(result)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from workbench import checks
from workbench.attacks.base import Session
from workbench.attacks.square import Square, SquareState, _gather, _scatter, _window_index


def refusal_search(session: Session, setting: tuple, candidate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """OARS's binary search on a size, per image (its ``binary_search_*``): ``setting`` is (lower end, upper end,
    steps, samples per step, hit rate); at each step ``samples`` candidates ``candidate(idx, midpoint[idx])`` of the
    active images are sent, and where at most ``hit rate`` of them were refused the midpoint is taken and the upper
    end moves to it, else the lower end does. Returns the value found (float64; the upper end where no midpoint was
    taken) and whether each image searched at all (it may have been broken or out of queries)."""
    lower_end, upper_end, steps, samples, rate = setting
    n = len(session.x0)
    lower = torch.full((n,), float(lower_end), dtype=torch.float64, device=session.device)
    upper, found = torch.full_like(lower, float(upper_end)), torch.full_like(lower, float(upper_end))
    searched = torch.zeros(n, dtype=torch.bool, device=session.device)
    for _ in range(steps):
        mid = (lower + upper) / 2
        hits, asked = torch.zeros_like(lower), torch.zeros_like(lower)
        for _ in range(samples):
            idx = session.active()
            if not len(idx):
                break
            session.evaluate(candidate(idx, mid[idx]), idx)
            hits[idx] += session.last_refused.double()
            asked[idx] += 1
        ok = asked > 0
        accept = ok & (hits / asked.clamp_min(1) <= rate)
        found = torch.where(accept, mid, found)
        upper = torch.where(accept, mid, upper)
        lower = torch.where(ok & ~accept, mid, lower)
        searched |= ok
    return found, searched


@dataclass
class OARSState(SquareState):
    squares: torch.Tensor | None = None  # (N,) squares per candidate
    side: torch.Tensor | None = None  # (N,) least square side
    attempts: torch.Tensor | None = None  # (N,) refusals in a row


class OARSSquare(Square):
    __doc__ = __doc__
    name = "oars-square"
    norms = ("linf",)

    def __init__(self, *, norm: str = "linf", eps: float, p_init: float = 0.05, schedule: int = 10000,
                 ns_lower: int = 10, ns_upper: int = 100, ns_steps: int = 10, ns_samples: int = 5,
                 ns_hit_rate: float = 0.0, size_lower: int = 1, size_upper: int = 32, size_steps: int = 10,
                 size_samples: int = 10, size_hit_rate: float = 0.5, max_attempts: int = 300,
                 loss: str | None = None, kappa: float = 0.0, seed: int = 0, progress: bool = True):
        super().__init__(norm=norm, eps=eps, p_init=p_init, schedule=schedule, loss=loss, kappa=kappa, seed=seed,
                         progress=progress)
        self.ns = (checks.at_least("ns_lower", ns_lower, 1), checks.at_least("ns_upper", ns_upper, 1),
                   checks.at_least("ns_steps", ns_steps, 0), checks.at_least("ns_samples", ns_samples, 1),
                   checks.non_negative("ns_hit_rate", ns_hit_rate))
        self.size = (checks.at_least("size_lower", size_lower, 1), checks.at_least("size_upper", size_upper, 1),
                     checks.at_least("size_steps", size_steps, 0), checks.at_least("size_samples", size_samples, 1),
                     checks.non_negative("size_hit_rate", size_hit_rate))
        self.max_attempts = checks.at_least("max_attempts", max_attempts, 1)

    def init(self, session: Session) -> OARSState:
        x, loss = self.start_from(session, self._init_linf(session))
        n = len(x)
        state = OARSState(x, loss, squares=torch.ones(n, dtype=torch.long, device=x.device),
                          side=torch.ones(n, dtype=torch.long, device=x.device),
                          attempts=torch.zeros(n, dtype=torch.long, device=x.device))
        first = torch.full((n,), self._side(session, 0, 1), dtype=torch.long, device=x.device)
        squares = lambda side, count: lambda idx, mid: self._squares(  # noqa: E731
            session, idx, state.x_best[idx], side(idx, mid), count(idx, mid))
        found, searched = refusal_search(session, self.ns, squares(lambda i, m: first[i], lambda i, m: m.long()))
        state.squares = torch.where(searched, found.long(), state.squares)
        found, searched = refusal_search(session, self.size, squares(lambda i, m: m.long(),
                                                                     lambda i, m: state.squares[i]))
        state.side = torch.where(searched, found.long(), state.side)
        return state

    def _squares(self, session: Session, idx: torch.Tensor, x_best: torch.Tensor, side: torch.Tensor,
                 count: torch.Tensor) -> torch.Tensor:
        """``x_best`` (B, C, H, W) with ``count[i]`` squares of side ``side[i]`` (clipped to the image) set to
        x0 +- eps per channel, one after another (the reference's ``add_squares``)."""
        h, w = x_best.shape[-2:]
        out = x_best.clone()
        side = side.clamp(1, min(h, w) - 1)
        for s in side.unique().tolist():
            group = (side == s).nonzero().flatten()
            for j in range(int(count[group].max())):
                rows = group[count[group] > j]
                b = len(rows)
                window = _window_index(session.randint(h - s, (b,)), session.randint(w - s, (b,)), s, w)
                x0 = _gather(session.x0, window, s, idx[rows])
                signs = self._signs(session, x0, _gather(out[rows], window, s))
                out[rows] = _scatter(out[rows], window, (x0 + session.eps * signs).clamp(0.0, 1.0))
        return out

    def step(self, session: Session, state: OARSState, idx: torch.Tensor) -> None:
        side = torch.maximum(state.side[idx], torch.full_like(idx, self._side(session, state.it, 1)))
        x_new = self._squares(session, idx, state.x_best[idx], side, state.squares[idx])
        new_loss = self.loss(session, session.evaluate(x_new, idx), idx)
        refused = session.last_refused
        state.attempts[idx] = torch.where(refused, state.attempts[idx] + 1, torch.zeros_like(idx))
        session.exhausted[idx[state.attempts[idx] >= self.max_attempts]] = True
        keep = (new_loss < state.loss[idx]) & ~refused
        state.x_best[idx[keep]] = x_new[keep]
        state.loss[idx[keep]] = new_loss[keep]
        state.it += 1
