"""Defenses by name, as declarative specs: ``build("aaa-linear", model)`` wraps any classifier; every defense is
an ``nn.Module`` mapping images in [0, 1] to logits, so they compose (``build("aaa-linear", build("unig", m))``).

Each :class:`DefenseSpec` says what the entry builds (its factory), the zoo variant of the model it needs (``at``,
``gf``), and whether it is calibrated on held-out data; its default hyperparameters per dataset and their sources
are in the protocol table (``workbench.protocol``). ``prepare`` is the one place that builds a defense, moves it to the model's device, calibrates it on
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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from workbench import checks, data, models, protocol, setting
from workbench.defenses.aaa import AAA
from workbench.defenses.dent import DENT
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.temperature import TemperatureScaling
from workbench.defenses.unig import UniG
from workbench.probes import reseed
from workbench.threat import model_device

@dataclass(frozen=True)
class DefenseSpec:
    """One registry entry.

    Attributes:
        factory: ``factory(model, **kwargs) -> nn.Module`` (with ``dataset=`` too where ``per_dataset``).
        variant: the zoo variant of the model the defense serves (``"at"``, ``"gf"``), or None.
        calibrate: whether ``prepare`` tunes it on held-out data (its ``calibrate(x, y)``).
        per_dataset: the factory takes the dataset's name (UniG: its reference images).

    The default hyperparameters per dataset and their sources live in the protocol table
    (``workbench.protocol``).
    """

    factory: Callable[..., nn.Module]
    variant: str | None = None
    calibrate: bool = False
    per_dataset: bool = False

    @property
    def source(self) -> str:
        return protocol.SOURCES[next(k for k, v in SPECS.items() if v is self)]


def _unig(model: nn.Module, dataset: str, root: str | None = None, **kw: Any) -> UniG:
    """UniG with ``reference`` images to pad single images: the first ten training images of ``dataset`` where
    they ship with the workbench, else the first ten held-out test images where those ship (CIFAR-10 (JPEG q75):
    never attacked, and the same with or without ``root``), else the first ten training images under ``root``;
    without any, single images are refused with a clear error."""
    entry = protocol.get(dataset)
    if "reference" not in kw:
        if data.ships(entry.data, "train") or (root is not None and not data.ships(entry.data, "test")):
            kw["reference"] = data.load(entry.data, "train", root=root).x[:10]
        elif data.ships(entry.data, "test"):
            kw["reference"] = data.load(entry.data, "test").x[entry.attacked:entry.attacked + 10]
    return UniG(model, **kw)


SPECS: dict[str, DefenseSpec] = {
    "none": DefenseSpec(lambda m: m),
    "aaa-linear": DefenseSpec(lambda m, **kw: AAA(m, "linear", **kw), calibrate=True),
    "aaa-sine": DefenseSpec(lambda m, **kw: AAA(m, "sine", **kw), calibrate=True),
    "unig": DefenseSpec(_unig, per_dataset=True),
    "rnd": DefenseSpec(InputNoise),
    "rnd-gf": DefenseSpec(InputNoise, variant="gf"),
    "snd": DefenseSpec(InputNoise),
    "snd-beta": DefenseSpec(InputNoise),
    "gcm": DefenseSpec(GCM),
    "temperature": DefenseSpec(TemperatureScaling, calibrate=True),
    "at": DefenseSpec(lambda m: m, variant="at"),
    "dent": DefenseSpec(DENT),
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


def _kwargs(name: str, dataset: str | None, model: nn.Module | str | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol's defaults of ``name`` with ``kwargs`` on top (and the dataset's name for factories that take
    it). The protocol is ``setting.resolve``'s of ``dataset`` and ``model``; where neither tells it, only a
    defense whose defaults are the same in every protocol (and that takes no dataset) is built: with those."""
    if is_import_path(name):
        return dict(kwargs)
    try:
        entry = setting.resolve(dataset, model=model, needed_by=f"defense {name!r}")
    except ValueError:
        shared = {repr(p.defense_kwargs(name)) for p in protocol.protocols()}
        if dataset is not None or spec(name).per_dataset or len(shared) > 1:
            raise
        return {**protocol.protocols()[0].defense_kwargs(name), **kwargs}
    extra = {"dataset": entry.name} if spec(name).per_dataset else {}
    return {**extra, **entry.defense_kwargs(name), **kwargs}


def check(name: str, dataset: str | None = None, /, **kwargs: Any) -> None:
    """Build the defense ``name`` with its defaults (``dataset``'s, where they depend on it) and ``kwargs`` around a
    tiny dummy classifier, so that bad arguments fail before any experiment runs (a ValueError naming the
    argument)."""
    _call(name, _dummy(), _kwargs(name, dataset, None, kwargs))


def build(name: str, model: nn.Module | str, *, dataset: str | None = None, weights: str | None = None,
          **kwargs: Any) -> nn.Module:
    """The defense ``name`` (a registry name or an import path) around ``model``, with the dataset's defaults and
    ``kwargs`` on top (the dataset: ``dataset``, else the zoo model's; ``setting.resolve``). ``model`` is a
    module, or a zoo name that is loaded (from ``weights``, a local checkpoint, where it ships none); a defense
    that serves a zoo variant (``at``, ``gf``) loads that variant of the named model: callers always pass the
    plain model's name."""
    if dataset is not None:
        protocol.get(dataset)
    suffix = variant(name)
    if suffix is not None:
        if not isinstance(model, str):
            raise ValueError(f"defense {name!r} serves the zoo's {suffix!r} variant of a model: pass the zoo name "
                             f"(e.g. build({name!r}, 'mnist-cnn')), or build a plain defense on your own module")
        model, weights = f"{model}-{suffix}", None  # the variant's own shipped weights
    if isinstance(model, str):
        model = models.load(model, weights=weights)
    return _call(name, model, _kwargs(name, dataset, model, kwargs))


def prepare(name: str, model: nn.Module | str, *, dataset: str | None = None, weights: str | None = None,
            held_out: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
            device: str | torch.device | None = None, **kwargs: Any) -> nn.Module:
    """The defense ready to evaluate: built (``build``), on ``device`` (default: the model's), calibrated on the
    ``held_out`` images and labels where its spec says so (or, for an import path, where it has a
    ``calibrate(x, y)``), and reseeded at ``seed``."""
    seed = checks.at_least("seed", seed, 0)
    defended = build(name, model, dataset=dataset, weights=weights, **kwargs)
    device = device or model_device(defended)
    defended = defended.to(device)
    wants = spec(name).calibrate if not is_import_path(name) else callable(getattr(defended, "calibrate", None))
    if wants:
        if held_out is None:
            raise ValueError(f"defense {name!r} is calibrated on held-out data: pass held_out=(x, y)")
        x, y = held_out
        defended.calibrate(x.to(device), y.to(device))
    return reseed(defended, seed)
