"""The one run path: one attack against one prepared defense on given images -> a per-image record.

``evaluate``, the experiment grids, the defense report, the widgets and the benchmarks all run attacks through
``run``, so there is one batch-size policy (the Oracle's default), one definition of re-evaluation, one cache with
one key scheme and one weights fingerprint.

- A :class:`Prepared` defense is probed once (``prepare`` or ``Prepared.of``); the probes are passed to every
  Oracle built on it, which then does not probe again.
- ``run`` reseeds the defense once (at the run's seed), runs the attack through a fresh Oracle, and returns a
  :class:`Record`: per image the first successful query (-1: none), the queries spent, whether the clean image
  was correct, and the **re-evaluated outcome**: for a randomized or batch-dependent defense, each final image is
  queried ``repeats`` more times (fresh noise) and counts as robust when the majority of those queries classify
  it correctly (``metrics.reevaluated``); for a deterministic defense one query tells the truth and robust means
  never misclassified within the budget.
- With ``cache_dir``, a record is stored atomically under a hash of everything it depends on (the defense's key
  with its weights fingerprint, the attack and its settings, the threat model, budget, seed, re-evaluation and
  the images) and validated when read back: a killed grid resumes without recomputing a finished run. A record
  keeps the provenance of the run that computed it (``provenance``: workbench version, git commit, torch, device),
  so a grid assembled later from the cache reports where each number was really computed.

Example::

    prepared = prepare("aaa-linear", "mnist-cnn", dataset="mnist", held_out=test[500:])
    record = run(prepared, "square", x, y, budget=1000)
    record.robust_accuracy(100), record.reevaluated_accuracy
"""

from __future__ import annotations

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
from workbench.defenses import registry as defenses
from workbench.oracle import Oracle
from workbench.probes import IMAGES, Probes, probe, reseed
from workbench.results import AttackResult
from workbench.threat import model_device

REPEATS = 10  # fresh queries per final image when re-evaluating


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A defense ready to attack: the module, the undefended model (None if unknown), its probes (measured once)
    and ``key``: what identifies it for the cache (None: its runs are not cached)."""

    defended: nn.Module
    undefended: nn.Module | None
    probes: Probes
    key: str | None = None

    @classmethod
    def of(cls, defended: nn.Module, probe_images: torch.Tensor, undefended: nn.Module | None = None,
           key: str | None = None) -> Prepared:
        """Wrap a defense of your own: probed once on ``probe_images``."""
        checks.module("defended", defended)
        return cls(defended, undefended, probe(defended, probe_images, undefended), key)

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


def prepare(defense: str, model: str, *, dataset: str | None = None, weights: str | Path | None = None,
            held_out: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
            device: str | torch.device | None = None, probe_images: torch.Tensor | None = None,
            **kwargs: Any) -> Prepared:
    """The registry defense (or import path) ``defense`` around the zoo model ``model`` (the zoo variant the
    defense needs is picked by ``defenses.prepare``), calibrated on ``held_out`` where it is calibrated, probed
    once on ``probe_images`` (default: the first held-out images), keyed by its name, arguments, model and
    weights fingerprint. ``dataset``: the protocol whose defaults it takes (default: the zoo model's)."""
    images = probe_images if probe_images is not None else held_out[0] if held_out is not None else None
    dataset = setting.resolve(dataset, model=model, images=images, needed_by="runs.prepare").name
    undefended = models.load(model, weights=weights, device=device)
    defended = defenses.prepare(defense, model, dataset=dataset, weights=weights, held_out=held_out, seed=seed,
                                device=device, **kwargs)
    if probe_images is None:
        if held_out is None:
            raise ValueError("give probe_images or held_out: the defense is probed on clean images")
        probe_images = held_out[0][:IMAGES]
    key = cache.key({"defense": defense, "kwargs": kwargs, "dataset": dataset, "model": model, "seed": seed,
                     "weights": fingerprint(model, weights, defenses.variant(defense))})
    return Prepared.of(defended, probe_images.to(model_device(undefended)), undefended, key)


@dataclasses.dataclass
class Record:
    """One attack run's per-image outcome (tensors on the CPU, one entry per image).

    Attributes:
        first_success: the query at which the image was first misclassified as the attacker saw it; -1: never.
        queries: queries spent. clean_correct: the clean query was correct.
        robust: the re-evaluated outcome (see the module docstring).
        reevaluated: the share of fresh queries that classified the final image correctly (None where the defense
            is deterministic and nothing was re-evaluated).
        budget, seconds: the run's budget and wall time (of the run that computed it, when read from the cache).
        computed: the provenance of the run that computed it (``provenance``); None for a record cached before
            records kept it.
        result: the attack's full result (adversarial images...), None when the record came from the cache.
    """

    first_success: torch.Tensor
    queries: torch.Tensor
    clean_correct: torch.Tensor
    robust: torch.Tensor
    reevaluated: torch.Tensor | None
    budget: int
    seconds: float
    computed: dict[str, str] | None = None
    result: AttackResult | None = None

    def robust_accuracy(self, budget: int | None = None) -> float:
        """Robust accuracy after ``budget`` queries (default: the run's) as the attacker observed it."""
        budget = self.budget if budget is None else checks.at_least("budget", budget, 1)
        if budget > self.budget:
            raise ValueError(f"budget={budget} exceeds the run's budget of {self.budget} queries")
        fooled = (self.first_success > 0) & (self.first_success <= budget)
        return 1.0 - fooled.float().mean().item()

    @property
    def reevaluated_accuracy(self) -> float:
        """The share of images robust after re-evaluation (the observed final robust accuracy where the defense is
        deterministic)."""
        return self.robust.double().mean().item()

    def query_stats(self) -> dict[str, float]:
        """Mean and median queries of the images that were correct when clean and then fooled."""
        return metrics.success_queries(self.first_success, self.clean_correct)

    def as_row(self) -> dict[str, Any]:
        return {"first success": self.first_success.tolist(), "queries": self.queries.tolist(),
                "clean correct": self.clean_correct.tolist(), "robust": self.robust.tolist(),
                "re-evaluated correct": None if self.reevaluated is None else self.reevaluated.tolist(),
                "budget": self.budget, "seconds": self.seconds, "computed": self.computed}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Record:
        shares = row["re-evaluated correct"]
        return cls(torch.tensor(row["first success"], dtype=torch.long), torch.tensor(row["queries"], dtype=torch.long),
                   torch.tensor(row["clean correct"], dtype=torch.bool), torch.tensor(row["robust"], dtype=torch.bool),
                   None if shares is None else torch.tensor(shares, dtype=torch.float64), int(row["budget"]),
                   float(row["seconds"]), _provenance_of(row.get("computed")))


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


def _provenance_of(stored: object) -> dict[str, str] | None:
    """A cached record's provenance if it is well formed (the keys of ``provenance``, string values), else None."""
    keys = {"workbench", "git commit", "torch", "device"}
    if isinstance(stored, dict) and set(stored) == keys and all(isinstance(v, str) for v in stored.values()):
        return dict(stored)
    return None


def run(prepared: Prepared, attack: str, x: torch.Tensor, y: torch.Tensor, *, budget: int, dataset: str | None = None,
        norm: str = "linf", eps: float | None = None, seed: int = 0, eot: int = 1,
        targets: torch.Tensor | None = None, repeats: int = REPEATS, attack_kwargs: Mapping[str, Any] | None = None,
        batch_size: int | str | None = "auto", cache_dir: str | Path | None = None, recompute: bool = False, progress: bool = False) -> Record:
    """Run the registry attack ``attack`` (with ``dataset``'s settings for ``norm``, ``eps`` and
    ``attack_kwargs`` on top, under EOT with ``eot`` queries per point) against ``prepared`` on the images ``x``
    with labels ``y`` (untargeted, or towards ``targets``), ``budget`` queries per image; see the module
    docstring. ``batch_size``: the Oracle's default policy (``"auto"``); an int only where an experiment varies
    how many images the defense sees per query batch (UniG's batch dependence). ``cache_dir``: keep the record
    there (only for a prepared defense with a ``key``); ``recompute``: run even where a cached record exists, and
    rewrite it. ``dataset``: default the zoo model's inside the defense, else the one protocol the images fit
    (``setting.resolve``); images of another protocol's shape are a ValueError."""
    if not isinstance(prepared, Prepared):
        raise ValueError(f"prepared must be a runs.Prepared (runs.prepare or Prepared.of), got "
                         f"{type(prepared).__name__}")
    dataset = setting.resolve(dataset, model=prepared.defended, images=x, needed_by="runs.run").name
    kwargs = {**(attack_kwargs or {}), **({"eps": eps} if eps is not None else {})}
    built = attacks.build(attack, dataset=dataset, norm=norm, seed=seed, eot=eot, progress=progress, **kwargs)
    repeats = checks.at_least("repeats", repeats, 1)
    key = _key(prepared, attack, built, x, y, targets, budget, seed, eot, repeats, kwargs, dataset, batch_size) \
        if cache_dir is not None and prepared.key is not None else None
    folder = cache.writable(Path(cache_dir)) if key is not None else None
    if folder is not None and not recompute and (row := cache.load(folder / f"{key}.json",
                                                                   _problem(key, len(x)))) is not None:
        return Record.from_row(row)
    record = _run(prepared, built, x, y, budget, seed, targets, repeats, batch_size)
    if folder is not None:
        cache.store(folder / f"{key}.json", {"key": key, "workbench": cache.version(), **record.as_row()})
    return record


def _run(prepared: Prepared, attack: Any, x: torch.Tensor, y: torch.Tensor, budget: int, seed: int,
         targets: torch.Tensor | None, repeats: int, batch_size: int | str | None) -> Record:
    start = time.perf_counter()
    reseed(prepared.defended, seed)
    oracle = Oracle(prepared.defended, x, y, budget=budget, probes=prepared.probes, batch_size=batch_size)
    result = attack.run(oracle, targets)
    first = torch.where(result.success, result.first_success, torch.full_like(result.first_success, -1)).cpu()
    shares = metrics.reevaluated(prepared.defended, result.x_adv, y, repeats) if prepared.reevaluate else None
    robust = shares >= 0.5 if shares is not None else first < 0
    return Record(first, result.queries.cpu(), result.clean_correct.cpu(), robust, shares, oracle.budget,
                  time.perf_counter() - start, provenance(model_device(prepared.defended)), result)


def _key(prepared: Prepared, attack: str, built: Any, x: torch.Tensor, y: torch.Tensor,
         targets: torch.Tensor | None, budget: int, seed: int, eot: int, repeats: int, kwargs: Mapping[str, Any],
         dataset: str, batch_size: int | str | None) -> str:
    """The cache key: a hash of everything the record depends on."""
    images = hashlib.sha256(x.cpu().numpy().tobytes() + y.cpu().numpy().tobytes() +
                            (b"" if targets is None else targets.cpu().numpy().tobytes())).hexdigest()
    return cache.key({"defense": prepared.key, "attack": attack, "kwargs": dict(kwargs), "dataset": dataset,
                      "threat": [built.norm, built.eps], "budget": budget, "seed": seed, "eot": eot,
                      "repeats": repeats if prepared.reevaluate else None, "images": images,
                      "batch": batch_size, "workbench": cache.version()})


def _problem(key: str, n: int):
    def problem(row: dict[str, Any]) -> str | None:
        if row.get("key") != key or row.get("workbench") != cache.version():
            return "it belongs to another run or workbench version"
        if any(not isinstance(row.get(k), list) or len(row[k]) != n
               for k in ("first success", "queries", "clean correct", "robust")):
            return "its per-image columns are missing or of the wrong length"
        return None

    return problem
