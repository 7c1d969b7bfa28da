"""Score-based query attacks on one batched base class, the EOT wrapper, presets and a registry by name.
White-box attacks (FGSM, PGD, BPDA) live in ``workbench.attacks.whitebox``.

Example::

    >>> from workbench.attacks import build, names
    >>> attack = build("square", dataset="mnist", norm="linf", seed=0)
"""

from workbench.attacks.base import Attack
from workbench.attacks.registry import build, names
from workbench.results import Result

__all__ = ["Attack", "Result", "build", "names"]
