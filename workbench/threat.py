"""The bottom layer: the threat model (:class:`Threat`: the norm and eps, held once). Norms, the eps-balls (projection onto them, membership), the steps taken
inside them (unit directions, sign or normalized ascent steps), 8-bit quantization that stays in the ball, and the
device a model lives on. Everything is batched per image; below it there is only ``checks`` (argument validation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn

from workbench import checks
from workbench.checks import NORMS

TOLERANCE = 1e-6  # float32 slack when testing membership


@dataclass(frozen=True)
class Threat:
    """The threat model: the norm (``"linf"`` or ``"l2"``) and the radius ``eps`` of the ball every query stays
    in, checked once here. An attack holds one; the Oracle fixes it and its query handle carries the same object,
    which is where an attack reads eps (``Session.eps``)."""

    norm: str
    eps: float

    def __post_init__(self) -> None:
        checks.choice("norm", self.norm, NORMS)
        object.__setattr__(self, "eps", checks.positive("eps", self.eps))

    def __iter__(self) -> Iterator[str | float]:
        """``norm, eps = threat``."""
        return iter((self.norm, self.eps))

    def __repr__(self) -> str:
        return f"Threat({self.norm!r}, eps={self.eps:g})"


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per image, the l-inf or l2 norm of ``delta`` (N, ...)."""
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
    scale = (eps / norms(delta, norm).clamp_min(1e-12)).clamp(max=1.0)
    return (x0 + delta * scale.view(-1, *([1] * (x.ndim - 1)))).clamp(0.0, 1.0)


def inside(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str, tol: float = TOLERANCE) -> torch.Tensor:
    """Per image: whether ``x`` lies in the eps-ball around ``x0`` (up to ``tol``) and in [0, 1]."""
    low, high = torch.aminmax(x.flatten(1), dim=1)  # one pass for both box bounds (this runs on every query)
    return (low >= -tol) & (high <= 1 + tol) & (norms(x - x0, norm) <= eps * (1 + tol) + tol)


def quantize8(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Round images to the nearest 8-bit level (k/255) without leaving the eps-ball around ``x0`` or [0, 1].

    Rounding to the nearest level can leave the ball by up to half a level; where it would, the coordinate is
    rounded towards ``x0`` instead. When ``x0`` lies on the 8-bit grid (as real images do), that never increases
    ``|x - x0|`` in any coordinate, so the result stays in the l-inf and the l2 ball and on the grid. For an
    off-grid ``x0`` a final projection keeps the ball exact (those coordinates may then be off-grid).
    """
    checks.choice("norm", norm, NORMS)
    eps = checks.positive("eps", eps)
    q = torch.round(x * 255.0) / 255.0
    towards = torch.where(x >= x0, torch.floor(x * 255.0), torch.ceil(x * 255.0)) / 255.0
    outside = ~inside(q, x0, eps, norm)
    q = torch.where(outside.view(-1, *([1] * (x.ndim - 1))), towards, q).clamp(0.0, 1.0)
    return project(q, x0, eps, norm)
