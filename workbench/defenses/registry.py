"""Defenses by name, as declarative specs: ``build("aaa-linear", model)`` wraps any classifier; every defense is
an ``nn.Module`` mapping images in [0, 1] to logits, so they compose (``build("aaa-linear", build("unig", m))``).

Each :class:`DefenseSpec` says what the entry builds (its factory), its default hyperparameters per dataset with
their source, the zoo variant of the model it needs (``at``, ``gf``), and whether it is calibrated on held-out
data. ``prepare`` is the one place that builds a defense, moves it to the model's device, calibrates it on
held-out images and reseeds it; notebooks, grids, the report and ``evaluate`` all call it.

Bring your own defense: anywhere a defense name is taken (``prepare``, grids, the CLIs), an import path
``"package.module:factory"`` works too; ``factory(model, **kwargs)`` must return the defended ``nn.Module``.

Example::

    >>> defended = prepare("aaa-linear", models.load("mnist-cnn"), held_out=test[500:])
    >>> robust = build("aaa-linear", "mnist-cnn-at")          # AAA on the adversarially trained model
    >>> mine = prepare("my_package.defenses:rounded", model)  # your own factory
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from workbench import checks
from workbench.defenses.aaa import AAA
from workbench.defenses.dent import DENT
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.temperature import TemperatureScaling
from workbench.defenses.unig import UniG
from workbench.probes import reseed
from workbench.threat import model_device

DATASETS = ("mnist", "cifar10", "imagenet")
TRAIN_SPLITS = {"mnist": "mnist5k", "cifar10": "cifar10", "imagenet": "imagenet"}


@dataclass(frozen=True)
class DefenseSpec:
    """One registry entry.

    Attributes:
        factory: ``factory(model, **kwargs) -> nn.Module``.
        defaults: keyword arguments per dataset (a dataset not listed gets none: the factory's own defaults).
        source: where the defaults come from.
        variant: the zoo variant of the model the defense serves (``"at"``, ``"gf"``), or None.
        calibrate: whether ``prepare`` tunes it on held-out data (its ``calibrate(x, y)``).
    """

    factory: Callable[..., nn.Module]
    source: str
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variant: str | None = None
    calibrate: bool = False

    def kwargs(self, dataset: str) -> dict[str, Any]:
        return dict(self.defaults.get(dataset, {}))


def _unig(model: nn.Module, dataset: str = "mnist", root: str | None = None, **kw: Any) -> UniG:
    """UniG with ``reference`` images to pad single images: the first ten training images of ``dataset`` (the
    embedded MNIST-5k, or CIFAR-10 / ImageNet when their ``root`` is given; without it single images are
    refused with a clear error)."""
    if "reference" not in kw and (dataset in ("mnist", "mnist5k") or root is not None):
        from workbench import data

        kw["reference"] = data.load(TRAIN_SPLITS.get(dataset, dataset), "train", root=root).x[:10]
    return UniG(model, **kw)


_NOISE_SOURCE = "RND (Qin et al. 2021): nu 0.02, 0.05 with Gaussian-augmentation fine-tuning"
SPECS: dict[str, DefenseSpec] = {
    "none": DefenseSpec(lambda m: m, "the undefended model"),
    "aaa-linear": DefenseSpec(lambda m, **kw: AAA(m, "linear", **kw), "AAA (Chen et al. 2022): tau 6, alpha 1, "
                              "beta 5, kappa 100, lr 0.1; T tuned on held-out data", calibrate=True),
    "aaa-sine": DefenseSpec(lambda m, **kw: AAA(m, "sine", **kw), "AAA: tau 6, alpha 0.7, beta 5, kappa 100",
                            calibrate=True),
    "unig": DefenseSpec(_unig, "UniG (Wu et al.): CIFAR-10 delta 0.5, p 1, alpha 10; ImageNet delta 0.1, alpha 1. "
                        "MNIST uses ImageNet's setting: CIFAR's cost 1.1 points of clean accuracy on the zoo CNN",
                        {"mnist": {"delta": 0.1, "p": 1, "alpha": 1.0, "dataset": "mnist"},
                         "cifar10": {"delta": 0.5, "p": 1, "alpha": 10.0, "dataset": "cifar10"},
                         "imagenet": {"delta": 0.1, "p": 1, "alpha": 1.0, "dataset": "imagenet"}}),
    "rnd": DefenseSpec(InputNoise, _NOISE_SOURCE, {d: {"sigma": 0.02} for d in DATASETS}),
    "rnd-gf": DefenseSpec(InputNoise, _NOISE_SOURCE, {d: {"sigma": 0.05} for d in DATASETS}, variant="gf"),
    "snd": DefenseSpec(InputNoise, "SND (Byun et al. 2022): sigma in 0.001-0.02", {d: {"sigma": 0.01} for d in DATASETS}),
    "snd-beta": DefenseSpec(InputNoise, "SND Sec. 4.7: the noise of every query scaled by k ~ Beta(1, 1)",
                            {d: {"sigma": 0.02, "beta": (1.0, 1.0)} for d in DATASETS}),
    "gcm": DefenseSpec(GCM, "GCM (Pei et al.): x + 1e-8 sin(1e20 x) at the input"),
    "temperature": DefenseSpec(TemperatureScaling, "Guo et al. 2017: T tuned by 15-bin ECE on held-out data",
                               calibrate=True),
    "at": DefenseSpec(lambda m: m, "PGD-7 adversarial training (Madry et al. 2018), the zoo's <model>-at",
                      variant="at"),
    "dent": DefenseSpec(DENT, "DENT as AAA / UniG ran it: 6 Adam steps, lr 1e-3, entropy, per query batch"),
}


def names() -> tuple[str, ...]:
    """The registered defense names."""
    return tuple(SPECS)


def spec(name: str) -> DefenseSpec:
    """The registry entry of ``name``."""
    checks.choice("name", name, names())
    return SPECS[name]


def variant(name: str) -> str | None:
    """The zoo variant suffix the defense ``name`` serves (``"at"``, ``"gf"``), or None for plain wrappers and
    import paths."""
    return None if is_import_path(name) else spec(name).variant


def is_import_path(name: object) -> bool:
    return isinstance(name, str) and ":" in name


def factory(name: str) -> Callable[..., nn.Module]:
    """The factory of a registry name or of an import path ``"package.module:factory"``."""
    if not is_import_path(name):
        return spec(name).factory
    module_name, _, attr = name.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"defense={name!r}: cannot import {attr!r} from {module_name!r} ({err}); give a registry "
                         f"name ({', '.join(names())}) or an import path 'package.module:factory'") from None
    if not callable(found):
        raise ValueError(f"defense={name!r} is not callable: a factory(model, **kwargs) returning an nn.Module")
    return found


def _dummy() -> nn.Module:
    """A tiny classifier with a normalization and a last linear layer: what every defense can wrap."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()


def _call(name: str, model: nn.Module, kwargs: Mapping[str, Any]) -> nn.Module:
    try:
        defended = factory(name)(model, **kwargs)
    except TypeError as err:
        raise ValueError(f"defense {name!r} got an unexpected argument: {err}") from None
    checks.module(f"the defense {name!r}", defended)
    return defended


def check(name: str, dataset: str = "mnist", /, **kwargs: Any) -> None:
    """Build the defense ``name`` with its defaults and ``kwargs`` around a tiny dummy classifier, so that bad
    arguments fail before any experiment runs (a ValueError naming the argument)."""
    defaults = {} if is_import_path(name) else spec(name).kwargs(dataset)
    _call(name, _dummy(), {**defaults, **kwargs})


def build(name: str, model: nn.Module | str, *, dataset: str = "mnist", **kwargs: Any) -> nn.Module:
    """The defense ``name`` (a registry name or an import path) around ``model`` (a module, or a zoo name that is
    loaded), with the dataset's defaults and ``kwargs`` on top."""
    from workbench import models

    checks.choice("dataset", dataset, DATASETS)
    suffix = variant(name)
    if suffix is not None:
        if not isinstance(model, str):
            raise ValueError(f"defense {name!r} serves the zoo's {suffix!r} variant of a model: pass the zoo name "
                             f"(e.g. build({name!r}, 'mnist-cnn')), or build a plain defense on your own module")
        model = f"{model}-{suffix}"
    if isinstance(model, str):
        model = models.load(model)
    defaults = {} if is_import_path(name) else spec(name).kwargs(dataset)
    return _call(name, model, {**defaults, **kwargs})


def prepare(name: str, model: nn.Module | str, *, dataset: str = "mnist",
            held_out: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
            device: str | torch.device | None = None, **kwargs: Any) -> nn.Module:
    """The defense ready to evaluate: built (``build``), on ``device`` (default: the model's), calibrated on the
    ``held_out`` images and labels where its spec says so (or, for an import path, where it has a
    ``calibrate(x, y)``), and reseeded at ``seed``."""
    seed = checks.at_least("seed", seed, 0)
    defended = build(name, model, dataset=dataset, **kwargs)
    device = device or model_device(defended)
    defended = defended.to(device)
    wants = spec(name).calibrate if not is_import_path(name) else callable(getattr(defended, "calibrate", None))
    if wants:
        if held_out is None:
            raise ValueError(f"defense {name!r} is calibrated on held-out data: pass held_out=(x, y)")
        x, y = held_out
        defended.calibrate(x.to(device), y.to(device))
    return reseed(defended, seed)
