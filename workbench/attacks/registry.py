"""Attacks by name, each declared once: a :class:`AttackSpec` says the attack's class, its settings per dataset and
norm with their source, and which suites of ``evaluate`` it belongs to.

Names: ``square``, ``square-op``, ``square-bi``, ``square-switch``, ``square-dlr`` (Square on the DLR ratio, which
no positive rescaling of the logits changes), ``simba`` (DCT basis), ``simba-pixel``, ``signhunter``, ``nes``,
``bandits``, ``oars-square``, ``oars-nes``, ``square-undash`` (DLD's own adaptive attack). ``build`` starts from
the spec's settings for the protocol's ``settings`` (the dataset whose attack settings a protocol takes:
``mnist``, ``cifar10`` or ``imagenet``), adds the protocol's eps for the norm, applies overrides, and wraps the
attack in :class:`~workbench.attacks.eot.EOT` when ``eot`` > 1.

The suites, in the order they are run and tabled (the registry's order, as the papers list the attacks):
``standard`` (every defense faces them), ``post-processing`` (AAA's adaptive attacks and the RLS paper's switch
rule, for deterministic defenses that keep every prediction), ``keeps-predictions`` (the scale-free Square, for any
defense that changes the scores but keeps every prediction, randomized or not: RLS), ``eot`` (under expectation
over transformation, for randomized defenses) and ``stateful`` (OARS's adaptive Square and NES, for defenses that
refuse or answer by history: the stateful detectors). Beyond the suites, an attack written against one defense
(``AttackSpec.against``) runs in that defense's evaluation only: ``square-undash`` against ``dld``.

Sources of the settings: AAA Table 11 and the reference implementations (Square: p_init 0.05 l-inf, 0.1 l2;
SimBA: step 0.2, the DCT block the whole image on CIFAR-10, 32 on ImageNet; NES CIFAR l-inf: sigma 0.01, lr 2/255,
q 20; ImageNet l-inf: sigma 0.1, lr 0.02, q 100; CIFAR l2: sigma 0.01, lr 64/255, q 4; ImageNet l2: sigma 0.1,
lr 2.0, q 50; Bandits l-inf: fd_eta 0.1, image_lr 0.01, online_lr 100, exploration 1.0, prior 50; l2: fd_eta 0.01,
image_lr 0.5, online_lr 0.1, exploration 0.01). MNIST (l-inf 0.3, l2 2.0) is the workbench's own setting:

- Square, SimBA, SignHunter: the papers' defaults (SimBA's DCT block is the whole 28x28 image, as CIFAR-10 used
  the whole 32x32 one).
- NES l-inf: lr = eps / 4 = 0.075, sigma 0.01, q 20: CIFAR-10's setting with lr scaled by eps (2/255 is a quarter
  of 8/255); l2: lr = eps / 4 = 0.5, sigma 0.01, q 4 (CIFAR's 64/255 is about a quarter of 1.0).
- Bandits l-inf: prior 7x7 (tiles of 4 pixels, as ImageNet's 50x50 prior tiles 224 pixels by 4.5) and online_lr
  0.1 (the l2 value): with ImageNet's online_lr 100 a prior this small saturates at exactly +-1 within a few steps
  and never moves again (robust accuracy stalled near 48% after 1000 queries on 100 test images). l2: the papers'
  l2 setting, prior 7.

Adding an attack is one file (a subclass of :class:`~workbench.attacks.base.Attack`) and one spec entry
(``register``); ``tests/test_new_attack_and_defense.py`` does that with a toy one and runs ``evaluate`` on it.

Example::

    >>> attack = build("nes", dataset="mnist", norm="linf", seed=1)
    >>> attack = build("square", dataset="mnist", eot=5)   # EOT(Square, m=5)
    >>> settings("nes", "mnist")
    {'norm': 'linf', 'eps': 0.3, 'sigma': 0.01, 'lr': 0.075, 'pairs': 20}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench import checks, protocol
from workbench.attacks.bandits import Bandits
from workbench.attacks.base import Attack
from workbench.attacks.eot import EOT
from workbench.attacks.nes import NES
from workbench.attacks.oars import OARSSquare
from workbench.attacks.oars_nes import OARSNES
from workbench.attacks.signhunter import SignHunter
from workbench.attacks.simba import SimBA
from workbench.attacks.square import Square
from workbench.attacks.square_bi import SquareBi
from workbench.attacks.square_op import SquareOp
from workbench.attacks.square_switch import SquareSwitch
from workbench.attacks.square_undash import SquareUndash
from workbench.protocol import Protocol
from workbench.registry import Registry

SUITES = ("standard", "post-processing", "keeps-predictions", "eot", "stateful")

Settings = Mapping[str, Mapping[str, Mapping[str, Any]]]  # dataset settings -> norm -> keyword arguments


@dataclass(frozen=True)
class AttackSpec:
    """One attack, declared once.

    Attributes:
        cls: the attack's class (a subclass of ``Attack``).
        settings: the dataset settings (``mnist``, ``cifar10``, ``imagenet``) -> norm -> keyword arguments (eps
            comes from the protocol).
        source: where the settings come from.
        fixed: keyword arguments that make this entry a variant of its class (SimBA's basis).
        suites: the ``evaluate`` suites it belongs to (``SUITES``).
        against: the registry defenses it was written against (an adaptive attack that uses one defense's
            public definition, as Tramer et al. 2020 ask): it runs in those defenses' evaluations only, and enters
            only their board rows' protocol hash. Empty: it is no defense's own.
    """

    cls: type[Attack]
    settings: Settings
    source: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    suites: tuple[str, ...] = ()
    against: tuple[str, ...] = ()


def _same(kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The same settings under both norms."""
    return {"linf": dict(kwargs), "l2": dict(kwargs)}


_SQUARE = {family: {"linf": {"p_init": 0.05}, "l2": {"p_init": 0.1}} for family in ("mnist", "cifar10", "imagenet")}
_SQUARE_SOURCE = "Square (Andriushchenko et al. 2020): p_init 0.05 l-inf, 0.1 l2 (AAA Table 11)"
_SIMBA = {"mnist": _same({"step": 0.2, "freq": None}), "cifar10": _same({"step": 0.2, "freq": None}),
          "imagenet": _same({"step": 0.2, "freq": 32})}
_SIMBA_SOURCE = "SimBA (Guo et al. 2019): step 0.2, DCT block the whole image (CIFAR-10, MNIST), 32 (ImageNet)"
_BANDITS_L2 = {"fd_eta": 0.01, "image_lr": 0.5, "online_lr": 0.1, "exploration": 0.01}
_BANDITS_LINF = {"fd_eta": 0.1, "image_lr": 0.01, "online_lr": 100.0, "exploration": 1.0, "prior_size": 50}

_BUILT_IN: dict[str, AttackSpec] = {
    "square": AttackSpec(Square, _SQUARE, _SQUARE_SOURCE, suites=("standard", "eot")),
    "square-op": AttackSpec(SquareOp, _SQUARE, f"AAA (Chen et al. 2022) Sec. 5.6; {_SQUARE_SOURCE}",
                            suites=("post-processing",)),
    "square-bi": AttackSpec(SquareBi, _SQUARE, f"AAA (Chen et al. 2022) Sec. 5.6; {_SQUARE_SOURCE}",
                            suites=("post-processing",)),
    "square-switch": AttackSpec(SquareSwitch, _SQUARE, "RLS paper (Dashtbani et al. 2026) Sec. 4: k 10; "
                                f"{_SQUARE_SOURCE}", suites=("post-processing",)),
    "square-dlr": AttackSpec(Square, _SQUARE, "a scale-free loss (the DLR ratio, Croce and Hein 2020) against "
                             f"logit rescaling (Tramer et al. 2020's adaptive-attack advice); {_SQUARE_SOURCE}",
                             fixed={"loss": "dlr"}, suites=("keeps-predictions",)),
    "simba": AttackSpec(SimBA, _SIMBA, _SIMBA_SOURCE, fixed={"basis": "dct"}, suites=("standard",)),
    "simba-pixel": AttackSpec(SimBA, _SIMBA, _SIMBA_SOURCE, fixed={"basis": "pixel"}),
    "signhunter": AttackSpec(SignHunter, {f: _same({}) for f in ("mnist", "cifar10", "imagenet")},
                             "SignHunter (Al-Dujaili and O'Reilly 2020): no settings beyond the threat model",
                             suites=("standard",)),
    "nes": AttackSpec(NES, {
        "mnist": {"linf": {"sigma": 0.01, "lr": 0.075, "pairs": 20}, "l2": {"sigma": 0.01, "lr": 0.5, "pairs": 4}},
        "cifar10": {"linf": {"sigma": 0.01, "lr": 2 / 255, "pairs": 20},
                    "l2": {"sigma": 0.01, "lr": 64 / 255, "pairs": 4}},
        "imagenet": {"linf": {"sigma": 0.1, "lr": 0.02, "pairs": 100}, "l2": {"sigma": 0.1, "lr": 2.0, "pairs": 50}},
    }, "NES (Ilyas et al. 2018) as AAA Table 11 ran it; MNIST: lr = eps / 4 (module docstring)",
        suites=("standard", "eot")),
    "bandits": AttackSpec(Bandits, {
        "mnist": {"linf": {**_BANDITS_LINF, "prior_size": 7, "online_lr": 0.1}, "l2": {**_BANDITS_L2, "prior_size": 7}},
        "cifar10": {"linf": _BANDITS_LINF, "l2": {**_BANDITS_L2, "prior_size": 50}},
        "imagenet": {"linf": _BANDITS_LINF, "l2": {**_BANDITS_L2, "prior_size": 50}},
    }, "Bandits-TD (Ilyas et al. 2019) as AAA Table 11 ran it; MNIST: prior 7, online_lr 0.1 (module docstring)",
        suites=("standard", "eot")),
    "oars-square": AttackSpec(OARSSquare, {f: {"linf": {"p_init": 0.05}} for f in ("mnist", "cifar10", "imagenet")},
                              "OARS (Feng et al., CCS 2023): its adaptive Square, binary searches 10-100 squares "
                              "(5 samples, none refused) and side 1-32 (10 samples, half refused), 300 attempts; "
                              "p_init 0.05 (its CIFAR-10 Blacklight config)", suites=("stateful",)),
    "oars-nes": AttackSpec(OARSNES, {f: {"linf": {}} for f in ("mnist", "cifar10", "imagenet")},
                           "OARS (Feng et al., CCS 2023): its adaptive NES, probe width searched in 0.05-0.5 (20 "
                           "samples, none refused), least step 0.1, 50 probes, lr 0.01, momentum 0.9 (its CIFAR-10 "
                           "Blacklight config)", suites=("stateful",)),
    "square-undash": AttackSpec(SquareUndash, _SQUARE, f"ours, against DLD (AISTATS 2026): its tau 6 and h 0.3 "
                                f"from its code; {_SQUARE_SOURCE}", against=("dld",)),
}


def _admit(name: str, spec: AttackSpec) -> None:
    """An attack entry's own rules: its class is an ``Attack``, its suites exist, its name is no EOT label."""
    if not (isinstance(spec.cls, type) and issubclass(spec.cls, Attack)):
        raise ValueError(f"spec.cls must be a subclass of workbench.attacks.base.Attack, got {spec.cls!r}")
    for suite_name in spec.suites:
        checks.choice("suites", suite_name, SUITES)
    if name.startswith("eot"):
        raise ValueError(f"name must not start with 'eot' (that marks an EOT label), got {name!r}")


REGISTRY: Registry[AttackSpec] = Registry("attack", AttackSpec, _BUILT_IN, _admit)
SPECS = REGISTRY.specs
# an added attack is accepted wherever an attack name is, and joins the suites its spec names (after those there)
register, unregister, names, spec = REGISTRY.register, REGISTRY.unregister, REGISTRY.names, REGISTRY.spec


def suite(name: str = "standard") -> tuple[str, ...]:
    """The attacks of the suite ``name`` (``SUITES``), in the registry's order."""
    checks.choice("suite", name, SUITES)
    return tuple(attack for attack, entry in SPECS.items() if name in entry.suites)


def against(defense: str | None) -> tuple[str, ...]:
    """The attacks written against the registry defense ``defense`` (``AttackSpec.against``), in the registry's
    order; none for ``None`` (a defense of your own)."""
    return tuple(attack for attack, entry in SPECS.items() if defense is not None and defense in entry.against)


def parameters(name: str) -> tuple[str, ...]:
    """The keyword arguments the attack ``name`` accepts."""
    return _parameters(spec(name))


def _parameters(found: AttackSpec) -> tuple[str, ...]:
    return tuple(inspect.signature(found.cls.__init__).parameters)[1:]


def settings(name: str, dataset: str | Protocol, norm: str = "linf") -> dict[str, Any]:
    """The keyword arguments of the attack ``name`` under ``norm`` on ``dataset`` (a protocol's name or entry):
    the protocol's eps and the spec's settings for the protocol's ``settings``."""
    return _settings(spec(name), dataset if isinstance(dataset, Protocol) else protocol.get(dataset), norm, name)


def _settings(found: AttackSpec, entry: Protocol, norm: str, name: str) -> dict[str, Any]:
    checks.choice("norm", norm, tuple(entry.eps))
    if entry.settings not in found.settings:
        raise ValueError(f"attack {name!r} has no settings for {entry.settings!r} (protocol {entry.name!r}); it has "
                         f"them for {sorted(found.settings)}: set the protocol's settings= to one of those, or "
                         "register the attack with settings for it")
    by_norm = found.settings[entry.settings]
    checks.choice("norm", norm, tuple(by_norm))  # an attack in one norm only (OARS's Square: l-inf)
    return {"norm": norm, "eps": entry.eps[norm], **by_norm[norm]}


def build(name: str, *, dataset: str | Protocol | None = None, norm: str = "linf", eot: int = 1,
          **overrides: Any) -> Attack | EOT:
    """The attack ``name`` with the settings of ``dataset`` (a protocol's name, or the entry ``setting.resolve``
    gave) under ``norm``, and ``overrides`` on top. An attack's eps and settings are the dataset's: there is no
    default dataset."""
    found = spec(name)
    if dataset is None:
        raise ValueError(f"attacks.build({name!r}) needs dataset= (one of {list(protocol.names())}, or a resolved "
                         "protocol entry): an attack's eps and settings depend on the dataset")
    eot = checks.at_least("eot", eot, 1)
    allowed = _parameters(found)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"{key!r} is not an argument of attack {name!r}; choose from {', '.join(allowed)}")
    entry = dataset if isinstance(dataset, Protocol) else protocol.get(dataset)
    attack = found.cls(**{**_settings(found, entry, norm, name), **found.fixed, **overrides})
    return EOT(attack, m=eot) if eot > 1 else attack


def affordable(attack: Attack | EOT, budget: int, label: str | None = None) -> None:
    """Raise unless ``budget`` queries per image pay for the clean query and one step of ``attack`` (under EOT,
    each point costs ``m`` queries): a plan that cannot run is refused before its first query."""
    inner, m = (attack.attack, attack.m) if isinstance(attack, EOT) else (attack, 1)
    needed = m * (1 + inner.cost)
    if budget < needed:
        per = f"{m} queries per point x " if m > 1 else ""
        raise ValueError(f"budget={budget} cannot pay for attack {label or attack.name!r}: the clean query and one "
                         f"step take {per}{1 + inner.cost} points = {needed} queries per image; raise the budget to "
                         f"at least {needed}" + (" or lower eot" if m > 1 else ""))
