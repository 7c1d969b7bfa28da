"""Defenses by name, each declared once: ``build("aaa-linear", model)`` wraps any classifier; every defense is an
``nn.Module`` mapping images in [0, 1] to logits, so they compose (``build("aaa-linear", build("unig", m))``).

Each :class:`DefenseSpec` says what the entry builds (its factory), its default hyperparameters (for every dataset,
and per dataset settings where they differ) with their source, the zoo variant of the model it needs (``at``,
``gf``), and whether it is calibrated on held-out data. ``prepare`` is the one place that builds a defense, moves
it to the model's device, calibrates it on held-out images and reseeds it; notebooks, grids, the report and
``evaluate`` all call it.

Adding a defense is one file (its module) and one spec entry (``register``); ``tests/test_new_attack_and_defense.py``
does that with a toy one and runs ``evaluate`` on it. Bring your own defense without registering it: anywhere a
defense name is taken (``prepare``, grids, the CLIs), an import path ``"package.module:factory"`` works too;
``factory(model, **kwargs)`` must return the defended ``nn.Module``.

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

from workbench import checks, data, models, protocol, setting, stateful
from workbench.defenses.aaa import AAA, AAA_TAU
from workbench.defenses import blacklight
from workbench.defenses.blacklight import Blacklight
from workbench.defenses.denoise import JPEG, BitDepth, MedianSmoothing, ResizePad
from workbench.defenses.dent import DENT
from workbench.defenses.dld import DLD, DLD_HIGH_RATIO, DLD_S_STEP, DLD_TAU
from workbench.defenses.gated import BD_SIGMA, BD_THRESHOLD, GATED_SHARE, ConfidenceGated
from workbench.defenses.gcm import GCM
from workbench.defenses.knn_detection import K as KNN_K
from workbench.defenses.knn_detection import KNNDetection
from workbench.defenses.noise import InputNoise
from workbench.defenses.piha import PIHA
from workbench.defenses.rfd import RFD_DROP, FeatureNoise
from workbench.defenses.rls import RLS_HIGH, RLS_LOW, RandomLogitScaling
from workbench.defenses.squeeze import FeatureSqueezing
from workbench.defenses.temperature import TemperatureScaling
from workbench.defenses.unig import UniG
from workbench.probes import reseed
from workbench.protocol import Protocol
from workbench.registry import Registry
from workbench.threat import model_device


@dataclass(frozen=True)
class DefenseSpec:
    """One defense, declared once.

    Attributes:
        factory: ``factory(model, **kwargs) -> nn.Module`` (with ``dataset=`` too where ``per_dataset``).
        source: the paper and where its defaults come from.
        defaults: default keyword arguments on every dataset.
        settings: per dataset settings (``mnist``, ``cifar10``, ``imagenet``: a protocol's ``settings``) ->
            keyword arguments on top of ``defaults``; where given, a dataset without an entry is refused.
        variant: the zoo variant of the model the defense serves (``"at"``, ``"gf"``), or None.
        calibrate: whether ``prepare`` tunes it on held-out data (its ``calibrate(x, y)``).
        per_dataset: the factory takes the protocol entry as ``dataset=`` (UniG: its reference images).
    """

    factory: Callable[..., nn.Module]
    source: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variant: str | None = None
    calibrate: bool = False
    per_dataset: bool = False

    @property
    def depends_on_dataset(self) -> bool:
        """Whether its defaults or its factory need the dataset."""
        return bool(self.settings) or self.per_dataset


def _unig(model: nn.Module, dataset: Protocol, root: str | None = None, **kw: Any) -> UniG:
    """UniG with ``reference`` images to pad single images: the first ten training images of ``dataset`` where
    they ship with the workbench, else the first ten held-out test images where those ship (CIFAR-10 (JPEG q75):
    never attacked, and the same with or without ``root``), else the first ten training images under ``root``;
    without any, single images are refused with a clear error."""
    if "reference" not in kw:
        if data.ships(dataset, "train") or (root is not None and not data.ships(dataset, "test")):
            kw["reference"] = data.load(dataset, "train", root=root).x[:10]
        elif data.ships(dataset, "test"):
            kw["reference"] = data.load(dataset, "test").x[dataset.attacked:dataset.attacked + 10]
    return UniG(model, **kw)


def _knn_encoder(model: nn.Module, **kw: Any) -> KNNDetection:
    """Stateful Detection on the zoo's similarity encoder (trained here: the authors' weights are not available)."""
    return KNNDetection(model, models.load("cifar10-similarity-encoder"), **kw)


_NOISE = "RND (Qin et al. 2021): nu 0.02, 0.05 with Gaussian-augmentation fine-tuning"
_BUILT_IN: dict[str, DefenseSpec] = {
    "none": DefenseSpec(lambda m: m, "the undefended model"),
    "aaa-linear": DefenseSpec(lambda m, **kw: AAA(m, "linear", **kw),
                              f"AAA (Chen et al. 2022): tau {AAA_TAU:g}, alpha 1, beta 5, kappa 100, Adam lr 0.1 for "
                              "100 steps; T tuned on held-out data (15-bin ECE)", calibrate=True),
    "aaa-sine": DefenseSpec(lambda m, **kw: AAA(m, "sine", **kw),
                            f"AAA: tau {AAA_TAU:g}, alpha 0.7, beta 5, kappa 100", calibrate=True),
    "unig": DefenseSpec(_unig, "UniG (Wu et al.): CIFAR-10 delta 0.5, p 1, alpha 10; ImageNet delta 0.1, alpha 1; "
                        "MNIST: ImageNet's (CIFAR-10's cost 1.1 points of clean accuracy on the zoo CNN)",
                        settings={"mnist": {"delta": 0.1, "p": 1, "alpha": 1.0},
                                  "cifar10": {"delta": 0.5, "p": 1, "alpha": 10.0},
                                  "imagenet": {"delta": 0.1, "p": 1, "alpha": 1.0}}, per_dataset=True),
    "rnd": DefenseSpec(InputNoise, _NOISE, defaults={"sigma": 0.02}),
    "rnd-gf": DefenseSpec(InputNoise, _NOISE, defaults={"sigma": 0.05}, variant="gf"),
    "snd": DefenseSpec(InputNoise, "SND (Byun et al. 2022): sigma in 0.001-0.02", defaults={"sigma": 0.01}),
    "snd-beta": DefenseSpec(InputNoise, "SND Sec. 4.7: the noise of every query scaled by k ~ Beta(1, 1)",
                            defaults={"sigma": 0.02, "beta": (1.0, 1.0)}),
    "gcm": DefenseSpec(GCM, "GCM (Pei et al.): x + 1e-8 sin(1e20 x) at the input"),
    "temperature": DefenseSpec(TemperatureScaling, "Guo et al. 2017: T tuned by 15-bin ECE on held-out data",
                               calibrate=True),
    "at": DefenseSpec(lambda m: m, "adversarial training, the zoo's <model>-at (MNIST: PGD-7, Madry et al. 2018)",
                      variant="at"),
    "dent": DefenseSpec(DENT, "DENT as AAA / UniG ran it: 6 Adam steps, lr 1e-3, entropy, per query batch"),
    "ornd": DefenseSpec(InputNoise, "oRND, RND's output variant: Gaussian noise of std 1 on the logits (the RLS "
                        "paper's setting, Dashtbani et al. 2026)", defaults={"sigma": 0.0, "logit_noise": 1.0}),
    "rls": DefenseSpec(RandomLogitScaling, f"RLS (Dashtbani et al., TMLR 2026): logits times m ~ U[{RLS_LOW:g}, "
                       f"{RLS_HIGH:g}] per query (its code's defaults)"),
    "rfd": DefenseSpec(FeatureNoise, "RFD (Nguyen et al., ICLR 2024): Gaussian noise on the penultimate features, "
                       f"std calibrated on held-out data for a {100 * RFD_DROP:g}-point clean-accuracy drop (the "
                       "paper's 1-2 points)", calibrate=True),
    "gated-rnd": DefenseSpec(ConfidenceGated, "Closing the Gap (Zimmer et al., AAAI 2024): RND's input noise 0.02 "
                             f"on the queries below a confidence threshold, calibrated to gate {100 * GATED_SHARE:g}% "
                             "of held-out clean images (our rule: the paper tunes it per model)",
                             defaults={"input_sigma": 0.02}, calibrate=True),
    "bd": DefenseSpec(ConfidenceGated, f"Boundary Defense (Aithal and Li 2022): logit noise std {BD_SIGMA:g} below "
                      f"confidence {BD_THRESHOLD:g} (the paper's ImageNet setting, on every dataset)",
                      defaults={"threshold": BD_THRESHOLD, "logit_sigma": BD_SIGMA}),
    "dld": DefenseSpec(DLD, f"DLD, the Dashed Line Defense (AISTATS 2026): tau {DLD_TAU:g}, high_ratio "
                       f"{DLD_HIGH_RATIO:g}, s_step {DLD_S_STEP:g} (its code's main.py)"),
    # denoising (input transformations)
    "bit-depth": DefenseSpec(BitDepth, "Feature Squeezing (Xu et al. 2018): 1 bit MNIST, 5 CIFAR-10, 4 ImageNet",
                             settings={"mnist": {"bits": 1}, "cifar10": {"bits": 5}, "imagenet": {"bits": 4}}),
    "median": DefenseSpec(MedianSmoothing, "Feature Squeezing (Xu et al. 2018): 2x2 median smoothing",
                          defaults={"size": 2}),
    "jpeg": DefenseSpec(JPEG, "Guo et al. 2018 (Countering Adversarial Images using Input Transformations): "
                        "JPEG quality 75", defaults={"quality": 75}),
    "resize-pad": DefenseSpec(ResizePad, "Xie et al. 2018 (Mitigating Adversarial Effects Through Randomization): "
                              "random resize to [side, side + side/9) and random zero padding (ImageNet's 299 -> "
                              "331, scaled)"),
    # detection (the stateful ones keep a memory per account; the Oracle decides what a flag costs)
    "blacklight": DefenseSpec(Blacklight, "Blacklight (Li et al. 2022) as the OARS code runs it: pixels rounded to "
                              "steps of 50, SHA-256 of windows of 20 (ImageNet: 50, stride 25), top 50 digests, "
                              "match at half; MNIST: CIFAR-10's setting (ours)",
                              settings={"mnist": blacklight.CIFAR10_ARGS, "cifar10": blacklight.CIFAR10_ARGS,
                                        "imagenet": blacklight.IMAGENET_ARGS}),
    "piha": DefenseSpec(PIHA, "PIHA (Choi et al. 2023) as the OARS code runs it: block 7, Hamming threshold 0.05; "
                        "RGB images only (its hash is on the hue)",
                        settings={"cifar10": {"block": 7}, "imagenet": {"block": 7}}),
    "knn-pixels": DefenseSpec(KNNDetection, f"Stateful Detection (Chen et al. 2020) on raw pixels: k {KNN_K}, "
                              "threshold the 0.1th percentile of benign k-NN distances (calibrated on held-out "
                              "images)", defaults={"k": KNN_K}, calibrate=True),
    "knn-encoder": DefenseSpec(_knn_encoder, f"Stateful Detection (Chen et al. 2020) on its similarity encoder: k "
                               f"{KNN_K}, threshold the 0.1th percentile of benign k-NN distances (calibrated on "
                               "held-out images); the encoder has the authors' layers, trained here on CIFAR-10 "
                               "(workbench/zoo/README.md): CIFAR-10 only",
                               settings={"cifar10": {"k": KNN_K}}, calibrate=True),
    "feature-squeezing": DefenseSpec(FeatureSqueezing, "Feature Squeezing (Xu et al. 2018) as a detector: bit depth "
                                     "and 2x2 median, threshold at 5% false positives on held-out images (MNIST: 1 "
                                     "bit; CIFAR-10 and ImageNet: 5 bits)",
                                     settings={"mnist": {"bits": 1}, "cifar10": {"bits": 5}, "imagenet": {"bits": 5}},
                                     calibrate=True),
}


def _admit(name: str, spec: DefenseSpec) -> None:
    """A defense entry's own rules: a callable factory, a name that is no import path."""
    if not callable(spec.factory):
        raise ValueError(f"spec.factory must be callable: factory(model, **kwargs) -> nn.Module, got {spec.factory!r}")
    if ":" in name:
        raise ValueError(f"name must not contain ':' (that marks an import path), got {name!r}")


REGISTRY: Registry[DefenseSpec] = Registry("defense", DefenseSpec, _BUILT_IN, _admit)
SPECS = REGISTRY.specs
register, unregister, names, spec = REGISTRY.register, REGISTRY.unregister, REGISTRY.names, REGISTRY.spec


def variant(name: str) -> str | None:
    """The zoo variant suffix the defense ``name`` serves (``"at"``, ``"gf"``), or None for plain wrappers and
    import paths."""
    return None if is_import_path(name) else spec(name).variant


def applies(name: str, dataset: str | Protocol) -> bool:
    """Whether the registry defense ``name`` has defaults for ``dataset`` (a defense without per dataset settings
    applies everywhere; PIHA, which hashes colour, has none for MNIST)."""
    found = spec(name)
    return not found.settings or setting.resolve(dataset).settings in found.settings


def keeps_state(name: str) -> bool:
    """Whether the registry defense ``name`` is a detector (a ``workbench.stateful.Stateful``: it screens queries and
    may refuse them), found by building it around a tiny dummy classifier."""
    found = spec(name)
    if found.variant is not None or found.per_dataset:
        return False  # zoo variants and UniG wrap a classifier; none is a detector
    kwargs = _defaults(found, next(iter(found.settings), None), name) if found.settings else dict(found.defaults)
    return stateful.find(_call(found, _dummy(), kwargs, name)) is not None


def is_import_path(name: object) -> bool:
    return isinstance(name, str) and ":" in name


def factory(name: str) -> Callable[..., nn.Module]:
    """The factory of a registry name or of an import path ``"package.module:factory"``."""
    return _lookup(name).factory


def _lookup(name: str) -> DefenseSpec:
    """The spec of the registry name ``name``, looked up once per call that needs it; for an import path
    ``"package.module:factory"`` a spec of the imported factory (no defaults; calibrated where the defense it
    makes has a ``calibrate(x, y)``)."""
    if not is_import_path(name):
        return spec(name)
    module_name, _, attr = name.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"defense={name!r}: cannot import {attr!r} from {module_name!r} ({err}); give a registry "
                         f"name ({', '.join(names())}) or an import path 'package.module:factory'") from None
    if not callable(found):
        raise ValueError(f"defense={name!r} is not callable: a factory(model, **kwargs) returning an nn.Module")
    return DefenseSpec(found, f"imported from {name}")


def _dummy() -> nn.Module:
    """A tiny classifier with a normalization and a last linear layer: what every defense can wrap."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()


def _call(found: DefenseSpec, model: nn.Module, kwargs: Mapping[str, Any], name: str) -> nn.Module:
    try:
        defended = found.factory(model, **kwargs)
    except TypeError as err:
        raise ValueError(f"defense {name!r} got an unexpected argument: {err}") from None
    checks.module(f"the defense {name!r}", defended)
    return defended


def defaults(name: str, dataset: str | Protocol | None = None) -> dict[str, Any]:
    """The default keyword arguments of the registry defense ``name`` on ``dataset`` (a protocol's name or entry;
    needed only where the defaults depend on it)."""
    return _defaults(spec(name), dataset, name)


def _defaults(found: DefenseSpec, dataset: str | Protocol | None, name: str) -> dict[str, Any]:
    if not found.settings:
        return dict(found.defaults)
    if dataset is None:
        raise ValueError(f"defense {name!r} has per dataset defaults: give dataset= (one of "
                         f"{list(protocol.names())})")
    entry = setting.resolve(dataset, needed_by=f"defense {name!r}")
    if entry.settings not in found.settings:
        raise ValueError(f"defense {name!r} has no defaults for {entry.settings!r} (protocol {entry.name!r}); it has "
                         f"them for {sorted(found.settings)}: set the protocol's settings= to one of those, or pass "
                         "the defense's arguments")
    return {**found.defaults, **found.settings[entry.settings]}


def _kwargs(found: DefenseSpec, dataset: str | Protocol | None, model: nn.Module | str | None,
            kwargs: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The defaults of the spec ``found`` with ``kwargs`` on top (and the protocol entry for factories that take
    it). The protocol is ``setting.resolve``'s of ``dataset`` and ``model``, asked for only where the defense
    depends on the dataset."""
    if not found.depends_on_dataset:
        return {**found.defaults, **kwargs}
    entry = setting.resolve(dataset, model=model, needed_by=f"defense {name!r}")
    extra = {"dataset": entry} if found.per_dataset else {}
    return {**extra, **_defaults(found, entry, name), **kwargs}


def check(name: str, dataset: str | Protocol | None = None, /, **kwargs: Any) -> None:
    """Build the defense ``name`` with its defaults (``dataset``'s, where they depend on it) and ``kwargs`` around a
    tiny dummy classifier, so that bad arguments fail before any experiment runs (a ValueError naming the
    argument)."""
    found = _lookup(name)
    _call(found, _dummy(), _kwargs(found, dataset, None, kwargs, name), name)


def build(name: str, model: nn.Module | str, *, dataset: str | Protocol | None = None,
          weights: str | None = None, **kwargs: Any) -> nn.Module:
    """The defense ``name`` (a registry name or an import path) around ``model``, with the dataset's defaults and
    ``kwargs`` on top (the dataset: ``dataset``, else the zoo model's; ``setting.resolve``). ``model`` is a
    module, or a zoo name that is loaded (from ``weights``, a local checkpoint, where it ships none); a defense
    that serves a zoo variant (``at``, ``gf``) loads that variant of the named model: callers always pass the
    plain model's name."""
    return _build(_lookup(name), model, dataset, weights, kwargs, name)


def _build(found: DefenseSpec, model: nn.Module | str, dataset: str | Protocol | None, weights: str | None,
           kwargs: Mapping[str, Any], name: str) -> nn.Module:
    if isinstance(dataset, str):
        dataset = setting.resolve(dataset)  # an unknown name fails here, before any model loads
    if found.variant is not None:
        if not isinstance(model, str):
            raise ValueError(f"defense {name!r} serves the zoo's {found.variant!r} variant of a model: pass the zoo "
                             f"name (e.g. build({name!r}, 'mnist-cnn')), or build a plain defense on your own module")
        model, weights = f"{model}-{found.variant}", None  # the variant's own shipped weights
    if isinstance(model, str):
        model = models.load(model, weights=weights)
    return _call(found, model, _kwargs(found, dataset, model, kwargs, name), name)


def prepare(name: str, model: nn.Module | str, *, dataset: str | Protocol | None = None,
            weights: str | None = None, held_out: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
            device: str | torch.device | None = None, **kwargs: Any) -> nn.Module:
    """The defense ready to evaluate: built (``build``), on ``device`` (default: the model's), calibrated on the
    ``held_out`` images and labels where its spec says so (or, for an import path, where it has a
    ``calibrate(x, y)``), and reseeded at ``seed``."""
    seed = checks.at_least("seed", seed, 0)
    found = _lookup(name)
    defended = _build(found, model, dataset, weights, kwargs, name)
    device = device or model_device(defended)
    defended = defended.to(device)
    if found.calibrate or (is_import_path(name) and callable(getattr(defended, "calibrate", None))):
        if held_out is None:
            raise ValueError(f"defense {name!r} is calibrated on held-out data: pass held_out=(x, y)")
        x, y = held_out
        defended.calibrate(x.to(device), y.to(device))
    return reseed(defended, seed)
