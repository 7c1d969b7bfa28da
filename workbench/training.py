"""Training losses of the zoo's robust variants: PGD adversarial training (Madry et al. 2018) and the
Gaussian-augmentation fine-tuning of RND-GF (Qin et al. 2021: the loss of the expectation over noise).

Each is a ``step(model, x, y) -> loss`` for ``models.train``; randomness comes from torch's global generator,
which ``models.train`` seeds, so the trained weights are reproducible.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.attacks.whitebox import pgd


def adversarial_step(eps: float = 0.3, steps: int = 7) -> callable:
    """PGD adversarial training: the cross-entropy on PGD-``steps`` examples (l-inf ``eps``, random start,
    step 2.5 * eps / steps), crafted with the model in eval mode (batch-norm statistics untouched)."""

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.eval()
        seed = int(torch.randint(2 ** 31 - 1, ()))
        x_adv = pgd(model, x, y, eps=eps, steps=steps, seed=seed, progress=False, freeze=False)
        model.train()
        return F.cross_entropy(model(x_adv), y)

    return step


def gaussian_step(sigma: float = 0.05, draws: int = 4) -> callable:
    """Gaussian augmentation with the loss of the expectation over noise: the negative log of the mean, over
    ``draws`` noisy copies (std ``sigma``, clipped to [0, 1]), of the true-class probability."""

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        noisy = (x.repeat(draws, 1, 1, 1) + sigma * torch.randn(draws * len(x), *x.shape[1:])).clamp(0.0, 1.0)
        probs = F.softmax(model(noisy), 1).view(draws, len(x), -1).mean(0)
        return F.nll_loss(probs.clamp_min(1e-12).log(), y)

    return step
