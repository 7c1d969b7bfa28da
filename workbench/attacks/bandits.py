"""Bandits-TD: gradient estimation with a time prior (the estimate carries over between steps) and a data prior
(the estimate lives on a coarse tiled grid), learned online as a bandit problem.

Paper: Ilyas, Engstrom, Madry, "Prior Convictions: Black-Box Adversarial Attacks with Bandits and Priors",
ICLR 2019.

Distance: l-inf (exponentiated-gradient prior update, sign image step) and l2 (gradient prior update, normalized
image step), each followed by projection onto the eps-ball and [0, 1].

Arguments (defaults are the paper's ImageNet l-inf setting, which UniG reused on CIFAR-10):
    norm: "linf" | "l2" (default "linf"); eps: radius (required; ``attacks.build`` gives the dataset's).
    prior_size: side of the coarse prior (default 50, the reference's "tile size"); it is upsampled (nearest) to
        the image size, so each prior cell covers a tile of about H / prior_size pixels.
    fd_eta: finite-difference width of the two probes (default 0.1).
    image_lr: image step per iteration (default 0.01).
    online_lr: learning rate of the prior (default 100; l2: 0.1).
    exploration: std of the exploration noise on the prior (default 1.0; l2: 0.01).
    loss: "margin" (default, as the AAA and UniG evaluations ran every SQA), "ce" (the reference's), "probability".
    seed: generator seed (default 0); progress: progress bar (default True).

One step spends exactly 2 queries per image (two probes around the iterate along prior +- exploration noise);
an image with a single query left stops (the reference checks the budget before a step and overshoots it). The
probes are projected into the eps-ball before they are queried; a misclassified probe is a success.

Shape: the oracle's images (N, C, H, W) in [0, 1]; the prior is (N, C, prior_size, prior_size).

Example::

    >>> result = Bandits(norm="linf", eps=0.3, prior_size=7).run(Oracle(model, x, y, budget=2500))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench import checks
from workbench.attacks.base import Attack, Session
from workbench.threat import ascent_step, project, unit


@dataclass
class BanditsState:
    x: torch.Tensor  # (N, C, H, W) current iterate
    prior: torch.Tensor  # (N, C, P, P) the online estimate of the gradient (of the loss to increase)


def eg_step(prior: torch.Tensor, g: torch.Tensor, lr: float) -> torch.Tensor:
    """Exponentiated-gradient step on a prior in [-1, 1] (the l-inf prior update)."""
    real = (prior + 1) / 2
    pos = real * torch.exp(lr * g)
    neg = (1 - real) * torch.exp(-lr * g)
    return torch.nan_to_num(pos / (pos + neg), nan=0.5) * 2 - 1


class Bandits(Attack):
    __doc__ = __doc__
    handles_refusals = False  # a finite difference needs both scores
    name = "bandits"
    cost = 2

    def __init__(self, *, norm: str = "linf", eps: float, prior_size: int = 50, fd_eta: float = 0.1,
                 image_lr: float = 0.01, online_lr: float | None = None, exploration: float | None = None,
                 loss: str | None = None, kappa: float = 0.0, seed: int = 0,
                 progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, kappa=kappa, seed=seed, progress=progress)
        linf = norm == "linf"
        online_lr = (100.0 if linf else 0.1) if online_lr is None else online_lr
        exploration = (1.0 if linf else 0.01) if exploration is None else exploration
        self.prior_size = checks.at_least("prior_size", prior_size, 1)
        self.fd_eta, self.image_lr = checks.positive("fd_eta", fd_eta), checks.positive("image_lr", image_lr)
        self.online_lr = checks.positive("online_lr", online_lr)
        self.exploration = checks.positive("exploration", exploration)

    def init(self, session: Session) -> BanditsState:
        n, c = session.x0.shape[:2]
        prior = torch.zeros(n, c, self.prior_size, self.prior_size, device=session.device)
        return BanditsState(session.x0.clone(), prior)

    def _up(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=like.shape[2:], mode="nearest")

    def step(self, session: Session, state: BanditsState, idx: torch.Tensor) -> None:
        x, x0, prior = state.x[idx], session.x0[idx], state.prior[idx]
        dim = prior[0].numel()
        noise = self.exploration * torch.randn(prior.shape, generator=session.gen, device=session.device) / math.sqrt(dim)
        q1, q2 = self._up(prior + noise, x), self._up(prior - noise, x)
        probes = torch.cat([x + self.fd_eta * unit(q1), x + self.fd_eta * unit(q2)])
        owner = idx.repeat(2)
        probes = project(probes, session.x0[owner], session.eps, session.norm)
        gain = -self.loss(session, session.evaluate(probes, owner), owner)  # the reference ascends its loss
        deriv = (gain[:len(idx)] - gain[len(idx):]) / (self.fd_eta * self.exploration)
        grad = deriv.view(-1, 1, 1, 1) * noise
        if session.norm == "linf":
            prior = eg_step(prior, grad, self.online_lr)
        else:
            prior = prior + self.online_lr * grad
        state.prior[idx] = prior
        step = ascent_step(x, self._up(prior, x), self.image_lr, session.norm)
        state.x[idx] = project(step, x0, session.eps, session.norm)

    def best(self, state: BanditsState) -> torch.Tensor:
        return state.x
