"""The one run path: one attack against one defense on given images -> one :class:`~workbench.results.Result`.

``evaluate``, the experiment grids, the defense report, the widgets, the benchmarks and the notebooks all run
attacks through ``run``, so there is one batch-size policy (the Oracle's default), one definition of reseeding and
re-evaluation, one cache with one key scheme and one weights fingerprint.

- A :class:`Target` is a defense ready to attack, probed once (``target`` for a registry defense around a zoo
  model, ``Target.of`` for a module of your own; ``run`` also takes a bare module and probes it on the attacked
  images); the probes are passed to every Oracle built on it, which then does not probe again.
- ``run`` takes an attack by name (the dataset's settings from its spec, overrides on top) or an attack object
  you built, reseeds the defense once (at the run's seed), runs the attack through a fresh Oracle (with the
  Oracle's options: ``record``, ``reference``, ``keep_images``, ``quantize``, ``scores``), and returns a
  ``Result``: per image the first successful query (-1: none), the queries spent, whether the clean image was
  correct (``robust``: never misclassified within the budget, as the attacker observed it), and the **final
  outcome** (``final``): for a randomized or batch-dependent defense, each final image is queried ``repeats`` more
  times (fresh noise) and counts as robust when the majority of those queries classify it correctly
  (``metrics.reevaluated``); for a deterministic defense one query tells the truth and ``final`` is ``robust``. A
  recorded run's traces come with the result.
- With ``cache_dir`` (a named attack on a target with a ``key``), a result is stored atomically under a hash of
  everything it depends on (the defense's key with its weights fingerprint, the attack and its settings, the
  threat model, budget, seed, re-evaluation and the images) and validated when read back: a killed grid resumes
  without recomputing a finished run. A stored result keeps the provenance of the run that computed it
  (``provenance``: workbench version, git commit, torch, device), so a grid assembled later from the cache reports
  where each number was really computed.

Example::

    target = runs.target("aaa-linear", "mnist-cnn", held_out=test[500:])
    result = runs.run(target, "square", x, y, budget=1000)
    result.robust_accuracy(100), result.final_accuracy
    traced = runs.run(defended, "square", x, y, budget=200, record=True, reference=model)   # any module
    traced.observed[0], traced.reference_margin[0]
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from workbench import cache, checks, metrics, models, setting
from workbench.attacks import registry as attacks
from workbench.attacks.base import Attack
from workbench.attacks.eot import EOT
from workbench.defenses import registry as defenses
from workbench.oracle import Oracle
from workbench.probes import IMAGES, PROBE_MIN, Probes, probe, reseed
from workbench.protocol import Protocol
from workbench.results import Result
from workbench.threat import Threat, model_device

REPEATS = 10  # fresh queries per final image when re-evaluating


@dataclasses.dataclass(frozen=True)
class Target:
    """A defense ready to attack: the module, the undefended model (None if unknown), its probes (measured once),
    ``key``: what identifies it for the cache (None: its runs are not cached), and ``defense``: its registry name
    where it was built from one (its own adaptive attacks join its evaluation: ``attacks.registry.against``)."""

    defended: nn.Module
    undefended: nn.Module | None
    probes: Probes
    key: str | None = None
    defense: str | None = None

    @classmethod
    def of(cls, defended: nn.Module, probe_images: torch.Tensor, undefended: nn.Module | None = None,
           key: str | None = None, defense: str | None = None) -> Target:
        """Wrap a defense of your own: probed once on ``probe_images``."""
        checks.module("defended", defended)
        return cls(defended, undefended, probe(defended, probe_images, undefended), key, defense)

    @property
    def reevaluate(self) -> bool:
        """Whether final images are re-evaluated by fresh queries (randomized or batch-dependent defenses)."""
        return not self.probes.deterministic


def fingerprint(model: str, weights: str | Path | None = None, variant: str | None = None) -> str:
    """The weights fingerprint of a zoo model (and of its ``variant``, e.g. ``"at"``): a hash of the files its
    weights load from, so results computed with other weights are never mixed with these."""
    files = [Path(weights).expanduser() if weights else models.weights_path(model)]
    if variant:
        files.append(models.weights_path(f"{model}-{variant}"))
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            raise ValueError(f"weights={str(path)!r} is not an existing file")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def target(defense: str, model: str, *, dataset: str | Protocol | None = None, weights: str | Path | None = None,
           held_out: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
           device: str | torch.device | None = None, probe_images: torch.Tensor | None = None,
           **kwargs: Any) -> Target:
    """The registry defense (or import path) ``defense`` around the zoo model ``model`` (the zoo variant the
    defense needs is picked by ``defenses.prepare``), calibrated on ``held_out`` where it is calibrated, probed
    once on ``probe_images`` (default: the first held-out images), keyed by its name, arguments, model and
    weights fingerprint. ``dataset``: the protocol whose defaults it takes (a name, or the entry a front door
    resolved; default: the zoo model's)."""
    if probe_images is None:
        if held_out is None:
            raise ValueError("give probe_images or held_out: the defense is probed on clean images")
        probe_images = held_out[0][:IMAGES]
    entry = setting.resolve(dataset, model=model, images=probe_images, needed_by="runs.target")
    undefended = models.load(model, weights=weights, device=device)
    variant = defenses.variant(defense)
    # the defense wraps a copy of the loaded model (the same weights: loading them again gives the same tensors),
    # or the zoo variant it serves, which it loads by the plain model's name
    base = model if variant is not None else copy.deepcopy(undefended)
    defended = defenses.prepare(defense, base, dataset=entry, weights=weights, held_out=held_out, seed=seed,
                                device=device, **kwargs)
    key = cache.key({"defense": defense, "kwargs": kwargs, "dataset": entry.name, "model": model, "seed": seed,
                     "weights": fingerprint(model, weights, variant)})
    return Target.of(defended, probe_images.to(model_device(undefended)), undefended, key, defense)


def provenance(device: str | torch.device) -> dict[str, str]:
    """Where a number is computed: the workbench version, the git commit of the checkout (``"none"`` outside
    one), the torch version and ``device``."""
    return {"workbench": cache.version(), "git commit": _git_commit(), "torch": torch.__version__,
            "device": str(device)}


@functools.cache
def _git_commit() -> str:
    """The checkout's commit, asked once per process (every run records it; the code a process runs is the code
    it imported, whatever is committed later)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or "none"


def run(target: Target | nn.Module, attack: str | Attack | EOT, x: torch.Tensor, y: torch.Tensor, *, budget: int,
        dataset: str | Protocol | None = None, norm: str = "linf", eps: float | None = None,
        threat: Threat | None = None, seed: int = 0,
        eot: int = 1, attack_kwargs: Mapping[str, Any] | None = None, targets: torch.Tensor | None = None, repeats: int = REPEATS,
        record: bool = False, reference: nn.Module | None = None, keep_images: int = 0, quantize: bool = False,
        scores: str = "logits", batch_size: int | str | None = "auto", cache_dir: str | Path | None = None,
        recompute: bool = False, progress: bool = False, serving: Mapping[str, Any] | None = None) -> Result:
    """Run ``attack`` against ``target`` on the images ``x`` with labels ``y`` (untargeted, or towards
    ``targets``), ``budget`` queries per image; see the module docstring.

    Args:
        target: a ``Target`` (``target`` or ``Target.of``), or any module (probed here on the first images of
            ``x``).
        attack: a registry name, run with ``dataset``'s settings for ``norm``, ``eps`` and ``attack_kwargs`` on
            top, under EOT with ``eot`` queries per point; or an attack object (``Attack`` or ``EOT``) you built,
            run as it is (then ``norm``, ``eps``, ``eot``, ``attack_kwargs`` and ``seed`` are its own: giving them
            is an error; the defense is still reseeded at ``seed``).
        dataset: the protocol of a named attack (a name, or the entry a front door resolved); default the zoo
            model's inside the defense, else the one protocol the images fit (``setting.resolve``); images of
            another protocol's shape are a ValueError.
        norm, eps: the threat model of a named attack (eps default: the protocol's for ``norm``); or ``threat``,
            the ``Threat`` a front door built (``experiment.Experiment.threat``), instead of both.
        repeats: fresh queries per final image when re-evaluating.
        record, reference, keep_images, quantize, scores: the Oracle's options (``workbench.oracle.Oracle``); the
            recordings come back in the result.
        batch_size: the Oracle's default policy (``"auto"``); an int only where an experiment varies how many
            images the defense sees per query batch (UniG's batch dependence).
        cache_dir: keep the result there (a named attack on a target with a ``key``; not with recordings);
            ``recompute``: run even where a cached result exists, and rewrite it.
        serving: how the Oracle serves a stateful defense (``accounts``, ``refusal``, ``ban``, ``new_accounts``,
            ``interleave``, ``benign``: see ``workbench.oracle.Oracle``); default its defaults.
    """
    target = target if isinstance(target, Target) else _target(target, x, reference)
    repeats = checks.at_least("repeats", repeats, 1)
    oracle_options = {"record": record, "reference": reference, "keep_images": keep_images, "quantize": quantize,
                      "scores": scores, "batch_size": batch_size, **(serving or {})}
    if not isinstance(attack, str):
        _own_settings(attack, norm=norm != "linf", eps=eps is not None, threat=threat is not None, eot=eot != 1,
                      attack_kwargs=bool(attack_kwargs), cache_dir=cache_dir is not None)
        return _run(target, attack, x, y, budget, seed, targets, repeats, oracle_options)
    entry = setting.resolve(dataset, model=target.defended, images=x, needed_by="runs.run")
    kwargs = dict(attack_kwargs or {})
    if threat is None:  # eps= first, else an eps among the attack's arguments, else the protocol's
        threat = setting.threat(entry, norm, eps if eps is not None else kwargs.get("eps"))
    elif norm != "linf" or eps is not None:
        raise ValueError(f"give threat= or norm= and eps=, not both (threat={threat})")
    built = attacks.build(attack, dataset=entry, norm=threat.norm, seed=seed, eot=eot, progress=progress,
                          **{**kwargs, "eps": threat.eps})
    key = None
    if cache_dir is not None and target.key is not None:
        if record or quantize or scores != "logits" or serving:
            raise ValueError("cache_dir keeps plain runs only: drop cache_dir, or record / quantize / scores / "
                             "serving")
        key = _key(target, attack, built, x, y, targets, budget, seed, eot, repeats, kwargs, entry.name, batch_size)
    folder = cache.writable(Path(cache_dir)) if key is not None else None
    if folder is not None and not recompute and (row := cache.load(folder / f"{key}.json",
                                                                   _problem(key, len(x)))) is not None:
        return Result.from_row(row)
    result = _run(target, built, x, y, budget, seed, targets, repeats, oracle_options)
    if folder is not None:
        cache.store(folder / f"{key}.json", {"key": key, "workbench": cache.version(), **result.as_row()})
    return result


def perturbations(targets: Mapping[str, Target | nn.Module], x: torch.Tensor, y: torch.Tensor, *, budget: int,
                  attack: str = "square", dataset: str | Protocol | None = None, seed: int = 0, show: int = 10,
                  progress: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The perturbations ``attack`` finds against each of ``targets`` (name -> defense) on the same images, as in
    UniG Fig. 3a: per name the first ``show`` perturbations ``x_adv - x`` and a note with the mean pairwise cosine
    of the perturbations of the images the attack fooled (by the final outcome: re-evaluated where the defense
    is randomized or batch-dependent; NaN below two), how many those are, and the observed and final robust
    accuracy."""
    show = checks.at_least("show", show, 1)
    deltas, notes = {}, {}
    for name, defended in targets.items():
        result = run(defended, attack, x, y, budget=budget, dataset=dataset, seed=seed, progress=progress)
        fooled = ~result.final
        delta = result.x_adv - x
        cosine = metrics.mean_pairwise_cosine(delta[fooled]) if int(fooled.sum()) >= 2 else float("nan")
        deltas[name] = delta[:show]
        notes[name] = (f"cos {cosine:.3f}\n({int(fooled.sum())} fooled)\nrobust {result.robust_accuracy():.2f}"
                       f" observed,\n{result.final_accuracy:.2f} final")
    return deltas, notes


def _target(target: Target | nn.Module, x: torch.Tensor, reference: nn.Module | None) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, nn.Module):
        if len(x) < PROBE_MIN:
            raise ValueError(f"target: a bare module is probed on the attacked images, and {len(x)} are too few (at "
                             f"least {PROBE_MIN}); pass runs.Target.of(module, probe_images) probed on more clean "
                             "images")
        return Target.of(target, x[:IMAGES], undefended=reference)
    raise ValueError(f"target must be a runs.Target (runs.target or Target.of) or an nn.Module, got "
                     f"{type(target).__name__}")


def _own_settings(attack: object, **given: bool) -> None:
    """An attack object brings its own settings: refuse the arguments that would set them again."""
    if not isinstance(attack, (Attack, EOT)):
        raise ValueError(f"attack must be a registry name ({', '.join(attacks.names())}) or an Attack / EOT object, "
                         f"got {type(attack).__name__}")
    clash = [name for name, was_given in given.items() if was_given]
    if clash:
        raise ValueError(f"{', '.join(clash)} only go with an attack name: the attack object {attack!r} has its own "
                         f"settings (and is not cached)")


def _run(target: Target, attack: Attack | EOT, x: torch.Tensor, y: torch.Tensor, budget: int, seed: int,
         targets: torch.Tensor | None, repeats: int, oracle_options: Mapping[str, Any]) -> Result:
    start = time.perf_counter()
    reseed(target.defended, seed)
    oracle = Oracle(target.defended, x, y, budget=budget, probes=target.probes, **oracle_options)
    result = attack.run(oracle, targets)
    shares = metrics.reevaluated(target.defended, result.x_adv, y, repeats) if target.reevaluate else None
    first = result.first_success.cpu()
    final = shares >= 0.5 if shares is not None else first < 0
    return dataclasses.replace(
        result, first_success=first, queries=result.queries.cpu(), clean_correct=result.clean_correct.cpu(),
        final=final, reevaluated=shares, budget=oracle.budget, seconds=time.perf_counter() - start,
        computed=provenance(model_device(target.defended)))


def _key(target: Target, attack: str, built: Any, x: torch.Tensor, y: torch.Tensor,
         targets: torch.Tensor | None, budget: int, seed: int, eot: int, repeats: int, kwargs: Mapping[str, Any],
         dataset: str, batch_size: int | str | None) -> str:
    """The cache key: a hash of everything the record depends on."""
    images = hashlib.sha256(x.cpu().numpy().tobytes() + y.cpu().numpy().tobytes() +
                            (b"" if targets is None else targets.cpu().numpy().tobytes())).hexdigest()
    settings = {k: v for k, v in kwargs.items() if k != "eps"}  # the threat below holds eps, given or defaulted
    return cache.key({"defense": target.key, "attack": attack, "kwargs": settings, "dataset": dataset,
                      "threat": [built.norm, built.eps], "budget": budget, "seed": seed, "eot": eot,
                      "repeats": repeats if target.reevaluate else None, "images": images,
                      "batch": batch_size, "workbench": cache.version()})


def _problem(key: str, n: int):
    def problem(row: dict[str, Any]) -> str | None:
        if row.get("key") != key or row.get("workbench") != cache.version():
            return "it belongs to another run or workbench version"
        if any(not isinstance(row.get(k), list) or len(row[k]) != n
               for k in ("first success", "queries", "clean correct", "final")):
            return "its per-image columns are missing or of the wrong length"
        return None

    return problem
