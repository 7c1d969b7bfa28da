"""The evaluation protocol of every dataset, in one table: adding a dataset is adding one :class:`Protocol` entry
(``register``).

An entry says which images there are (the loader name and the test split's size), which of them are held out for
calibrating a defense (the last ``held_out`` test images, disjoint from the attacked ones), the threat models
(norm -> eps), each attack's hyperparameters per norm, each defense's default hyperparameters with their source,
the zoo models that serve the dataset, the default budgets and the standard attack suite.

Sources of the attack settings: AAA Table 11 and the reference implementations (Square: p_init 0.05 l-inf, 0.1
l2; SimBA: step 0.2, DCT block 32; NES CIFAR l-inf: sigma 0.01, lr 2/255, q 20; ImageNet l-inf: sigma 0.1, lr 0.02,
q 100; CIFAR l2: sigma 0.01, lr 64/255, q 4; ImageNet l2: sigma 0.1, lr 2.0, q 50; Bandits l-inf: fd_eta 0.1,
image_lr 0.01, online_lr 100, exploration 1.0, prior 50; l2: fd_eta 0.01, image_lr 0.5, online_lr 0.1,
exploration 0.01).

MNIST (l-inf 0.3, l2 2.0, the usual MNIST bounds) is the workbench's own setting; its choices and why:
    - Square, SimBA, SignHunter: the papers' defaults (SimBA's DCT block is the whole 28x28 image, as CIFAR-10
      used the whole 32x32 one).
    - NES l-inf: lr = eps / 4 = 0.075, sigma 0.01, q 20: CIFAR-10's setting with lr scaled by eps (2/255 is a
      quarter of 8/255); l2: lr = eps / 4 = 0.5, sigma 0.01, q 4 (CIFAR's 64/255 is about a quarter of 1.0).
    - Bandits l-inf: prior 7x7 (tiles of 4 pixels, as ImageNet's 50x50 prior tiles 224 pixels by 4.5) and
      online_lr 0.1 (the l2 value): with ImageNet's online_lr 100 a prior this small saturates at exactly +-1
      within a few steps and never moves again (robust accuracy stalled near 48% after 1000 queries on 100 test
      images). l2: the papers' l2 setting, prior 7.
    - UniG: ImageNet's setting (delta 0.1, alpha 1): CIFAR-10's (delta 0.5, alpha 10) cost 1.1 points of clean
      accuracy on the zoo CNN.

Example::

    >>> from workbench import protocol
    >>> p = protocol.get("mnist")
    >>> p.eps["linf"], p.held_out, p.attack_kwargs("nes", "linf")
    (0.3, 500, {'norm': 'linf', 'eps': 0.3, 'sigma': 0.01, 'lr': 0.075, 'pairs': 20})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from workbench import checks

# AAA (Chen et al. 2022): the attractor interval tau, in logits. The defense, op-Square's threshold (half of it:
# the margin jump of crossing into the next interval), the figures and the sliders all read it from here.
AAA_TAU = 6.0
AAA_ALPHA = {"linear": 1.0, "sine": 0.7}

STANDARD = ("square", "signhunter", "simba", "nes", "bandits")  # the score-based attacks every defense faces
POST_PROCESSING = ("square-op", "square-bi")  # AAA's adaptive attacks, for defenses that keep every prediction
EOT = ("square", "nes", "bandits")  # under expectation over transformation, for randomized defenses

_SQUARE = {"linf": {"p_init": 0.05}, "l2": {"p_init": 0.1}}
_SIMBA = {"linf": {"step": 0.2, "freq": 32}, "l2": {"step": 0.2, "freq": 32}}
_BANDITS_L2 = {"fd_eta": 0.01, "image_lr": 0.5, "online_lr": 0.1, "exploration": 0.01}
_BANDITS_LINF = {"fd_eta": 0.1, "image_lr": 0.01, "online_lr": 100.0, "exploration": 1.0, "prior_size": 50}
_PAPERS = {
    "square": _SQUARE,
    "simba": _SIMBA,
    "signhunter": {"linf": {}, "l2": {}},
    "nes": {"linf": {"sigma": 0.01, "lr": 2 / 255, "pairs": 20}, "l2": {"sigma": 0.01, "lr": 64 / 255, "pairs": 4}},
    "bandits": {"linf": _BANDITS_LINF, "l2": {**_BANDITS_L2, "prior_size": 50}},
}
_IMAGENET = {**_PAPERS, "nes": {"linf": {"sigma": 0.1, "lr": 0.02, "pairs": 100},
                                "l2": {"sigma": 0.1, "lr": 2.0, "pairs": 50}}}
_MNIST = {
    **_PAPERS,
    "simba": {"linf": {"step": 0.2, "freq": 28}, "l2": {"step": 0.2, "freq": 28}},
    "nes": {"linf": {"sigma": 0.01, "lr": 0.075, "pairs": 20}, "l2": {"sigma": 0.01, "lr": 0.5, "pairs": 4}},
    "bandits": {"linf": {**_BANDITS_LINF, "prior_size": 7, "online_lr": 0.1}, "l2": {**_BANDITS_L2, "prior_size": 7}},
}
# Variants that share another attack's settings.
_SAME_AS = {"square-op": "square", "square-bi": "square", "simba-pixel": "simba"}

# Each defense's defaults (per dataset where they differ) and where they come from.
_NOISE = "RND (Qin et al. 2021): nu 0.02, 0.05 with Gaussian-augmentation fine-tuning"
SOURCES = MappingProxyType({
    "none": "the undefended model",
    "aaa-linear": f"AAA (Chen et al. 2022): tau {AAA_TAU:g}, alpha 1, beta 5, kappa 100, Adam lr 0.1 for 100 steps; "
                  "T tuned on held-out data (15-bin ECE)",
    "aaa-sine": f"AAA: tau {AAA_TAU:g}, alpha 0.7, beta 5, kappa 100",
    "unig": "UniG (Wu et al.): CIFAR-10 delta 0.5, p 1, alpha 10; ImageNet delta 0.1, alpha 1",
    "rnd": _NOISE,
    "rnd-gf": _NOISE,
    "snd": "SND (Byun et al. 2022): sigma in 0.001-0.02",
    "snd-beta": "SND Sec. 4.7: the noise of every query scaled by k ~ Beta(1, 1)",
    "gcm": "GCM (Pei et al.): x + 1e-8 sin(1e20 x) at the input",
    "temperature": "Guo et al. 2017: T tuned by 15-bin ECE on held-out data",
    "at": "adversarial training, the zoo's <model>-at (MNIST: PGD-7, Madry et al. 2018)",
    "dent": "DENT as AAA / UniG ran it: 6 Adam steps, lr 1e-3, entropy, per query batch",
})
_NOISE_DEFAULTS = {"rnd": {"sigma": 0.02}, "rnd-gf": {"sigma": 0.05}, "snd": {"sigma": 0.01},
                   "snd-beta": {"sigma": 0.02, "beta": (1.0, 1.0)}}


@dataclass(frozen=True)
class Protocol:
    """One dataset's protocol (see the module docstring).

    Attributes:
        name: the protocol's name (what ``dataset=`` takes everywhere).
        data: the ``data.load`` name of its images.
        test_size: images in the test split.
        held_out: the last images of the test split, for calibration (never attacked).
        eps: norm -> radius of the threat model.
        attacks: attack -> norm -> hyperparameters (``attack_kwargs`` adds norm and eps).
        defenses: defense -> default hyperparameters (a defense not listed takes its class's defaults).
        model: the zoo model the grids and the command lines default to (None: the user brings one).
        zoo: the zoo models that serve the dataset.
        budgets: the budgets robust accuracy is read at by default.
        suite: the standard score-based attacks.
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
    attacks: Mapping[str, Mapping[str, Mapping[str, Any]]]
    defenses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: str | None = None
    zoo: tuple[str, ...] = ()
    budgets: tuple[int, ...] = (100, 1000, 2500)
    suite: tuple[str, ...] = STANDARD
    root: bool = False
    images: Callable[[str], tuple[Any, Any]] | None = None
    shape: tuple[int, int, int] | None = None

    @property
    def attacked(self) -> int:
        """The most test images an experiment attacks: those before the held-out ones."""
        return self.test_size - self.held_out

    def attack_kwargs(self, attack: str, norm: str = "linf") -> dict[str, Any]:
        """Keyword arguments of ``attack`` under ``norm`` (``eps`` included)."""
        checks.choice("attack", attack, tuple(self.attacks) + tuple(_SAME_AS))
        checks.choice("norm", norm, tuple(self.eps))
        return {"norm": norm, "eps": self.eps[norm], **self.attacks[_SAME_AS.get(attack, attack)][norm]}

    def defense_kwargs(self, defense: str) -> dict[str, Any]:
        """The default keyword arguments of the registry defense ``defense`` on this dataset."""
        return dict(self.defenses.get(defense, {}))


_TABLE: dict[str, Protocol] = {}


def register(entry: Protocol) -> Protocol:
    """Add (or replace) a dataset's protocol; its name is then accepted wherever ``dataset=`` is."""
    if not isinstance(entry, Protocol):
        raise ValueError(f"entry must be a Protocol, got {type(entry).__name__}")
    if not 0 < entry.held_out < entry.test_size:
        raise ValueError(f"held_out={entry.held_out} must leave test images to attack (test_size={entry.test_size})")
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


def _defaults(unig: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {**_NOISE_DEFAULTS, "unig": unig}


register(Protocol("mnist", "mnist5k", test_size=1000, held_out=500, eps={"linf": 0.3, "l2": 2.0}, attacks=_MNIST,
                  defenses=_defaults({"delta": 0.1, "p": 1, "alpha": 1.0}), model="mnist-cnn",
                  zoo=("mnist-cnn", "mnist-cnn-at", "mnist-cnn-gf"), budgets=(100, 1000, 2500), shape=(1, 28, 28)))
register(Protocol("cifar10", "cifar10", test_size=10000, held_out=500, eps={"linf": 8 / 255, "l2": 0.5},
                  attacks=_PAPERS, defenses=_defaults({"delta": 0.5, "p": 1, "alpha": 10.0}), model="wrn-28-10",
                  zoo=("wrn-28-10", "preactresnet18"), root=True, shape=(3, 32, 32)))
# CIFAR-10 as the JPEG (quality 75) copy the CIFAR-10 zoo is trained on: numbers on it are "CIFAR-10 (JPEG q75)".
# Its embedded test subset (1000 images, classes interleaved) ships with the workbench: the first 500 are attacked,
# the last 500 (50 per class) calibrate; the full splits load with root= (the papers' settings, AAA Table 11).
register(Protocol("cifar10-jpeg", "cifar10-jpeg", test_size=1000, held_out=500, eps={"linf": 8 / 255, "l2": 0.5},
                  attacks=_PAPERS, defenses=_defaults({"delta": 0.5, "p": 1, "alpha": 10.0}),
                  model="cifar10-resnet20",
                  zoo=("cifar10-resnet20", "cifar10-resnet20-ls", "cifar10-resnet20-at", "cifar10-resnet20-gf"),
                  shape=(3, 32, 32)))
register(Protocol("imagenet", "imagenet", test_size=1000, held_out=500, eps={"linf": 4 / 255, "l2": 5.0},
                  attacks=_IMAGENET, defenses=_defaults({"delta": 0.1, "p": 1, "alpha": 1.0}), model="resnet50",
                  root=True, shape=(3, 224, 224)))
