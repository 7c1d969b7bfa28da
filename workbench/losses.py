"""Losses on scores, batched: the margin an attacker minimizes, the label-free margin AAA reshapes, and the DLR
ratio no shift or positive rescaling of the scores can change."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margin of the true class: ``s[y] - max_{j != y} s[j]`` per row; negative means misclassified."""
    true = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def top2_margin(scores: torch.Tensor) -> torch.Tensor:
    """Label-free margin: top-1 minus top-2 score per row (always >= 0)."""
    top = scores.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def targeted_margin(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``max_{j != t} s[j] - s[t]``: negative once the target class ``t`` wins."""
    return -margin(scores, target)


def cross_entropy(scores: torch.Tensor, target: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
    """Per-row cross-entropy of the target class, from logits or from probabilities."""
    if probabilities:
        return -scores.gather(1, target[:, None]).squeeze(1).clamp_min(1e-12).log()
    return F.cross_entropy(scores, target, reduction="none")


def dlr(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The difference-of-logits ratio of Croce and Hein (ICML 2020, AutoAttack), as a loss to minimize:
    ``(s[y] - max_{j != y} s[j]) / (s_pi1 - s_pi3)`` with ``s_pi`` the scores sorted in decreasing order. Adding a
    constant to every score or multiplying them all by the same positive number leaves it unchanged; negative
    means misclassified. Needs at least three classes."""
    top = scores.topk(3, dim=1).values
    return margin(scores, y) / (top[:, 0] - top[:, 2]).clamp_min(1e-12)


def targeted_dlr(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The targeted DLR ratio (Croce and Hein 2020) to minimize: ``(max_{j != t} s[j] - s[t]) /
    (s_pi1 - (s_pi3 + s_pi4) / 2)``; negative once the target wins. Needs at least four classes."""
    top = scores.topk(4, dim=1).values
    return targeted_margin(scores, target) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2).clamp_min(1e-12)
