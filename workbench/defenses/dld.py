"""DLD, the Dashed Line Defense (AISTATS 2026; fyzdalao/Dashed-Line-Defense, ``victim.py``,
``dashed_line_single_forward``; defaults from its ``main.py``): a post-processing of the logits that cuts the
attacker's loss curve into dashes, so that a smaller true margin may show a larger one.

With m the top-1 minus top-2 logit, b = floor(m / tau) tau, r = m - b and c = r / tau, the shown margin is

    high = b + h tau + (1 - h) r   where c lies in S, the union over the steps t = s, 2s, ... of (t - rho s, t)
    low  = b + h tau - h r          elsewhere,                                         (h = 0.3)

and only the top-1 logit moves (so the predicted label never changes and the clean accuracy is kept). Defaults:
tau 6, rho (``high_ratio``) 0.5, s (``s_step``) 0.04. The steps t are accumulated in floating point as the
reference's ``while temp <= 1: temp += s_step`` loop does, so the dashes' ends match its bit for bit. DLD is
deterministic: the same query always gets the same answer.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks

DLD_TAU, DLD_HIGH_RATIO, DLD_S_STEP, DLD_H = 6.0, 0.5, 0.04, 0.3


def dash_steps(s_step: float) -> list[float]:
    """The right ends t of the dashes, accumulated as the reference's loop does."""
    steps, t = [], 0.0
    while t <= 1:
        t += s_step
        steps.append(t)
    return steps


def dashed_margin(m: torch.Tensor, tau: float, high_ratio: float, s_step: float, h: float = DLD_H) -> torch.Tensor:
    """The margin DLD shows for true margins ``m`` >= 0."""
    b = torch.floor(m / tau) * tau
    r = m - b
    c = r / tau
    high = c > 1
    for t in dash_steps(s_step):
        high |= (c > t - s_step * high_ratio) & (c < t)
    return torch.where(high, b + h * tau + (1 - h) * r, b + h * tau - h * r)


class DLD(nn.Module):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, tau: float = DLD_TAU, high_ratio: float = DLD_HIGH_RATIO,
                 s_step: float = DLD_S_STEP):
        super().__init__()
        self.base = model
        self.tau = checks.positive("tau", tau)
        self.high_ratio = checks.positive("high_ratio", high_ratio)
        self.s_step = checks.positive("s_step", s_step)

    def post_process(self, logits: torch.Tensor) -> torch.Tensor:
        top, index = logits.topk(2, dim=1)
        m = top[:, 0] - top[:, 1]
        shown = dashed_margin(m, self.tau, self.high_ratio, self.s_step)
        out = logits.clone()
        out[torch.arange(len(out)), index[:, 0]] += shown - m
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_process(self.base(x))
