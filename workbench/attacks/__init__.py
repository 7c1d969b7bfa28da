"""Score-based query attacks on one batched base class, the EOT wrapper, presets and a registry by name.
White-box attacks (FGSM, PGD, BPDA) live in ``workbench.attacks.whitebox``.

``from workbench.attacks import build, names, Attack, AttackResult`` works; the names are resolved lazily
because the Oracle imports ``workbench.attacks.project`` (the eps-balls) while the attacks import the Oracle.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Attack": "base", "AttackResult": "base", "build": "registry", "names": "registry"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'workbench.attacks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workbench.attacks.{_EXPORTS[name]}"), name)
