"""NES: gradient estimation by natural evolution strategies with antithetic Gaussian sampling, then PGD steps.

Paper: Ilyas, Engstrom, Athalye, Lin, "Black-box Adversarial Attacks with Limited Queries and Information",
ICML 2018.

Distance: l-inf (sign step) and l2 (normalized step), each followed by projection onto the eps-ball and [0, 1].

Arguments (defaults are the AAA / UniG CIFAR-10 l-inf setting):
    norm: "linf" | "l2" (default "linf"); eps: radius (required; ``attacks.build`` gives the dataset's).
    sigma: finite-difference width of the Gaussian probes (default 0.01).
    lr: image step per iteration (default 2/255).
    pairs: q, antithetic pairs (x + sigma*u, x - sigma*u) per gradient estimate (default 20).
    loss: "margin" (default, as the AAA and UniG evaluations ran every SQA), "ce", "probability".
    seed: generator seed (default 0); progress: progress bar (default True).

One step spends 2q queries per image; when fewer remain, the last step uses floor(remaining / 2) pairs, so the
budget is met exactly (the reference checks the budget before a step and overshoots by up to 2q). The probes are
projected into the eps-ball before they are queried (the Oracle accepts nothing outside it), and a probe that is
misclassified is a success. The iterate itself is not queried: its neighbourhood is, by the next step's probes.

Shape: the oracle's images (N, C, H, W) in [0, 1]; one step holds N * 2q probe images.

Example::

    >>> result = NES(norm="linf", eps=0.3, sigma=0.01, lr=0.02, pairs=20).run(Oracle(model, x, y, budget=2500))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench import checks
from workbench.attacks.base import Attack, Session
from workbench.threat import ascent_step, project


@dataclass
class IterateState:
    x: torch.Tensor  # (N, C, H, W) the current iterate of every image


class NES(Attack):
    __doc__ = __doc__
    handles_refusals = False  # a finite difference needs both scores
    name = "nes"
    cost = 2

    def __init__(self, *, norm: str = "linf", eps: float, sigma: float = 0.01, lr: float = 2 / 255,
                 pairs: int = 20, loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, kappa=kappa, seed=seed, progress=progress)
        self.sigma, self.lr = checks.positive("sigma", sigma), checks.positive("lr", lr)
        self.pairs = checks.at_least("pairs", pairs, 1)

    def init(self, session: Session) -> IterateState:
        return IterateState(session.x0.clone())

    def step(self, session: Session, state: IterateState, idx: torch.Tensor) -> None:
        x, x0 = state.x[idx], session.x0[idx]
        b = len(idx)
        pairs = (session.handle.remaining(idx) // 2).clamp(max=self.pairs)  # >= 1: the base guarantees cost 2
        u = torch.randn(b, self.pairs, *x.shape[1:], generator=session.gen, device=session.device)
        used = torch.arange(self.pairs, device=session.device)[None, :] < pairs[:, None]  # (B, q)
        rows, cols = used.nonzero(as_tuple=True)
        probes = torch.cat([x[rows] + self.sigma * u[rows, cols], x[rows] - self.sigma * u[rows, cols]])
        owner = idx[rows].repeat(2)
        probes = project(probes, session.x0[owner], session.eps, session.norm)
        loss = self.loss(session, session.evaluate(probes, owner), owner)
        diff = torch.zeros(b, self.pairs, device=session.device)
        diff[rows, cols] = loss[:len(rows)] - loss[len(rows):]
        grad = (diff.view(b, self.pairs, 1, 1, 1) * u).sum(1) / (2 * self.sigma * pairs.view(-1, 1, 1, 1))
        state.x[idx] = project(ascent_step(x, -grad, self.lr, session.norm), x0, session.eps, session.norm)

    def best(self, state: IterateState) -> torch.Tensor:
        return state.x
