"""The experiment object: everything one measurement depends on, built once at the front door from what the user
gave and carried down as it is. Below it nothing looks a dataset up by name again.

An :class:`Experiment` holds the protocol entry, the threat model (``threat.Threat``: norm and eps, once), the
attacked images and labels, the held-out images a defense is calibrated on, the target (the defended and the
undefended model and the probes, ``runs.Target``), the budgets and the seed. Two functions build one:

- ``setup(defense, model, dataset=..., n=...)`` from names, as a grid cell, the leaderboard and the command lines
  give them: it resolves the protocol once (``setting.resolve``), loads the test split once, takes the first ``n``
  images to attack (never the held-out ones at the end), calibrates the registry defense on the held-out images
  and probes it on the attacked images;
- ``Experiment.of(defended, x, y, ...)`` from a module of your own (or a ``runs.Target``) and your images, as
  ``evaluate`` takes them.

``Experiment.run(attack)`` runs one attack through the run path (``runs.run``) with the experiment's protocol,
threat, budget and seed; ``evaluate(experiment)`` runs the whole suite the probes call for.

Example::

    >>> exp = setup("aaa-linear", "mnist-cnn", n=100, budgets=(100, 1000))
    >>> exp.protocol.name, exp.threat, exp.budget
    ('mnist', Threat('linf', eps=0.3), 1000)
    >>> exp.run("square").robust_accuracy(100)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from workbench import checks, data, metrics, runs, setting
from workbench.attacks.base import Attack
from workbench.attacks.eot import EOT
from workbench.probes import IMAGES, reseed
from workbench.protocol import Protocol
from workbench.results import Result
from workbench.threat import Threat


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment's setting (see the module docstring).

    Attributes:
        protocol: the protocol entry (dataset facts; the attacks' and defenses' settings are its ``settings``').
        threat: the threat model every attack of the experiment runs in.
        x, y: the attacked images and their labels.
        target: the defense ready to attack (``runs.Target``: defended, undefended, probes, cache key).
        budgets: where robust accuracy is read, increasing; the last is the per-image budget.
        seed: the seed of every attack and of the defense's randomness.
        held_out: the held-out images and labels the defense was calibrated on (None: none were used).
        model: the zoo model's name, where the experiment was set up from names (None for a module of your own).
        num_classes: the dataset's number of classes, where the experiment loaded it (None otherwise).
    """

    protocol: Protocol
    threat: Threat
    x: torch.Tensor
    y: torch.Tensor
    target: runs.Target
    budgets: tuple[int, ...]
    seed: int = 0
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None
    model: str | None = None
    num_classes: int | None = None

    @property
    def budget(self) -> int:
        """Queries per image: the last of ``budgets``."""
        return self.budgets[-1]

    def run(self, attack: str | Attack | EOT, *, eot: int = 1, attack_kwargs: Mapping[str, Any] | None = None,
            targets: torch.Tensor | None = None, repeats: int = runs.REPEATS, cache_dir: str | Path | None = None,
            recompute: bool = False, progress: bool = False, **oracle_options: Any) -> Result:
        """Run ``attack`` (a registry name, with the protocol's settings for the threat model, or an attack object
        you built) on the experiment's images through the run path (``runs.run``; ``oracle_options``: ``record``,
        ``reference``, ``keep_images``, ``quantize``, ``scores``, ``batch_size``, and ``serving``, how the Oracle
        serves a stateful defense)."""
        threat = {"threat": self.threat} if isinstance(attack, str) else {}
        return runs.run(self.target, attack, self.x, self.y, budget=self.budget, dataset=self.protocol,
                        seed=self.seed, eot=eot, attack_kwargs=attack_kwargs, targets=targets, repeats=repeats,
                        cache_dir=cache_dir, recompute=recompute, progress=progress, **threat, **oracle_options)

    def clean(self) -> dict[str, float]:
        """The defense's cost on the clean attacked images (``metrics.clean_metrics``): accuracy, agreement with
        the undefended model, logit difference and ECE (needs the undefended model). A randomized defense is
        reseeded at the experiment's seed first (its seeded parts and torch's generator, restored after), so the
        numbers do not depend on what ran before."""
        if self.target.undefended is None:
            raise ValueError("the clean metrics compare with the undefended model: give undefended=")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            reseed(self.target.defended, self.seed)
            return metrics.clean_metrics(self.target.defended, self.target.undefended, self.x, self.y)

    @classmethod
    def of(cls, defended: nn.Module | runs.Target, x: torch.Tensor, y: torch.Tensor, *,
           undefended: nn.Module | None = None, dataset: str | Protocol | None = None, norm: str = "linf",
           eps: float | None = None, budgets: Sequence[int] = (1000,), seed: int = 0,
           probe_images: torch.Tensor | None = None, cache_key: str | None = None) -> Experiment:
        """The experiment of a defense of your own (a module, probed once here on ``probe_images``, default the
        first images of ``x``; or a ``runs.Target`` with its probes) on the images ``x`` with labels ``y``. The
        protocol: ``dataset``, else the zoo model's inside the defense, else the one the images' shape fits
        (``setting.resolve``); eps defaults to the protocol's for ``norm``; ``cache_key`` identifies a module's
        runs for the cache (a target brings its own)."""
        checks.images("x", x)
        y = checks.labels("y", y, len(x))
        module = defended.defended if isinstance(defended, runs.Target) else defended
        entry = setting.resolve(dataset, model=module, images=x, needed_by="the experiment")
        threat = setting.threat(entry, norm, eps)
        budgets = checks.budgets("budgets", budgets)
        seed = checks.at_least("seed", seed, 0)
        target = defended if isinstance(defended, runs.Target) else runs.Target.of(
            defended, x[:IMAGES] if probe_images is None else probe_images, undefended, cache_key)
        return cls(entry, threat, x, y, target, budgets, seed)


def setup(defense: str, model: str | None = None, *, dataset: str | Protocol | None = None, n: int,
          budgets: Sequence[int], norm: str = "linf", eps: float | None = None, seed: int = 0,
          weights: str | Path | None = None, device: str | torch.device | None = None,
          root: str | Path | None = None, defense_kwargs: Mapping[str, Any] | None = None) -> Experiment:
    """The experiment of the registry defense (or import path) ``defense`` around the zoo model ``model`` on the
    first ``n`` test images of the protocol (``dataset``, else the zoo model's; ``model`` defaults to the
    protocol's standard model), calibrated on the held-out test images at the end of the split and probed on the
    first attacked ones (see the module docstring). ``weights``: a local checkpoint of the model; ``root``: the
    data folder of a dataset that does not ship; ``defense_kwargs``: the defense's arguments."""
    entry = setting.resolve(dataset, model=model, needed_by="experiment.setup")
    model = model or entry.model
    if model is None:
        raise ValueError(f"dataset {entry.name!r} names no standard model: give model= (a zoo name)")
    threat = setting.threat(entry, norm, eps)
    budgets = checks.budgets("budgets", budgets)
    test = data.load(entry, "test", root=root)
    attacked = len(test) - entry.held_out
    if checks.at_least("n", n, 1) > attacked:
        raise ValueError(f"n={n} would reach the last {entry.held_out} of the {len(test)} {entry.name} test images, "
                         f"held out for calibration (at most {attacked})")
    held_out = test[attacked:]
    target = runs.target(defense, model, dataset=entry, weights=weights, held_out=held_out, seed=seed,
                         device=device, probe_images=test.x[:IMAGES], **dict(defense_kwargs or {}))
    x, y = test[:n]
    return Experiment(entry, threat, x, y, target, budgets, checks.at_least("seed", seed, 0), held_out, model,
                      test.num_classes)
