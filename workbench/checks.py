"""Argument checks shared by the whole package.

Every public entry point validates its inputs here, so that bad input fails early with a ``ValueError`` that
names the argument and the allowed values. Valid numbers are accepted in any numeric type (Python, numpy, 0-d
torch tensors) and returned as plain Python numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

NORMS = ("linf", "l2")


def choice(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise if ``value`` is not one of ``allowed``."""
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except (TypeError, ValueError, RuntimeError):  # e.g. a tensor or an unhashable value
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def _scalar(value: object) -> object:
    """A 0-d tensor or a numpy scalar as the Python number it holds; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def number(name: str, value: object) -> float:
    """``value`` as a float: an int, float, numpy or 0-d tensor number (not a bool)."""
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(v)


def positive(name: str, value: object) -> float:
    """``value`` as a float; raise unless it is a finite number > 0."""
    v = number(name, value)
    if not v > 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def non_negative(name: str, value: object) -> float:
    """``value`` as a float; raise unless it is a finite number >= 0."""
    v = number(name, value)
    if not v >= 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def integer(name: str, value: object) -> int:
    """``value`` as an int: an int, numpy integer or 0-d integer tensor (not a bool, not a float)."""
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return v


def at_least(name: str, value: object, low: int) -> int:
    """``value`` as an int; raise unless it is an integer >= ``low``."""
    try:
        v = integer(name, value)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= {low}, got {type(value).__name__} {value!r}") from None
    if v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return v


def flag(name: str, value: object) -> bool:
    """``value`` as a bool; raise unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def sequence(name: str, value: object) -> tuple:
    """One number or a sequence of them (list, tuple, numpy array, 1-d tensor) as a tuple of Python numbers."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist()
    if isinstance(_scalar(value), (int, float)):
        return (_scalar(value),)
    try:
        return tuple(_scalar(v) for v in value)
    except TypeError:
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {type(value).__name__} "
                         f"{value!r}") from None


def budgets(name: str, value: object, strict: bool = True) -> tuple[int, ...]:
    """Query budgets: one integer or a sequence (list, tuple, numpy array, 1-d tensor) of positive integers,
    strictly increasing (``strict=False``: in any order, returned sorted without repeats); a tuple of ints."""
    out = tuple(at_least(f"{name} entries", b, 1) for b in sequence(name, value))
    if not out:
        raise ValueError(f"{name} must hold at least one budget, got {value!r}")
    if not strict:
        return tuple(sorted(set(out)))
    if any(b >= a for b, a in zip(out, out[1:])):
        raise ValueError(f"{name}={list(out)} must be strictly increasing")
    return out


def images(name: str, x: object) -> torch.Tensor:
    """Check an image batch: a floating tensor of shape (N, C, H, W), finite, with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        hint = " (8-bit images: pass x.float() / 255)" if x.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}{hint}")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must have values in [0, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}]")
    return x


def labels(name: str, y: object, n: int, num_classes: int | None = None) -> torch.Tensor:
    """Check a label vector: an integer tensor of shape (n,) with values in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        got = f"dtype {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name} must be an integer torch.Tensor of shape ({n},), got {got}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the images, got {tuple(y.shape)}")
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {y.min().item()}")
    if num_classes is not None and y.numel() and y.max() >= num_classes:
        raise ValueError(f"{name} must hold class indices in [0, {num_classes}), got range "
                         f"[{y.min().item()}, {y.max().item()}]")
    return y.long()


def module(name: str, model: object) -> None:
    """Raise unless ``model`` is a torch.nn.Module (a plain function is refused: wrap it in a Module)."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module mapping images to logits, got {type(model).__name__}; "
                         f"wrap a function f in a Module whose forward returns f(x)")
