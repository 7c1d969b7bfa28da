"""AAA: Adversarial Attack on Attackers, a post-processing defense against score-based query attacks.

Paper: Chen, Huang, He, Yang, Huang (NeurIPS 2022), eqs. (4)-(6) and Algorithm 1.

AAA leaves the model alone and re-optimizes its output logits z for every query so that (i) the label-free margin
``m(z) = top1(z) - top2(z)`` follows a misleading target curve and (ii) the confidence of the predicted class matches
a temperature-calibrated one. The original margin ``m_org`` is divided into intervals of width tau around loss
attractors ``atr = (ceil(m_org / tau) - 1/2) * tau``; inside an interval the target moves *against* the attacker:

- linear (eq. 5, first line): ``m_trg = atr - alpha * (m_org - atr)``
- sine   (eq. 5, second line): ``m_trg = m_org - alpha * tau * sin(pi * (1 - 2 * (m_org - atr) / tau))``

Logits are found by ``kappa`` Adam steps (lr 0.1) on ``|m(z) - m_trg| + beta * |softmax(z)[c] - p_trg|``, with
``c`` the original prediction and ``p_trg = max softmax(z_org / T)``. Three deliberate choices of the workbench:

- The temperature T is really tuned (``calibrate``): the grid value that minimizes 15-bin ECE of AAA's own output
  on held-out data. The released code never runs this step and keeps T = 1.
- The predicted class never changes: rows whose arg-max moved during optimization (possible where the target
  margin reaches 0) get the original class's logit raised just above the others. ``last_repaired`` counts them.
- The Adam steps run in float64 and are rounded once at the end, and the confidence target comes from the
  solver's own softmax: AAA's output is then the same whichever solver (compiled, eager, CUDA graph) and whichever
  CPU kernel level computes it (``workbench.speed.aaa_solver``). The released code's float32 steps follow their signs into
  rounding on some rows (up to 0.24 of the logits' scale apart between two kernel levels).

Where this differs from the released code (measured side by side on the same logits; docs/protocol.md):

- The loss is **summed** over rows; the released code averages it over the batch. With Adam, averaging scales
  every gradient by 1/N, which Adam undoes except through its epsilon: the mean loss is the summed loss with
  Adam's eps multiplied by N. The released output therefore depends on the batch size (mean |margin change| 0.02
  between batches of 128 and 500); the sum makes every row independent of the rest of its batch, so AAA's output
  for an image is deterministic whatever it is queried with.
- Margins at exact multiples of tau (m = k * tau; for float logits essentially only exact ties, m = 0): eq. (4)
  as printed, ``(floor(m / tau) + 1/2) * tau``, puts m = k * tau in the interval above, whose linear target is
  (k + 1) * tau; this implementation follows the appendix, ``(ceil(m / tau) - 1/2) * tau``, which puts it in the
  interval below, whose linear target is (k - 1) * tau (for k = 1 a target margin of 0: the argmax repair keeps
  the prediction; an exact tie, m = 0, gets attractor -tau/2 and target -tau, i.e. it stays a tie). The released
  code's ``round(m / tau + 1/2) - 1/2`` rounds half to even and so alternates between the two with k's parity.
  The three agree at every other margin.

Example::

    defended = AAA(model, curve="linear").calibrate(x_val, y_val)
    logits = defended(x)                      # same arg-max as model(x), misleading margins
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.temperature import held_out_logits, tune_temperature
from workbench.losses import top2_margin
from workbench.speed import AAA_METHODS, aaa_solver, default_aaa_method, one_thread, solve_aaa

# AAA (Chen et al. 2022): the attractor interval tau, in logits, and the reverse step alpha of each curve. The
# defense, the figures and the sliders read them from here; op-Square's threshold is half of tau (a test checks).
AAA_TAU = 6.0
AAA_ALPHA = {"linear": 1.0, "sine": 0.7}
CURVES = tuple(AAA_ALPHA)


def attractor(m: torch.Tensor, tau: float) -> torch.Tensor:
    """Centre of the interval of width tau that holds margin m (eq. 4): ``(ceil(m / tau) - 1/2) * tau``."""
    return (torch.ceil(m / tau) - 0.5) * tau


def target_margin(m: torch.Tensor, curve: str = "linear", tau: float = AAA_TAU,
                  alpha: float | None = None) -> torch.Tensor:
    """AAA's target margin for original margins ``m`` (eq. 5)."""
    checks.choice("curve", curve, CURVES)
    alpha = AAA_ALPHA[curve] if alpha is None else alpha
    atr = attractor(m, tau)
    if curve == "linear":
        return atr - alpha * (m - atr)
    return m - alpha * tau * torch.sin(math.pi * (1 - 2 * (m - atr) / tau))


def target_curves(tau: float = AAA_TAU, alphas: dict[str, float] | None = None, curves: tuple[str, ...] = CURVES,
                  m_max: float = 24.0, points: int = 2000) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The data of AAA Fig. 1b: original margins ``m`` in (0, ``m_max``] and each curve's target margin at them
    (alpha from ``alphas`` or the paper's), for ``plots.aaa_target_curves``."""
    for curve in curves:
        checks.choice("curves", curve, CURVES)
    m = torch.linspace(1e-3, checks.positive("m_max", m_max), checks.at_least("points", points, 2))
    return m, {curve: target_margin(m, curve, tau, (alphas or {}).get(curve)) for curve in curves}


class AAA(nn.Module):
    """AAA wrapped around any classifier (an ``nn.Module`` mapping images to logits).

    Args:
        model: the classifier to defend.
        curve: ``"linear"`` (default) or ``"sine"``.
        tau: attractor interval (default ``AAA_TAU`` = 6). alpha: reverse step (default 1 linear, 0.7 sine).
        beta: weight of the calibration term (default 5). kappa: optimization steps (default 100).
        lr: Adam learning rate (default 0.1). temperature: T of the calibration target (default 1; ``calibrate``
            tunes it).
        solver: how the Adam steps run (``speed.AAA_METHODS``): None (default) picks a CUDA graph on a GPU, the
            compiled loop on a CPU with numba, the eager PyTorch loop otherwise; all give the same logits (float64
            steps, rounded once).

    AAA post-processes its model's logits (``base`` and ``post_process``): the Oracle runs the model's forward
    in chunks and the solver once per query batch.
    """

    def __init__(self, model: nn.Module, curve: str = "linear", *, tau: float = AAA_TAU, alpha: float | None = None,
                 beta: float = 5.0, kappa: int = 100, lr: float = 0.1, temperature: float = 1.0,
                 solver: str | None = None):
        super().__init__()
        checks.module("model", model)
        checks.choice("curve", curve, CURVES)
        self.model, self.curve = model, curve
        self.tau, self.lr = checks.positive("tau", tau), checks.positive("lr", lr)
        self.temperature = checks.positive("temperature", temperature)
        self.kappa = checks.at_least("kappa", kappa, 0)
        self.beta = checks.non_negative("beta", beta)
        self.alpha = AAA_ALPHA[curve] if alpha is None else checks.non_negative("alpha", alpha)
        if solver is not None:
            checks.choice("solver", solver, AAA_METHODS)
        self.solver = solver
        self.last_repaired = 0

    @property
    def base(self) -> nn.Module:
        """The classifier whose logits AAA post-processes."""
        return self.model

    def extra_repr(self) -> str:
        return (f"curve={self.curve!r}, tau={self.tau:g}, alpha={self.alpha:g}, beta={self.beta:g}, "
                f"kappa={self.kappa}, lr={self.lr:g}, temperature={self.temperature:.4g}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model(x)
        return self.post_process(logits)

    def post_process(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """AAA's output for the original logits ``logits`` (N, K) (Algorithm 1): solved in float64 and rounded once
        to the logits' dtype (``workbench.speed``: the same output whichever solver and CPU kernel level runs it)."""
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(f"logits must have shape (N, K) with K >= 2 classes, got {tuple(logits.shape)}")
        t = self.temperature if temperature is None else temperature
        method = self.solver or default_aaa_method(logits.device)
        if method == "compiled" and logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64):
            z, self.last_repaired = aaa_solver.post_process(logits, self.curve == "sine", self.tau, self.alpha, t,
                                                            self.beta, self.kappa, self.lr)
            return z
        z_org = logits.detach().double()
        m_trg = target_margin(top2_margin(z_org), self.curve, self.tau, self.alpha)
        pred = z_org.argmax(1)
        # the eager loop's tiny operations on one thread: several only add waiting (and collapse under load)
        with one_thread() if method == "eager" else contextlib.nullcontext():
            z = solve_aaa(z_org, pred, m_trg, t, self.beta, self.kappa, self.lr, method)
        return self._repair(z.to(logits.dtype), pred)

    def _repair(self, z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        moved = z.argmax(1) != pred
        self.last_repaired = int(moved.sum())
        if self.last_repaired:
            others = z.scatter(1, pred[:, None], float("-inf")).amax(1)
            lifted = torch.maximum(z.gather(1, pred[:, None]).squeeze(1), others + 1e-4)
            z = torch.where(moved[:, None], z.scatter(1, pred[:, None], lifted[:, None]), z)
        return z

    def calibrate(self, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray | None = None,
                  batch_size: int = 1000) -> "AAA":
        """Tune the temperature on held-out data: the grid value (default 41 values log-spaced in [0.25, 4])
        whose AAA output has the lowest 15-bin ECE. Sets ``temperature`` and returns self."""
        logits, y = held_out_logits(self.model, x, y, batch_size)
        self.temperature, *curve = tune_temperature(lambda t: self.post_process(logits, t), y, grid)
        self.calibration_curve = tuple(curve)
        return self

