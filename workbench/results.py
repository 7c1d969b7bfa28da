"""What an attack returns: per image, the adversarial image, the queries spent, success and the query at which it
first happened, so robust accuracy at every budget up to the run's comes from one run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench import checks


@dataclass
class AttackResult:
    """What an attack returns; every tensor has one entry per image of the oracle.

    Attributes:
        x_adv: (N, C, H, W) the first misclassified query for successful images, else the attack's best point.
        queries: (N,) queries spent per image (the clean query included).
        success: (N,) whether the image was misclassified at some query (already at the clean query counts).
        first_success: (N,) the query (1-based) at which that first happened; -1 where it never did.
        clean_correct: (N,) whether the clean image was classified correctly (by the first query).
        budget: the per-image budget of the run.
        seconds: wall time of the run; forward_seconds: the part spent in the model's forward passes.
        queries_per_point: queries averaged per candidate point (EOT; 1 otherwise).
    """

    x_adv: torch.Tensor
    queries: torch.Tensor
    success: torch.Tensor
    first_success: torch.Tensor
    clean_correct: torch.Tensor
    budget: int
    seconds: float
    forward_seconds: float
    queries_per_point: int = 1

    def robust_accuracy(self, budget: int | None = None) -> float:
        """Fraction of images not misclassified within ``budget`` queries (default: the run's budget)."""
        budget = self.budget if budget is None else budget
        budget = checks.at_least("budget", budget, 1)
        if budget > self.budget:
            raise ValueError(f"budget={budget} exceeds the run's budget of {self.budget} queries")
        fooled = self.success & (self.first_success <= budget)
        return 1.0 - fooled.float().mean().item()
