"""Noise defenses: RND (random noise on the input, optionally on the logits) and SND (small input noise, with
the optional per-query random scaling).

Papers: Qin, Fan, Zha, Wu, "Random Noise Defense Against Query-Based Black-Box Attacks", NeurIPS 2021 (RND);
Byun, Go, Kim, "On the Effectiveness of Small Input Noise for Defending Against Query-based Black-Box Attacks",
WACV 2022 (SND).

Both add ``sigma * N(0, I)`` to every query (clipped to [0, 1]) before the model; RND's defaults are sigma = 0.02
(0.05 with a Gaussian-augmentation fine-tuned model, RND-GF) and optional logit noise; SND uses sigma in
0.001-0.02 and, in its Sec. 4.7, multiplies the noise of every query by k ~ Beta(a, b).

The output is random: the same query gives different scores. The noise comes from the module's own generator
(``seed``), so a run is reproducible when the queries are; ``reseed`` restarts it.

Arguments:
    model: the classifier (images in [0, 1] -> logits).
    sigma: std of the input noise (default 0.02; 0 for none).
    logit_noise: std of Gaussian noise added to the logits (default 0.0; RND's code used 1 for a standard
        CIFAR model, 0.3 otherwise).
    beta: None (default) or (a, b): scale each query's noise by k ~ Beta(a, b) (SND Sec. 4.7).
    clip: clip the noisy input to [0, 1] (default True).
    seed: seed of the noise generator (default 0).

Example::

    defended = InputNoise(model, sigma=0.02, seed=0)
    defended(x), defended(x)          # two different draws
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.threat import model_device


class InputNoise(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, sigma: float = 0.02, logit_noise: float = 0.0,
                 beta: tuple[float, float] | None = None, clip: bool = True, seed: int = 0):
        super().__init__(seed)
        checks.module("model", model)
        sigma, logit_noise = checks.non_negative("sigma", sigma), checks.non_negative("logit_noise", logit_noise)
        if beta is not None:
            if not isinstance(beta, (tuple, list)) or len(beta) != 2:
                raise ValueError(f"beta must be a pair (a, b) of numbers > 0, got {beta!r}")
            beta = (checks.positive("beta[0]", beta[0]), checks.positive("beta[1]", beta[1]))
        self.model, self.sigma, self.logit_noise, self.beta = model, sigma, logit_noise, beta
        self.clip = checks.flag("clip", clip)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, logit_noise={self.logit_noise:g}, beta={self.beta}, seed={self.seed}"

    def _scale(self, n: int, device: torch.device, gen: torch.Generator) -> torch.Tensor:
        if self.beta is None:
            return torch.ones(n, 1, 1, 1, device=device)
        # Beta(a, b) from two Gamma draws, with our generator (torch.distributions takes none)
        a = torch._standard_gamma(torch.full((n,), float(self.beta[0]), device=device), generator=gen)
        b = torch._standard_gamma(torch.full((n,), float(self.beta[1]), device=device), generator=gen)
        return (a / (a + b)).view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = model_device(self.model)
        gen = self._generator(device)
        if self.sigma:
            noise = torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)
            x = x + self.sigma * self._scale(len(x), device, gen) * noise
            x = x.clamp(0.0, 1.0) if self.clip else x
        logits = self.model(x)
        if self.logit_noise:
            logits = logits + self.logit_noise * torch.randn(logits.shape, generator=gen, device=device)
        return logits
