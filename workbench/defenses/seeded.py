"""A base for randomized defenses: their own random generator, created on the model's device from a seed."""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks


class Seeded(nn.Module):
    """An ``nn.Module`` with a seeded generator (``_generator(device)``) that ``reseed`` restarts."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = checks.at_least("seed", seed, 0)
        self._gen: torch.Generator | None = None

    def reseed(self, seed: int | None = None) -> Seeded:
        """Restart the random stream (at ``seed``, or the constructor's)."""
        if seed is not None:
            self.seed = checks.at_least("seed", seed, 0)
        self._gen = None
        return self

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen
