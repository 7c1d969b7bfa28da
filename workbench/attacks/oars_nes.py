"""OARS's adaptive NES: NES that learns how wide its probes and how long its steps must be for a stateful detector
to answer them.

Paper: Feng, Mangaokar, Chen, Fernandes, Jha and Prakash, "Stateful Defenses for Machine Learning Models Are Not
Yet Secure Against Black-box Attacks", CCS 2023. Code: nmangaokar/ccs_23_oars_stateful_attacks,
``attacks/adaptive/NESScore.py``; defaults from its CIFAR-10 Blacklight config
(``configs/cifar/blacklight/nesscore/targeted/adaptive/config.json``, the only NES config it has; run here
untargeted, as its ``attack_untargeted``).

Reasoning: NES probes x + sigma u and x - sigma u with a small sigma, so every probe pair is a near copy of the last
query: a detector refuses them. OARS searches the probe width sigma at which no sampled probe is refused, keeps
only the pairs whose both probes were answered (refilling up to ``grad_attempts`` rounds), and takes steps of at
least the searched length (a step too short is a near copy too); a refused step is retried from the previous
point with a fresh estimate, up to ``step_attempts`` times.

Distance: l-inf (sign steps), as the reference.

Arguments (the reference's config): ``dirs`` 50 probes per estimate (25 pairs), ``sigma_lower`` / ``sigma_upper``
0.05 / 0.5, ``sigma_steps`` 10, ``sigma_samples`` 20, ``sigma_hit_rate`` 0 (the probe-width search: its
``bs_grad_var``); ``step_lower`` = ``step_upper`` 0.1, ``step_steps`` 10, ``step_samples`` 20, ``step_hit_rate``
0.005 (the least step: its ``bs_min_ss``); ``lr`` 0.01, ``min_lr`` 5e-5, ``momentum`` 0.9, ``plateau`` 5 and
``plateau_drop`` 2 (halve the step when the mean probe loss rose over the last 5 estimates); ``grad_attempts`` 5,
``step_attempts`` 20; ``loss`` "ce" (the reference's); ``kappa``, ``seed``, ``progress`` as every attack.

What differs, and why: the workbench's Oracle answers only queries inside the eps-ball, so every probe and every
search sample is projected into it before it is sent (the reference sends x + sigma u as it is, with sigma up to
0.5); the estimate then uses the projected displacement as its direction. The reference's first iterate is x plus
uniform noise in the ball, not clipped to [0, 1]; here it is clipped. The reference halves the step when its raw
cross-entropy rose over the plateau, which in its untargeted branch (cross-entropy maximized) halves it on progress;
here the step halves when the attack's loss got worse, the rule of its targeted branch.

Shape: the oracle's images (N, C, H, W) in [0, 1], attacked as one batch; one round sends one probe (or one step)
per image.

Example::

    >>> oracle = Oracle(Blacklight(model), x, y, budget=5000, refusal="closest")
    >>> result = OARSNES(eps=0.05).run(oracle)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench import checks
from workbench.attacks.base import Attack, Session
from workbench.attacks.oars import refusal_search
from workbench.threat import project


@dataclass
class OARSNESState:
    x: torch.Tensor  # (N, C, H, W) iterates
    sigma: torch.Tensor  # (N,) probe widths
    least: torch.Tensor  # (N,) least step
    lr: torch.Tensor  # (N,) step sizes
    previous: torch.Tensor  # (N, C, H, W) the last estimate (momentum)
    has_previous: torch.Tensor  # (N,) bool
    history: list  # the last ``plateau`` mean probe losses, (N,) each
    attempts: torch.Tensor  # (N,) refused steps in a row


class OARSNES(Attack):
    __doc__ = __doc__
    name = "oars-nes"
    norms = ("linf",)
    cost = 3  # one probe pair and the step
    default_loss = "ce"
    targeted_loss = "ce"

    def __init__(self, *, norm: str = "linf", eps: float, dirs: int = 50, sigma_lower: float = 0.05,
                 sigma_upper: float = 0.5, sigma_steps: int = 10, sigma_samples: int = 20,
                 sigma_hit_rate: float = 0.0, step_lower: float = 0.1, step_upper: float = 0.1,
                 step_steps: int = 10, step_samples: int = 20, step_hit_rate: float = 0.005, lr: float = 0.01,
                 min_lr: float = 5e-5, momentum: float = 0.9, plateau: int = 5, plateau_drop: float = 2.0,
                 grad_attempts: int = 5, step_attempts: int = 20, loss: str | None = None, kappa: float = 0.0,
                 seed: int = 0, progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, kappa=kappa, seed=seed, progress=progress)
        self.pairs = checks.at_least("dirs", dirs, 2) // 2
        self.sigma_search = (checks.positive("sigma_lower", sigma_lower), checks.positive("sigma_upper", sigma_upper),
                             checks.at_least("sigma_steps", sigma_steps, 0),
                             checks.at_least("sigma_samples", sigma_samples, 1),
                             checks.non_negative("sigma_hit_rate", sigma_hit_rate))
        self.step_search = (checks.positive("step_lower", step_lower), checks.positive("step_upper", step_upper),
                            checks.at_least("step_steps", step_steps, 0),
                            checks.at_least("step_samples", step_samples, 1),
                            checks.non_negative("step_hit_rate", step_hit_rate))
        self.lr, self.min_lr = checks.positive("lr", lr), checks.positive("min_lr", min_lr)
        self.momentum = checks.non_negative("momentum", momentum)
        self.plateau = checks.at_least("plateau", plateau, 1)
        self.plateau_drop = checks.positive("plateau_drop", plateau_drop)
        self.grad_attempts = checks.at_least("grad_attempts", grad_attempts, 1)
        self.step_attempts = checks.at_least("step_attempts", step_attempts, 1)

    # ------------------------------------------------------------------------------------------------- set-up
    def init(self, session: Session) -> OARSNESState:
        n = len(session.x0)
        start = (session.x0 + session.eps * (2 * session.uniform(*session.x0.shape) - 1)).clamp(0, 1)
        full = lambda v: torch.full((n,), v, dtype=torch.float64, device=session.device)  # noqa: E731
        around = lambda move: lambda idx, width: project(  # noqa: E731  a sample around the clean image, in the ball
            (session.x0[idx] + width.view(-1, 1, 1, 1).float() * move(session.x0[idx].shape)).clamp(0, 1),
            session.x0[idx], session.eps, "linf")
        sigma, _ = refusal_search(session, self.sigma_search, around(
            lambda shape: torch.randn(shape, generator=session.gen, device=session.device)))
        least, _ = refusal_search(session, self.step_search, around(lambda shape: session.signs(*shape)))
        return OARSNESState(start, sigma, least, full(self.lr), torch.zeros_like(start),
                            torch.zeros(n, dtype=torch.bool, device=session.device), [],
                            torch.zeros(n, dtype=torch.long, device=session.device))

    # ------------------------------------------------------------------------------------------------ a step
    def step(self, session: Session, state: OARSNESState, idx: torch.Tensor) -> None:
        grad, mean_loss, counted = self._estimate(session, state, idx)
        fresh = state.attempts[idx] == 0
        blend = fresh & state.has_previous[idx]
        grad = torch.where(blend.view(-1, 1, 1, 1), self.momentum * state.previous[idx] + (1 - self.momentum) * grad,
                           grad)
        state.previous[idx], state.has_previous[idx] = grad, True
        self._anneal(state, idx, mean_loss, counted)
        go = (session.handle.remaining(idx) >= 1) & ~session.success[idx]
        idx, grad = idx[go], grad[go]
        if not len(idx):
            return
        length = torch.maximum(state.lr[idx], state.least[idx]).float().view(-1, 1, 1, 1)
        x_new = project((state.x[idx] - length * grad.sign()).clamp(0, 1), session.x0[idx], session.eps, "linf")
        session.evaluate(x_new, idx)
        refused = session.last_refused
        state.attempts[idx] = torch.where(refused, state.attempts[idx] + 1, torch.zeros_like(state.attempts[idx]))
        session.exhausted[idx[state.attempts[idx] >= self.step_attempts]] = True
        state.x[idx[~refused]] = x_new[~refused]

    def _estimate(self, session: Session, state: OARSNESState, idx: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gradient of the loss at the iterates from answered probe pairs only (the positive probe first; the
        negative one is sent only where the positive was answered), refilled for up to ``grad_attempts`` rounds;
        returns the estimate, the mean probe loss and the number of answered probes per image."""
        b = len(idx)
        x, sigma = state.x[idx], state.sigma[idx].float().view(-1, 1, 1, 1)
        grad = torch.zeros_like(x)
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        counted = torch.zeros(b, dtype=torch.long, device=x.device)
        for _ in range(self.grad_attempts):
            for _ in range(self.pairs):
                want = (counted < 2 * self.pairs) & (session.handle.remaining(idx) >= 3) & ~session.success[idx]
                rows = want.nonzero().flatten()
                if not len(rows):
                    break
                u = torch.randn(len(rows), *x.shape[1:], generator=session.gen, device=x.device) * sigma[rows]
                x0 = session.x0[idx[rows]]
                plus = project((x[rows] + u).clamp(0, 1), x0, session.eps, "linf")
                loss_plus = self.loss(session, session.evaluate(plus, idx[rows]), idx[rows])
                answered = ~session.last_refused
                rows, u, plus, loss_plus = rows[answered], u[answered], plus[answered], loss_plus[answered]
                if not len(rows):
                    continue
                minus = project((x[rows] - u).clamp(0, 1), session.x0[idx[rows]], session.eps, "linf")
                loss_minus = self.loss(session, session.evaluate(minus, idx[rows]), idx[rows])
                both = ~session.last_refused
                rows = rows[both]
                direction = (plus[both] - x[rows])  # the projected displacement
                grad[rows] += (loss_plus[both] - loss_minus[both]).view(-1, 1, 1, 1) * direction
                total[rows] += (loss_plus[both] + loss_minus[both]).double()
                counted[rows] += 2
        grad = grad / counted.clamp_min(1).view(-1, 1, 1, 1)
        return grad, total / counted.clamp_min(1), counted

    def _anneal(self, state: OARSNESState, idx: torch.Tensor, mean_loss: torch.Tensor, counted: torch.Tensor) -> None:
        """Halve an image's step (down to ``min_lr``) when its mean probe loss rose over the last ``plateau``
        estimates; the loss here is minimized, so a rise is a worse loss, as the reference's maximized one
        falling."""
        n = len(state.x)
        latest = torch.full((n,), float("nan"), dtype=torch.float64, device=state.x.device)
        latest[idx] = torch.where(counted > 0, mean_loss, torch.full_like(mean_loss, float("nan")))
        state.history = (state.history + [latest])[-self.plateau:]
        if len(state.history) < self.plateau:
            return
        rose = state.history[-1] > state.history[0]  # NaN (no estimate) compares False
        drop = rose & (state.lr > self.min_lr)
        state.lr = torch.where(drop, (state.lr / self.plateau_drop).clamp_min(self.min_lr), state.lr)
        if rose.any():
            for h in state.history:
                h[rose] = float("nan")  # that image's history starts again

    def best(self, state: OARSNESState) -> torch.Tensor:
        return state.x
