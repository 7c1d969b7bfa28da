"""Tiny deterministic models for tests that need exact, fast, analysable behaviour."""

from __future__ import annotations

import torch
import torch.nn as nn


def linear_model(c: int = 1, side: int = 4, classes: int = 3, seed: int = 0) -> nn.Module:
    """A random linear classifier on (N, c, side, side) images."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, classes))
    return model.eval()


class Recorder(nn.Module):
    """Wraps a model and keeps every input batch it was called with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.detach().clone())
        return self.model(x)
