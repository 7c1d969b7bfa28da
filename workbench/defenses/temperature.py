"""Temperature scaling (Guo et al. 2017), the calibration-only baseline, and the grid search that tunes a
temperature by 15-bin ECE on held-out data (shared with AAA's calibration).

Example::

    calibrated = TemperatureScaling(model).calibrate(x_val, y_val)
    calibrated.temperature, calibrated(x)       # logits / T: same predictions, better-calibrated confidences
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from workbench import checks
from workbench.metrics import ece, predict

DEFAULT_GRID = np.geomspace(0.25, 4.0, 41)


def tune_temperature(output: Callable[[float], torch.Tensor], y: torch.Tensor,
                     grid: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """The grid value (default 41 values log-spaced in [0.25, 4]) whose ``output(T)`` logits have the lowest
    15-bin ECE against ``y``; returns (T, grid, ECE per grid value)."""
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=float)
    if grid.ndim != 1 or not len(grid) or (grid <= 0).any():
        raise ValueError(f"grid must be a 1-D array of temperatures > 0, got {grid!r}")
    errors = np.asarray([ece(output(float(t)), y) for t in grid])
    return float(grid[int(np.argmin(errors))]), grid, errors


def held_out_logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000):
    """Checked held-out labels and the model's logits on the held-out images (both on the CPU)."""
    logits = predict(model, x, batch_size)  # checks x
    return logits, checks.labels("y", y, len(x)).cpu()


class TemperatureScaling(nn.Module):
    """Logits divided by a temperature T (tuned by ``calibrate``); predictions never change. A post-processing of
    its model's logits (``base``, ``post_process``): the Oracle chunks the model's forward and scales once.

    Args:
        model: the classifier. temperature: T (default 1; ``calibrate`` tunes it).
    """

    def __init__(self, model: nn.Module, *, temperature: float = 1.0):
        super().__init__()
        checks.module("model", model)
        self.model, self.temperature = model, checks.positive("temperature", temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4g}"

    @property
    def base(self) -> nn.Module:
        """The classifier whose logits are scaled."""
        return self.model

    def post_process(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits divided by T."""
        return logits / self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_process(self.model(x))

    def calibrate(self, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray | None = None) -> TemperatureScaling:
        """Tune T on held-out data by 15-bin ECE (see ``tune_temperature``); returns self."""
        logits, y = held_out_logits(self.model, x, y)
        self.temperature, *curve = tune_temperature(lambda t: logits / t, y, grid)
        self.calibration_curve = tuple(curve)
        return self
