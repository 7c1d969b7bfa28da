"""The evaluation protocol of every dataset, in one table: adding a dataset is adding one :class:`Protocol` entry
(``register``).

An entry holds facts about a dataset only: which images there are (the loader name and the test split's size),
which of them are held out for calibrating a defense (the last ``held_out`` test images, disjoint from the attacked
ones), the threat models (norm -> eps), its default zoo model, the default budgets, the images' shape, and
``settings``: the dataset whose attack and defense settings it takes (``mnist``, ``cifar10`` or ``imagenet``;
the settings themselves are declared once per attack and defense, in ``workbench.attacks.registry`` and
``workbench.defenses.registry``).

MNIST (l-inf 0.3, l2 2.0, the usual MNIST bounds) is the workbench's own setting; CIFAR-10 (8/255, 0.5) and
ImageNet (4/255, 5.0) are the papers' (AAA Table 11).

Example::

    >>> from workbench import protocol
    >>> p = protocol.get("mnist")
    >>> p.eps["linf"], p.held_out, p.settings
    (0.3, 500, 'mnist')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench import checks


@dataclass(frozen=True)
class Protocol:
    """One dataset's protocol (see the module docstring).

    Attributes:
        name: the protocol's name (what ``dataset=`` takes everywhere).
        data: the ``data.load`` name of its images.
        test_size: images in the test split.
        held_out: the last images of the test split, for calibration (never attacked).
        eps: norm -> radius of the threat model.
        settings: the dataset whose attack and defense settings this one takes (``mnist``, ``cifar10``,
            ``imagenet``: the keys of the attack and defense specs' settings).
        model: the zoo model the grids and the command lines default to (None: the user brings one). Which zoo
            models serve a dataset is said once, by each zoo entry (``models.serving``).
        budgets: the budgets robust accuracy is read at by default.
        root: whether the images need a data folder (``root=``) rather than shipping with the workbench.
        images: for a dataset of your own, ``images(split) -> (x, y)`` (float32 images in [0, 1], int64 labels),
            which ``data.load(name, split)`` then serves; None for the datasets ``data`` knows by name.
        shape: one image's shape (C, H, W): ``setting.resolve`` tells the protocol from images that fit exactly
            one, and refuses images of another shape; None: not checked.
    """

    name: str
    data: str
    test_size: int
    held_out: int
    eps: Mapping[str, float]
    settings: str
    model: str | None = None
    budgets: tuple[int, ...] = (100, 1000, 2500)
    root: bool = False
    images: Callable[[str], tuple[Any, Any]] | None = None
    shape: tuple[int, int, int] | None = None

    @property
    def attacked(self) -> int:
        """The most test images an experiment attacks: those before the held-out ones."""
        return self.test_size - self.held_out


_TABLE: dict[str, Protocol] = {}


def register(entry: Protocol) -> Protocol:
    """Add (or replace) a dataset's protocol; its name is then accepted wherever ``dataset=`` is."""
    if not isinstance(entry, Protocol):
        raise ValueError(f"entry must be a Protocol, got {type(entry).__name__}")
    if not 0 < entry.held_out < entry.test_size:
        raise ValueError(f"held_out={entry.held_out} must leave test images to attack (test_size={entry.test_size})")
    if not isinstance(entry.settings, str) or not entry.settings:
        raise ValueError(f"settings must name the dataset whose attack and defense settings {entry.name!r} takes "
                         f"(e.g. 'mnist', 'cifar10', 'imagenet'), got {entry.settings!r}")
    if not entry.eps or set(entry.eps) - set(checks.NORMS):
        raise ValueError(f"eps must map norms among {checks.NORMS} to radii, got {dict(entry.eps)}")
    _TABLE[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a registered protocol (tests that register a toy one)."""
    _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
    """The datasets with a protocol."""
    return tuple(_TABLE)


def protocols() -> tuple[Protocol, ...]:
    """Every registered protocol."""
    return tuple(_TABLE.values())


def get(name: str) -> Protocol:
    """The protocol of dataset ``name``."""
    checks.choice("dataset", name, names())
    return _TABLE[name]


register(Protocol("mnist", "mnist5k", test_size=1000, held_out=500, eps={"linf": 0.3, "l2": 2.0}, settings="mnist",
                  model="mnist-cnn", budgets=(100, 1000, 2500), shape=(1, 28, 28)))
register(Protocol("cifar10", "cifar10", test_size=10000, held_out=500, eps={"linf": 8 / 255, "l2": 0.5},
                  settings="cifar10", model="wrn-28-10", root=True, shape=(3, 32, 32)))
# CIFAR-10 as the JPEG (quality 75) copy the CIFAR-10 zoo is trained on: numbers on it are "CIFAR-10 (JPEG q75)".
# Its embedded test subset (1000 images, classes interleaved) ships with the workbench: the first 500 are attacked,
# the last 500 (50 per class) calibrate; the full splits load with root= (the papers' settings, AAA Table 11).
register(Protocol("cifar10-jpeg", "cifar10-jpeg", test_size=1000, held_out=500, eps={"linf": 8 / 255, "l2": 0.5},
                  settings="cifar10", model="cifar10-resnet20",
                  shape=(3, 32, 32)))
register(Protocol("imagenet", "imagenet", test_size=1000, held_out=500, eps={"linf": 4 / 255, "l2": 5.0},
                  settings="imagenet", model="resnet50", root=True, shape=(3, 224, 224)))
# ImageNet samples (one image per class, 224 x 224; not known to be validation images): the embedded 100 (every
# tenth class) ship with the workbench, the first 70 attacked, the last 30 held out (both spread over the classes);
# all 1000 load with root=. The papers' ImageNet threat model (l-inf 4/255, l2 5.0) and attack and defense settings.
register(Protocol("imagenet-samples", "imagenet-samples", test_size=100, held_out=30, eps={"linf": 4 / 255, "l2": 5.0},
                  settings="imagenet", model="efficientnet-lite0",
                  budgets=(100, 1000), shape=(3, 224, 224)))
