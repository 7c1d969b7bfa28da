"""RFD: Randomized Feature Defense, Gaussian noise on a hidden layer's features at every query.

Paper: Nguyen, Lao, Pham, Wong, Doan, "Understanding the Robustness of Randomized Feature Defense Against
Query-Based Adversarial Attacks", ICLR 2024. Default layer: the penultimate features (the input of the last linear
layer), the placement its authors recommend and the RLS paper used. The noise's std is set per model for a
clean-accuracy drop of one to two points (the RLS paper's settings: ResNet-18 2.5, WRN-28-10 0.7, VGG-16 0.35,
ResNet-50 3.0); ``calibrate`` applies that rule to the model at hand (below). The RLS paper's code
(HamidDasht/RLS-adversarial-defense ``utils/model_loader.py``) adds the noise to the output of the last residual
stage, before the global average pooling; here it goes after the pooling, on the features the classifier reads.
Pooling an H x W map averages the noise, so their sigma corresponds to about sigma / sqrt(H W) here; the
calibration below sets the scale for the model at hand either way.

The noise ``sigma * N(0, I)`` is added to the input of the layer ``layer`` only while the defense runs (a forward
pre-hook registered for the call and removed after it): the wrapped model itself stays deterministic, so it can
still serve as the undefended reference. The noise comes from the module's own generator (``seed``).

Calibration (``calibrate(x, y)`` on held-out images, run by ``defenses.prepare``): where no ``sigma`` was given,
the largest sigma whose mean clean-accuracy drop over ``draws`` noise draws is at most ``drop`` (default 0.015: the
middle of the paper's one to two points), found by bisection in log space between 1e-3 and 10 times the std of the
layer's clean features; the same draws at every trial (common random numbers), so the search is deterministic.

Arguments:
    model: the classifier (images in [0, 1] -> logits).
    sigma: std of the feature noise (None: set by ``calibrate``).
    layer: name of the submodule whose input gets the noise (as in ``model.named_modules()``; default: the last
        ``nn.Linear``, i.e. the penultimate features).
    drop: the clean-accuracy drop the calibration aims at (default 0.015); draws: noise draws per trial (default 4).
    seed: seed of the noise generator (default 0).

Example::

    defended = FeatureNoise(model).calibrate(x_held_out, y_held_out)
    defended.sigma                      # the calibrated std
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.threat import model_device

RFD_DROP = 0.015  # the clean-accuracy drop the calibration aims at: the middle of the paper's one to two points
STEPS = 10  # bisection steps of the calibration: the four decades of the bracket narrowed to a factor 1.01


class FeatureNoise(Seeded):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, sigma: float | None = None, layer: str | None = None,
                 drop: float = RFD_DROP, draws: int = 4, seed: int = 0):
        super().__init__(seed)
        checks.module("model", model)
        self.model = model
        modules = dict(model.named_modules())
        if layer is None:
            linear = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
            if not linear:
                raise ValueError(f"the model {type(model).__name__} has no nn.Linear: pass layer= (one of "
                                 f"{[n for n in modules if n][:20]})")
            layer = linear[-1]
        checks.choice("layer", layer, tuple(n for n in modules if n))
        self.layer = layer
        self.sigma = None if sigma is None else checks.non_negative("sigma", sigma)
        self.drop = checks.non_negative("drop", drop)
        self.draws = checks.at_least("draws", draws, 1)

    def extra_repr(self) -> str:
        sigma = "uncalibrated" if self.sigma is None else f"{self.sigma:.4g}"
        return f"layer={self.layer!r}, sigma={sigma}, seed={self.seed}"

    @contextmanager
    def _hooked(self, hook: Callable[[nn.Module, tuple], tuple | None]) -> Iterator[None]:
        """``hook`` on the input of ``layer`` for the block only (the wrapped model is left as it was)."""
        handle = dict(self.model.named_modules())[self.layer].register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _noisy(self, sigma: float, gen: torch.Generator) -> AbstractContextManager[None]:
        def add(_module: nn.Module, args: tuple) -> tuple:
            features = args[0]
            noise = torch.randn(features.shape, generator=gen, device=features.device, dtype=features.dtype)
            return (features + sigma * noise, *args[1:])

        return self._hooked(add)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma is None:
            raise ValueError("FeatureNoise has no sigma yet: pass sigma= or run calibrate(x, y) on held-out images")
        if not self.sigma:
            return self.model(x)
        with self._noisy(self.sigma, self._generator(model_device(self.model))):
            return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The clean input of ``layer`` for the images ``x``."""
        seen: list[torch.Tensor] = []
        with self._hooked(lambda _m, args: seen.append(args[0].detach())), torch.no_grad():
            self.model(x.to(model_device(self.model)))
        return seen[0]

    def accuracy_drop(self, sigma: float, x: torch.Tensor, y: torch.Tensor) -> float:
        """The mean clean-accuracy drop over ``draws`` noise draws at ``sigma`` (draws seeded by ``seed``)."""
        device = model_device(self.model)
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            clean = float((self.model(x).argmax(1) == y).float().mean())
            gen = torch.Generator(device=device).manual_seed(self.seed)
            with self._noisy(sigma, gen):
                noisy = [float((self.model(x).argmax(1) == y).float().mean()) for _ in range(self.draws)]
        return clean - sum(noisy) / len(noisy)

    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> FeatureNoise:
        """Set ``sigma`` by the rule of the module docstring on the held-out images ``x``, ``y`` (kept where given)."""
        checks.images("x", x)
        y = checks.labels("y", y, len(x))
        if self.sigma is not None:
            return self
        scale = float(self.features(x).float().std())
        low, high = math.log(1e-3 * scale), math.log(10 * scale)
        if self.accuracy_drop(math.exp(high), x, y) <= self.drop:
            self.sigma = math.exp(high)
            return self.reseed()
        for _ in range(STEPS):
            mid = (low + high) / 2
            if self.accuracy_drop(math.exp(mid), x, y) <= self.drop:
                low = mid
            else:
                high = mid
        self.sigma = math.exp(low)
        return self.reseed()
