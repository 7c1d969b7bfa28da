"""The eps-balls of the threat models: projection onto them, membership tests, and the steps taken inside them
(unit directions, sign or normalized ascent steps), batched per image."""

from __future__ import annotations

import torch

TOLERANCE = 1e-6  # float32 slack when testing membership


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def unit(t: torch.Tensor) -> torch.Tensor:
    """Each image of ``t`` scaled to l2 norm 1 (an all-zero image stays zero)."""
    return t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def ascent_step(x: torch.Tensor, g: torch.Tensor, lr: float, norm: str) -> torch.Tensor:
    """Move ``x`` by ``lr`` along ``g``: its sign (l-inf) or its direction (l2)."""
    return x + lr * (g.sign() if norm == "linf" else unit(g))


def project(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Closest point to ``x`` (l-inf: exactly; l2: by radial scaling, then the box) in the eps-ball around ``x0``
    and in [0, 1]. Clamping to the box after the l2 scaling never increases |x - x0| since x0 is in the box."""
    if norm == "linf":
        return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)
    delta = x - x0
    scale = (eps / _norms(delta, norm).clamp_min(1e-12)).clamp(max=1.0)
    return (x0 + delta * scale.view(-1, *([1] * (x.ndim - 1)))).clamp(0.0, 1.0)


def inside(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str, tol: float = TOLERANCE) -> torch.Tensor:
    """Per image: whether ``x`` lies in the eps-ball around ``x0`` (up to ``tol``) and in [0, 1]."""
    flat = x.flatten(1)
    in_box = (flat >= -tol).all(1) & (flat <= 1 + tol).all(1)
    return in_box & (_norms(x - x0, norm) <= eps * (1 + tol) + tol)
