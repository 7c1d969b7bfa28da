"""Evaluate any defense in one call: probe it, run every score-based attack it calls for, and report the
worst case per image (an image is robust only if it survives every attack that ran).

The suite follows from the probes (``workbench.probes``):

- always: the standard suite (Square, SimBA, SignHunter, NES and Bandits, each with the dataset's settings from
  its spec in ``workbench.attacks.registry``);
- op-Square, bi-Square and switch-Square when the defense is a deterministic post-processing that changes the
  scores but keeps every prediction (AAA-like: AAA's adaptive attacks, AAA Sec. 5.6, and the RLS paper's switch
  rule);
- Square on the DLR ratio (``square-dlr``, which no positive rescaling of the logits changes) when the defense
  changes the scores but keeps every prediction, randomized or not (RLS-like);
- EOT-Square, EOT-NES and EOT-Bandits when it is randomized, averaging ``eot`` queries per point: by default as
  many as its measured noise calls for (``eot_samples``);
- a re-evaluation of every final image by ``repeats`` fresh queries when it is randomized or batch-dependent:
  an image counts as broken by an attack when the majority of those queries misclassify it.

Results: ``attacks`` (one row per attack: robust accuracy at every budget as the attacker observed it, and the
final, re-evaluated one), ``images`` (one row per image: each attack's first successful query, -1 for none, its
re-evaluated share of correct answers, which attack broke it at which query, and ``final``: whether it survived
every attack, re-evaluated where needed), ``worst`` (the worst-case
robust accuracy at every budget, as observed, and ``final``: the headline number, re-evaluated where needed),
``probes``, and ``plot()``.

Command line::

    python -m workbench.evaluate aaa-linear --n 100 --budget 1000
    python -m workbench.evaluate my_package.defenses:factory --model mnist-cnn --csv out.csv

Example::

    >>> report = evaluate(defended, x, y, undefended=model, budget=1000)
    >>> report.worst["final"], report.images.query("final == False").head()
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from workbench import checks, experiment, metrics, paths, plots, protocol, runs
from workbench.attacks import registry as attack_registry
from workbench.defenses import registry as defenses
from workbench.experiment import Experiment
from workbench.probes import Probes
from workbench.results import Result

EOT_RESOLUTION = 0.05  # the averaged margin's std the EOT attacks aim at, as a share of the typical margin
EOT_RANGE = (2, 32)  # the fewest and most queries per EOT point (32: a 1000-query budget still gives 31 steps)


@dataclasses.dataclass(frozen=True)
class Planned:
    """One attack of the suite: a registry attack, optionally under EOT with ``eot`` queries per point."""

    attack: str
    eot: int = 1

    @property
    def label(self) -> str:
        return self.attack if self.eot == 1 else f"eot{self.eot}-{self.attack}"


def suite(probes: Probes, attacks: str | Sequence[str] = "standard", eot: int | None = None) -> list[Planned]:
    """The attacks to run for a defense with these probes (``attacks``: "standard", or a list of registry
    names, optionally ``"eot<M>-<name>"``); ``eot``: queries per EOT point (None: ``eot_samples`` of the
    measured noise)."""
    if isinstance(attacks, str):
        if attacks != "standard":
            raise ValueError(f'attacks must be "standard" or a list of attack names, got {attacks!r}')
    else:
        return [_parse(name) for name in attacks]
    plan = [Planned(a) for a in attack_registry.suite("standard")]
    if probes.post_processing:
        plan += [Planned(a) for a in attack_registry.suite("post-processing")]
    if probes.keeps_predictions and probes.changes_scores:
        plan += [Planned(a) for a in attack_registry.suite("keeps-predictions")]
    if probes.randomized:
        m = eot if eot is not None else eot_samples(probes.noise or 0.0)
        plan += [Planned(a, m) for a in attack_registry.suite("eot")]
    return plan


def eot_samples(noise: float) -> int:
    """Queries averaged per EOT point for a defense whose scores have the relative noise ``noise``
    (``probes.relative_noise``): enough that the averaged margin's std is at most ``EOT_RESOLUTION`` of the typical
    margin (the noise falls as one over the square root of the count), within ``EOT_RANGE``. Our rule."""
    wanted = math.ceil((checks.non_negative("noise", noise) / EOT_RESOLUTION) ** 2)
    return int(min(max(wanted, EOT_RANGE[0]), EOT_RANGE[1]))


def _parse(name: str) -> Planned:
    head, _, rest = str(name).partition("-")
    if head.startswith("eot") and head[3:].isdigit() and int(head[3:]) >= 2:
        checks.choice("attack", rest, attack_registry.names())
        return Planned(rest, int(head[3:]))
    checks.choice("attack", name, attack_registry.names() + tuple(f"eot5-{a}" for a in attack_registry.names()))
    return Planned(name)


@dataclasses.dataclass
class Evaluation:
    """The result of ``evaluate`` (see the module docstring)."""

    probes: Probes
    attacks: pd.DataFrame
    images: pd.DataFrame
    worst: dict[str, float]
    budgets: tuple[int, ...]
    reevaluated: bool
    settings: dict[str, Any]

    def table(self) -> pd.DataFrame:
        """The per-attack table with the worst case as its last row."""
        worst = {"attack": "worst case", **{f"robust@{b}": self.worst[f"robust@{b}"] for b in self.budgets},
                 "final": self.worst["final"]}
        return pd.concat([self.attacks, pd.DataFrame([worst])], ignore_index=True)

    def to_markdown(self) -> str:
        probes = ", ".join(f"{k}: {v}" for k, v in self.probes.as_dict().items() if k not in ("difference", "z", "noise"))
        final = "re-evaluated with fresh queries" if self.reevaluated else "as observed (deterministic defense)"
        return (f"Probes: {probes}\n\n" + self.table().to_markdown(index=False, floatfmt=".3f") +
                f"\n\n`final`: robust accuracy after {self.budgets[-1]} queries, {final}. Worst case over "
                f"{len(self.attacks)} attacks: **{self.worst['final']:.3f}** on {len(self.images)} images.")

    def plot(self, ax: plt.Axes | None = None) -> plt.Figure:
        """Robust accuracy against queries for every attack (as observed) and the per-image worst case."""
        return plots.worst_case(self.images, self.attacks["attack"].tolist(), self.budgets[-1],
                                self.worst["final"], ax=ax)


def evaluate(defended: nn.Module | runs.Target | Experiment, x: torch.Tensor | None = None,
             y: torch.Tensor | None = None, *, undefended: nn.Module | None = None, dataset: str | None = None,
             norm: str = "linf", eps: float | None = None, budget: int | None = None,
             budgets: Sequence[int] | None = None, attacks: str | Sequence[str] = "standard", seed: int = 0,
             eot: int | None = None, repeats: int = runs.REPEATS, probe_images: torch.Tensor | None = None,
             cache_dir: str | Path | None = None, cache_key: str | None = None, progress: bool = True) -> Evaluation:
    """Evaluate ``defended`` on the images ``x`` with labels ``y`` (see the module docstring).

    Args:
        defended: an ``experiment.Experiment`` (``experiment.setup`` makes one from names: then its images,
            protocol, threat, budgets and seed are the evaluation's, and only ``attacks``, ``eot``, ``repeats``,
            ``cache_dir`` and ``progress`` may be given); or any ``nn.Module`` mapping images in [0, 1] to logits,
            or a defense ``runs.target`` made (then ``undefended``, ``probe_images`` and ``cache_key`` come with
            it), with the images ``x`` and labels ``y``.
        undefended: the model without the defense (for the prediction probe; recommended).
        dataset: the protocol (``workbench.protocol``: its eps and the attacks' settings) to use;
            default the zoo model's inside the defense, else the one protocol the images' shape fits
            (``setting.resolve``); otherwise a ValueError asks for it. Images of another shape are refused.
        norm, eps: the threat model (eps default: the dataset's, e.g. l-inf 0.3 on MNIST, 8/255 on CIFAR-10).
        budget: queries per image (default 1000); budgets: where robust accuracy is read (default 10, 100, ... up
            to budget).
        attacks: "standard" (the suite the probes call for) or a list of names (``"eot5-square"`` for EOT).
        seed: seed of every attack (and the defense's randomness, reseeded before each attack).
        eot: queries averaged per point by the EOT attacks (None: from the measured noise, ``eot_samples``);
            repeats: fresh queries per re-evaluated image.
        probe_images: clean images to probe the defense with (default: the first 32 of ``x``).
        cache_dir, cache_key: keep every attack's per-image record under ``cache_dir`` (a killed run resumes);
            ``cache_key`` must identify the defense (the CLI uses its name, arguments and weights fingerprint).
    """
    if isinstance(defended, Experiment):
        given = {"x": x is not None, "y": y is not None, "undefended": undefended is not None,
                 "dataset": dataset is not None, "norm": norm != "linf", "eps": eps is not None,
                 "budget": budget is not None, "budgets": budgets is not None, "seed": seed != 0,
                 "probe_images": probe_images is not None, "cache_key": cache_key is not None}
        if any(given.values()):
            raise ValueError(f"{', '.join(k for k, v in given.items() if v)}: an experiment brings its own (give the "
                             "module and images instead, or set them in experiment.setup)")
        exp = defended
    else:
        exp = _experiment(defended, x, y, undefended=undefended, dataset=dataset, norm=norm, eps=eps, budget=budget,
                          budgets=budgets, seed=seed, probe_images=probe_images, cache_dir=cache_dir,
                          cache_key=cache_key)
    eot = None if eot is None else checks.at_least("eot", eot, 2)
    target = exp.target
    plan = suite(target.probes, attacks, eot)
    eot = max([p.eot for p in plan] + [1])
    settings = {"dataset": exp.protocol.name, "norm": exp.threat.norm, "eps": exp.threat.eps, "budget": exp.budget,
                "seed": exp.seed, "eot": eot, "repeats": repeats, "n": len(exp.x), "reevaluated": target.reevaluate}
    records = {}
    for planned in tqdm(plan, desc="attacks", unit="attack", disable=not progress):
        records[planned.label] = exp.run(planned.attack, eot=planned.eot, repeats=repeats, cache_dir=cache_dir,
                                         progress=progress)
    images = _images(exp.y, records, exp.budget, target.reevaluate)
    return Evaluation(target.probes, _per_attack(records, exp.budgets, images), images,
                      _worst(images, records, exp.budgets), exp.budgets, target.reevaluate, settings)


def _experiment(defended: nn.Module | runs.Target, x: torch.Tensor | None, y: torch.Tensor | None, *,
                budget: int | None, budgets: Sequence[int] | None, cache_dir: str | Path | None,
                cache_key: str | None, **given: Any) -> Experiment:
    """The experiment of a module (or target) and images: the budgets end at ``budget`` (default 1000)."""
    if x is None or y is None:
        raise ValueError("give the images x and labels y to evaluate the defense on (or an experiment.Experiment)")
    budget = checks.at_least("budget", budget if budget is not None else 1000, 1)
    budgets = checks.budgets("budgets", budgets if budgets is not None else _decades(budget))
    if budgets[-1] != budget:
        raise ValueError(f"budgets={list(budgets)} must end at budget={budget}")
    if (cache_dir is None) != (cache_key is None) and not isinstance(defended, runs.Target):
        raise ValueError("cache_dir and cache_key go together: give both (or neither)")
    return Experiment.of(defended, x, y, budgets=budgets, cache_key=cache_key, **given)


def _decades(budget: int) -> tuple[int, ...]:
    return tuple(b for b in (10, 100, 1000, 10000) if b < budget) + (budget,)


def _images(y: torch.Tensor, records: dict[str, Result], budget: int, reevaluate: bool) -> pd.DataFrame:
    """One row per image: each attack's first successful query and re-evaluated share, and the worst case."""
    first = next(iter(records.values()))
    table = pd.DataFrame({"image": np.arange(len(y)), "label": y.cpu().numpy(),
                          "clean correct": first.clean_correct.numpy()})
    for label, record in records.items():
        table[f"{label}: query"] = record.first_success.numpy()
        if reevaluate:
            table[f"{label}: re-evaluated"] = record.reevaluated.numpy()
    labels = list(records)
    broken = np.stack([~records[label].final.numpy() for label in labels])  # (attacks, images)
    queries = np.stack([table[f"{label}: query"].to_numpy() for label in labels])
    # the query that broke it (the budget where only the re-evaluation saw it fall); the earliest attack wins ties
    when = np.where(broken, np.where(queries > 0, queries, budget), np.iinfo(np.int64).max)
    first = when.argmin(0)
    robust = ~broken.any(0)
    by = np.where(robust, "", np.asarray(labels, dtype=object)[first])
    at = np.where(robust, -1, when[first, np.arange(len(table))])
    table["broken by"], table["at query"], table["final"] = by, at, robust
    return table


def _per_attack(records: dict[str, Result], budgets: Sequence[int], images: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for label, record in records.items():
        first = record.first_success.numpy()
        fooled = first[first > 0]
        row = {"attack": label, **{f"robust@{b}": float(r) for b, r in zip(budgets, metrics.robust_by_query(first,
                                                                                                      budgets))}}
        row["final"] = record.final_accuracy
        row["median queries"] = float(np.median(fooled)) if len(fooled) else float("nan")
        row["seconds"] = record.seconds
        rows.append(row)
    return pd.DataFrame(rows)


def _worst(images: pd.DataFrame, records: dict[str, Result], budgets: Sequence[int]) -> dict[str, float]:
    first = metrics.earliest(np.stack([r.first_success.numpy() for r in records.values()]))
    worst = {f"robust@{b}": float(r) for b, r in zip(budgets, metrics.robust_by_query(first, budgets))}
    worst["final"] = float(images["final"].mean())
    return worst


# ------------------------------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.evaluate",
                                     description="Evaluate a defense against every score-based attack it calls for.")
    parser.add_argument("defense", help="a registry name (" + ", ".join(defenses.names()) +
                        ") or an import path package.module:factory")
    parser.add_argument("--model", default=None, help="zoo model the defense wraps (default: the dataset's)")
    parser.add_argument("--weights", default=None, help="local checkpoint of the model (CIFAR-10 / ImageNet)")
    parser.add_argument("--dataset", default=None, choices=protocol.names(),
                        help="the protocol (default: the --model's zoo dataset; one of the two is needed)")
    parser.add_argument("--root", default=None, help="data folder (CIFAR-10 / ImageNet)")
    parser.add_argument("--norm", default="linf", choices=checks.NORMS)
    parser.add_argument("--eps", type=float, default=None)
    parser.add_argument("--n", type=int, default=100, help="images attacked (the first n of the test split)")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kwargs", default="{}", help="defense arguments as JSON, e.g. '{\"sigma\": 0.05}'")
    parser.add_argument("--csv", default=None, help="per-attack table (default <defense>-evaluation.csv; the "
                        "per-image table goes beside it as *-images.csv, the figure as *.png)")
    parser.add_argument("--cache-dir", default=None, help="default <data>/evaluations")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(None if argv is None else list(argv))
    kwargs = json.loads(args.kwargs)
    if args.dataset is None and args.model is None:
        parser.error("give --dataset or --model (a zoo model, whose dataset is then used)")
    exp = experiment.setup(args.defense, args.model, dataset=args.dataset, n=args.n, budgets=_decades(args.budget),
                           norm=args.norm, eps=args.eps, seed=args.seed, weights=args.weights, root=args.root,
                           defense_kwargs=kwargs)
    folder = None if args.no_cache else (args.cache_dir or paths.data_dir() / "evaluations")
    if folder is None:
        exp = dataclasses.replace(exp, target=dataclasses.replace(exp.target, key=None))
    report = evaluate(exp, cache_dir=folder)
    print(report.to_markdown())
    out = Path(args.csv or f"{args.defense.replace(':', '_').replace('.', '_')}-evaluation.csv")
    paths.atomic_write(out, lambda tmp: report.table().to_csv(tmp, index=False))
    images = out.with_name(out.stem + "-images.csv")
    paths.atomic_write(images, lambda tmp: report.images.to_csv(tmp, index=False))
    figure = report.plot()
    paths.atomic_write(out.with_suffix(".png"), lambda tmp: figure.savefig(tmp, format="png", dpi=110,
                                                                         bbox_inches="tight", metadata={"Software": None}))
    print(f"\nwritten: {out}, {images}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
