"""Confidence-gated noise: a randomized defense switched on only for the queries the model is unsure about.

Two papers, one mechanism (the gate is the undefended model's softmax confidence on the query):

- Boundary Defense (BD): Aithal and Li, "Boundary Defense Against Black-box Adversarial Attacks", ICPR 2022
  (arXiv 2201.13444). Gaussian noise on the logits of the queries whose confidence is below a threshold; the
  abstract's ImageNet setting is noise std 0.1 below confidence 0.3 (registry entry ``bd``, used on every dataset:
  the paper states no other).
- Gated RND: Zimmer, Andreina, Marson, Karame, "Closing the Gap: Achieving Better Accuracy-Robustness Tradeoffs
  against Query-Based Attacks", AAAI 2024. A randomized defense (here RND's input noise) applied only to
  low-confidence queries, since a query-based attack has to explore low-confidence regions while clean inputs
  mostly sit in high-confidence ones (registry entry ``gated-rnd``). The paper tunes its threshold per model on
  accuracy-robustness curves; its values are not given here, so ``calibrate`` sets the threshold by a rule of ours,
  recorded with the defense: the ``share`` (default 0.1) quantile of the model's confidence on held-out clean images,
  i.e. about one clean image in ten is gated.

A gated query gets ``model(clip(x + input_sigma * N(0, I))) + logit_sigma * N(0, I)``; every other query gets
``model(x)``, bit for bit. The noise comes from the module's own generator (``seed``).

Arguments:
    model: the classifier (images in [0, 1] -> logits).
    threshold: the confidence below which a query is gated (in (0, 1]; None: set by ``calibrate``).
    input_sigma: std of the input noise of gated queries (default 0). logit_sigma: std of their logit noise (0).
    share: the share of held-out clean images ``calibrate`` gates where no threshold was given (default 0.1).
    seed: seed of the noise generator (default 0).

Example::

    bd = ConfidenceGated(model, threshold=0.3, logit_sigma=0.1)             # Boundary Defense
    gated = ConfidenceGated(model, input_sigma=0.02).calibrate(x_held, y_held)   # gated RND
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.threat import model_device

BD_THRESHOLD, BD_SIGMA = 0.3, 0.1  # Boundary Defense's ImageNet setting (its abstract)
GATED_SHARE = 0.1  # the share of held-out clean images gated RND's calibrated threshold gates (our rule)


class ConfidenceGated(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, threshold: float | None = None, input_sigma: float = 0.0,
                 logit_sigma: float = 0.0, share: float = GATED_SHARE, seed: int = 0):
        super().__init__(seed)
        checks.module("model", model)
        if threshold is not None:
            threshold = checks.positive("threshold", threshold)
            if threshold > 1:
                raise ValueError(f"threshold must be a confidence in (0, 1], got {threshold:g}")
        self.input_sigma = checks.non_negative("input_sigma", input_sigma)
        self.logit_sigma = checks.non_negative("logit_sigma", logit_sigma)
        if not (self.input_sigma or self.logit_sigma):
            raise ValueError("give input_sigma > 0 or logit_sigma > 0: a gate with no noise behind it defends nothing")
        share = checks.positive("share", share)
        if share >= 1:
            raise ValueError(f"share must be in (0, 1), got {share:g}")
        self.model, self.threshold, self.share = model, threshold, share

    def extra_repr(self) -> str:
        threshold = "uncalibrated" if self.threshold is None else f"{self.threshold:.4g}"
        return (f"threshold={threshold}, input_sigma={self.input_sigma:g}, logit_sigma={self.logit_sigma:g}, "
                f"seed={self.seed}")

    @staticmethod
    def confidence(logits: torch.Tensor) -> torch.Tensor:
        """The softmax confidence (largest probability) of every row of ``logits``."""
        return logits.float().softmax(1).amax(1)

    def gate(self, logits: torch.Tensor) -> torch.Tensor:
        """Which rows of the clean ``logits`` are gated (confidence below the threshold)."""
        if self.threshold is None:
            raise ValueError("ConfidenceGated has no threshold yet: pass threshold= or run calibrate(x, y)")
        return self.confidence(logits) < self.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        gated = self.gate(logits)
        if not gated.any():
            return logits
        gen = self._generator(model_device(self.model))
        if self.input_sigma:
            xg = x[gated]
            noise = torch.randn(xg.shape, generator=gen, device=xg.device, dtype=xg.dtype)
            noisy = self.model((xg + self.input_sigma * noise).clamp(0.0, 1.0))
        else:
            noisy = logits[gated]
        if self.logit_sigma:
            noisy = noisy + self.logit_sigma * torch.randn(noisy.shape, generator=gen, device=noisy.device,
                                                           dtype=noisy.dtype)
        out = logits.clone()
        out[gated] = noisy
        return out

    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> ConfidenceGated:
        """Where no threshold was given: the ``share`` quantile of the model's clean confidence on ``x``."""
        checks.images("x", x)
        checks.labels("y", y, len(x))
        if self.threshold is None:
            with torch.no_grad():
                confidence = self.confidence(self.model(x.to(model_device(self.model))))
            self.threshold = float(torch.quantile(confidence.cpu().double(), self.share))
        return self.reseed()
