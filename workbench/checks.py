"""Argument checks shared by the whole package.

Every public entry point validates its inputs here, so that bad input fails early with a ``ValueError`` that
names the argument and the allowed values.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

NORMS = ("linf", "l2")


def choice(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise if ``value`` is not one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def positive(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number > 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value != value:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite, got {value!r}")


def at_least(name: str, value: int, low: int) -> None:
    """Raise unless ``value`` is an integer >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def images(name: str, x: object) -> torch.Tensor:
    """Check an image batch: a floating tensor of shape (N, C, H, W), finite, with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must have values in [0, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}]")
    return x


def labels(name: str, y: object, n: int, num_classes: int | None = None) -> torch.Tensor:
    """Check a label vector: an integer tensor of shape (n,) with values in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be an integer torch.Tensor of shape ({n},)")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the images, got {tuple(y.shape)}")
    if num_classes is not None and y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must hold class indices in [0, {num_classes}), got range "
                         f"[{y.min().item()}, {y.max().item()}]")
    return y.long()
