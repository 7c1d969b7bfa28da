"""Defenses by name: ``build("aaa-linear", model, **kw)`` wraps any classifier; every defense is an
``nn.Module`` mapping images in [0, 1] to logits, so they compose (``build("aaa-linear", build("unig", m))``).

Names and what they build (keyword arguments override the defaults shown):
    none          the model itself
    aaa-linear    AAA(model, "linear")                     aaa-sine   AAA(model, "sine")
    unig          UniG(model, delta=0.1, p=1, alpha=1)      (MNIST choice; CIFAR-10: delta 0.5, alpha 10)
    rnd           InputNoise(model, sigma=0.02)             rnd-gf     InputNoise(<model>-gf, sigma=0.05)
    snd           InputNoise(model, sigma=0.01)             snd-beta   InputNoise(model, sigma=0.02, beta=(1, 1))
    gcm           GCM(model)                                temperature  TemperatureScaling(model)
    at            the zoo's adversarially trained <model>-at
    dent          DENT(model)

``rnd-gf`` and ``at`` need a fine-tuned variant of the model: pass the zoo name (``build("at", "mnist-cnn")``
loads ``mnist-cnn-at``), or pass your own fine-tuned module and build ``rnd`` / ``none`` on it.
UniG pads single-image batches with ``reference`` images: ``build`` gives it the first ten training images of
``dataset`` (default "mnist5k") unless ``reference`` is passed.
Calibration (AAA, temperature scaling) is a separate step: ``build(...).calibrate(x_val, y_val)``.

Example::

    >>> defended = build("aaa-linear", models.load("mnist-cnn")).calibrate(*test[500:])
    >>> robust = build("aaa-linear", "mnist-cnn-at")       # AAA on the adversarially trained model
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from workbench import checks
from workbench.defenses.aaa import AAA
from workbench.defenses.dent import DENT
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.temperature import TemperatureScaling
from workbench.defenses.unig import UniG

RANDOMIZED = ("unig", "rnd", "rnd-gf", "snd", "snd-beta", "dent")  # outputs vary with noise or with the batch


def _unig(model: nn.Module, dataset: str = "mnist5k", **kw: Any) -> UniG:
    if "reference" not in kw:
        from workbench import data

        kw["reference"] = data.load(dataset, "train").x[:10]
    return UniG(model, **{"delta": 0.1, "p": 1, "alpha": 1.0, **kw})


DEFENSES: dict[str, tuple[Callable[..., nn.Module], str | None]] = {
    "none": (lambda m: m, None),
    "aaa-linear": (lambda m, **kw: AAA(m, "linear", **kw), None),
    "aaa-sine": (lambda m, **kw: AAA(m, "sine", **kw), None),
    "unig": (_unig, None),
    "rnd": (lambda m, **kw: InputNoise(m, **{"sigma": 0.02, **kw}), None),
    "rnd-gf": (lambda m, **kw: InputNoise(m, **{"sigma": 0.05, **kw}), "gf"),
    "snd": (lambda m, **kw: InputNoise(m, **{"sigma": 0.01, **kw}), None),
    "snd-beta": (lambda m, **kw: InputNoise(m, **{"sigma": 0.02, "beta": (1.0, 1.0), **kw}), None),
    "gcm": (lambda m, **kw: GCM(m, **kw), None),
    "temperature": (lambda m, **kw: TemperatureScaling(m, **kw), None),
    "at": (lambda m: m, "at"),
    "dent": (lambda m, **kw: DENT(m, **kw), None),
}


def names() -> tuple[str, ...]:
    """The registered defense names."""
    return tuple(DEFENSES)


def variant(name: str) -> str | None:
    """The zoo variant suffix the defense ``name`` serves (``"at"``, ``"gf"``), or None for plain wrappers."""
    checks.choice("name", name, names())
    return DEFENSES[name][1]


def _dummy() -> nn.Module:
    """A tiny classifier with a normalization and a last linear layer: what every defense can wrap."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()


def check(name: str, **kwargs: Any) -> None:
    """Build the defense ``name`` with ``kwargs`` around a tiny dummy classifier, so that bad arguments fail
    before any experiment runs (a ValueError naming the argument)."""
    checks.choice("name", name, names())
    try:
        DEFENSES[name][0](_dummy(), **kwargs)
    except TypeError as err:
        raise ValueError(f"defense {name!r} got an unexpected argument: {err}") from None


def build(name: str, model: nn.Module | str, **kwargs: Any) -> nn.Module:
    """The defense ``name`` around ``model`` (a module, or a zoo name that is loaded)."""
    from workbench import models

    checks.choice("name", name, names())
    factory, variant = DEFENSES[name]
    if variant is not None:
        if not isinstance(model, str):
            raise ValueError(f"defense {name!r} serves the zoo's {variant!r} variant of a model: pass the zoo name "
                             f"(e.g. build({name!r}, 'mnist-cnn')), or build a plain defense on your own module")
        model = f"{model}-{variant}"
    if isinstance(model, str):
        model = models.load(model)
    try:
        return factory(model, **kwargs)
    except TypeError as err:
        raise ValueError(f"defense {name!r} got an unexpected argument: {err}") from None
