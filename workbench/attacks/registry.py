"""Attacks by name, so notebooks and grids can say ``build("square", dataset="mnist")``.

Names: ``square``, ``square-op``, ``square-bi``, ``simba`` (DCT basis), ``simba-pixel``, ``signhunter``,
``nes``, ``bandits``. ``build`` starts from the dataset's protocol entry (``protocol.get(dataset).attack_kwargs(name, norm)``), applies overrides, and wraps
the attack in :class:`~workbench.attacks.eot.EOT` when ``eot`` > 1.

Example::

    >>> attack = build("nes", dataset="mnist", norm="linf", seed=1)
    >>> attack = build("square", dataset="mnist", eot=5)   # EOT(Square, m=5)
"""

from __future__ import annotations

import inspect
from typing import Any

from workbench import checks, protocol
from workbench.protocol import Protocol
from workbench.attacks.bandits import Bandits
from workbench.attacks.base import Attack
from workbench.attacks.eot import EOT
from workbench.attacks.nes import NES
from workbench.attacks.signhunter import SignHunter
from workbench.attacks.simba import SimBA
from workbench.attacks.square import Square
from workbench.attacks.square_bi import SquareBi
from workbench.attacks.square_op import SquareOp

ATTACKS: dict[str, tuple[type[Attack], dict[str, Any]]] = {
    "square": (Square, {}),
    "square-op": (SquareOp, {}),
    "square-bi": (SquareBi, {}),
    "simba": (SimBA, {"basis": "dct"}),
    "simba-pixel": (SimBA, {"basis": "pixel"}),
    "signhunter": (SignHunter, {}),
    "nes": (NES, {}),
    "bandits": (Bandits, {}),
}


def names() -> tuple[str, ...]:
    """The registered attack names."""
    return tuple(ATTACKS)


def parameters(name: str) -> tuple[str, ...]:
    """The keyword arguments the attack ``name`` accepts."""
    checks.choice("name", name, names())
    return tuple(inspect.signature(ATTACKS[name][0].__init__).parameters)[1:]


def build(name: str, *, dataset: str | Protocol | None = None, norm: str = "linf", eot: int = 1,
          **overrides: Any) -> Attack | EOT:
    """The attack ``name`` with the preset of ``dataset`` (a protocol's name, or the entry ``setting.resolve``
    gave) under ``norm``, and ``overrides`` on top. An attack's eps and settings are the dataset's: there is no
    default dataset."""
    checks.choice("name", name, names())
    if dataset is None:
        raise ValueError(f"attacks.build({name!r}) needs dataset= (one of {list(protocol.names())}, or a resolved "
                         "protocol entry): an attack's eps and settings depend on the dataset")
    entry = dataset if isinstance(dataset, Protocol) else protocol.get(dataset)
    eot = checks.at_least("eot", eot, 1)
    allowed = parameters(name)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"{key!r} is not an argument of attack {name!r}; choose from {', '.join(allowed)}")
    cls, fixed = ATTACKS[name]
    attack = cls(**{**entry.attack_kwargs(name, norm), **fixed, **overrides})
    return EOT(attack, m=eot) if eot > 1 else attack
