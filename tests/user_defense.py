"""Defenses a user might write, unknown to the registry: the evaluation tests probe and evaluate them, and the
command line loads them by import path (``tests.user_defense:scaled``)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ScaledLogits(nn.Module):
    """A deterministic post-processing that keeps every prediction: ``2 * logits + 1``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.model(x) + 1


class NoisyLogits(nn.Module):
    """Gaussian noise on the logits from torch's global generator (no seed of its own)."""

    def __init__(self, model: nn.Module, sigma: float = 1.0):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits + self.sigma * torch.randn_like(logits)


def scaled(model: nn.Module) -> nn.Module:
    return ScaledLogits(model)


def noisy(model: nn.Module, sigma: float = 1.0) -> nn.Module:
    return NoisyLogits(model, sigma)
