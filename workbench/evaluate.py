"""Evaluate any defense in one call: probe it, run every score-based attack it calls for, restart the strongest,
and report the worst case per image (an image is robust only if it survives every run), with 95% intervals.

The suite follows from the probes (``workbench.probes``):

- always: the standard suite (Square, SimBA, SignHunter, NES and Bandits, each with the dataset's settings from
  its spec in ``workbench.attacks.registry``);
- op-Square, bi-Square and switch-Square when the defense is a deterministic post-processing that changes the
  scores but keeps every prediction (AAA-like: AAA's adaptive attacks, AAA Sec. 5.6, and the RLS paper's switch
  rule);
- Square on the DLR ratio (``square-dlr``, which no positive rescaling of the logits changes) when the defense
  changes the scores but keeps every prediction, randomized or not (RLS-like);
- EOT-Square, EOT-NES and EOT-Bandits when it is randomized, averaging ``eot`` queries per point: by default as
  many as its measured noise calls for (``eot_samples``), fewer with a warning where the budget cannot pay;
- when it refuses queries (a detector, ``Probes.refuses``): the standard attacks that can use a refusal (NES and
  Bandits cannot: a finite difference needs both scores; they are left out with a warning) and OARS's adaptive
  Square (``oars-square``); every attack table then carries the detection columns (``metrics.detection``:
  detected share, first detection, undetected success, refused share);
- the kappa Square when its final images are re-evaluated (randomized or batch-dependent): an image counts as
  broken only when the best wrong logit leads by ``kappa`` (``kappa_for``: past the noise, past a gate), aimed
  at the re-evaluated outcome the defense is ranked by; for a randomized defense also under EOT;
- a re-evaluation of every final image by ``repeats`` fresh queries when it is randomized or batch-dependent:
  an image counts as broken by an attack when the majority of those queries misclassify it.

Restarts: the attack that broke the most images runs again at the seeds seed + 1, seed + 2, ... on the images
every run so far left robust, until a restart breaks no new image or after ``RESTARTS`` (our rule; docs/protocol.md
gives the measurement behind it). The whole plan is checked before the first query (``check_plan``).

Results: ``attacks`` (one row per attack of the suite: its seed, the images it ran on, robust accuracy at every
budget as the attacker observed it, and the final, re-evaluated one), ``restarts`` (the same for every restart),
``images`` (one row per image: each run's first
successful query, -1 for none, its re-evaluated share of correct answers, which attack at which seed broke it at
which query, and ``final``: whether it survived every run, re-evaluated where needed), ``worst`` (the worst-case
robust accuracy at every budget, as observed, and ``final``: the headline number, re-evaluated where needed; each
with its 95% Wilson interval over the images, ``"<key> lo"`` / ``"<key> hi"``), ``probes``, ``settings`` (with the
restarts that ran) and ``plot()``. ``table()`` gives every accuracy with its interval.

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
import warnings
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
KAPPA_SIGMAS = 2.0  # the kappa attack's margin in stds of one query's margin noise (our rule: see kappa_for)
GATE_SLACK = 1.25  # ... and past a gate: the largest margin the probes saw gated, times this (our rule)
RESTARTS = 4  # the most restarts of the strongest attack (at the seeds seed + 1, ..., seed + 4; our rule)


@dataclasses.dataclass(frozen=True)
class Planned:
    """One attack of the suite: a registry attack, optionally under EOT with ``eot`` queries per point, and
    optionally counting an image as broken only when it is misclassified by the margin ``kappa``."""

    attack: str
    eot: int = 1
    kappa: float = 0.0

    @property
    def label(self) -> str:
        base = self.attack if self.eot == 1 else f"eot{self.eot}-{self.attack}"
        return base if not self.kappa else f"{base} kappa={self.kappa:g}"

    @property
    def kwargs(self) -> dict[str, float]:
        """The attack's arguments beyond its spec's settings."""
        return {"kappa": self.kappa} if self.kappa else {}


def suite(probes: Probes, attacks: str | Sequence[str] = "standard", eot: int | None = None,
          budget: int | None = None, defense: str | None = None) -> list[Planned]:
    """The attacks to run for a defense with these probes (``attacks``: "standard", or a list of registry
    names, optionally ``"eot<M>-<name>"`` and ``"<name> kappa=<K>"``); ``eot``: queries per EOT point (None:
    ``eot_samples`` of the measured noise, lowered with a warning to what ``budget`` affords: the clean point and
    one two-point step); ``defense``: the registry defense's name, whose own adaptive attacks
    (``attacks.registry.against``) join the standard plan after the suites. The standard plan ends with the kappa
    Square (``kappa_for``) for a defense whose final images are re-evaluated, and for a randomized one also with
    the kappa Square under EOT."""
    if isinstance(attacks, str):
        if attacks != "standard":
            raise ValueError(f'attacks must be "standard" or a list of attack names, got {attacks!r}')
    else:
        return [_parse(name) for name in attacks]
    plan = [Planned(a) for a in attack_registry.suite("standard")]
    if probes.refuses:  # a detector: the attacks that need every score cannot run; OARS's adaptive ones join
        dropped = [p.attack for p in plan if not attack_registry.spec(p.attack).cls.handles_refusals]
        warnings.warn(f"the defense refuses queries: {', '.join(dropped)} cannot use a refusal and are left out; "
                      f"the stateful suite ({', '.join(attack_registry.suite('stateful'))}) runs", stacklevel=2)
        plan = [p for p in plan if p.attack not in dropped]
        plan += [Planned(a) for a in attack_registry.suite("stateful")]
    if probes.post_processing:
        plan += [Planned(a) for a in attack_registry.suite("post-processing")]
    if probes.keeps_predictions and probes.changes_scores:
        plan += [Planned(a) for a in attack_registry.suite("keeps-predictions")]
    m = 1
    if probes.randomized:
        m = eot if eot is not None else _affordable_eot(eot_samples(probes.noise or 0.0), budget)
        plan += [Planned(a, m) for a in attack_registry.suite("eot")]
    plan += [Planned(a) for a in attack_registry.against(defense)]
    if not probes.deterministic and kappa_for(probes) > 0:  # kappa 0 would be Square again
        plan.append(Planned("square", 1, kappa_for(probes)))
        if probes.randomized:
            plan.append(Planned("square", m, kappa_for(probes, m)))
    return plan


def eot_samples(noise: float) -> int:
    """Queries averaged per EOT point for a defense whose scores have the relative noise ``noise``
    (``probes.relative_noise``): enough that the averaged margin's std is at most ``EOT_RESOLUTION`` of the typical
    margin (the noise falls as one over the square root of the count), within ``EOT_RANGE``. Our rule."""
    wanted = math.ceil((checks.non_negative("noise", noise) / EOT_RESOLUTION) ** 2)
    return int(min(max(wanted, EOT_RANGE[0]), EOT_RANGE[1]))


def _affordable_eot(wanted: int, budget: int | None) -> int:
    """``wanted`` queries per EOT point, or fewer (at least 2) where ``budget`` cannot pay for the clean point and
    a step of two points at that count (NES and Bandits spend two points a step), with a warning that says so."""
    if budget is None or 3 * wanted <= budget:
        return wanted
    m = max(EOT_RANGE[0], budget // 3)
    warnings.warn(f"the noise calls for EOT over {wanted} queries per point, but budget={budget} pays for the clean "
                  f"point and one step at {m} at most: the EOT attacks average {m} (raise the budget to "
                  f"{3 * wanted} for {wanted})", stacklevel=3)
    return m


def kappa_for(probes: Probes, eot: int = 1) -> float:
    """The confidence margin of the kappa Square against a defense whose final images are re-evaluated, for an
    attack that averages ``eot`` queries per point: the largest of ``KAPPA_SIGMAS`` times the margin noise of
    one point (one query's, over the square root of ``eot``: an image left that far past the boundary stays
    misclassified under most fresh draws), ``GATE_SLACK`` times the largest margin at which a gate was seen open
    (the image is carried past the gate, where the defense answers deterministically), and twice the largest
    logit change the batch context made (a batch-dependent defense). Rounded to 0.01 (labels and cache keys stay
    stable across machines). Our rule, from Carlini and Wagner (2017)'s confidence and Tramer et al. (2020)'s
    advice to attack the quantity a defense is judged by."""
    terms = [0.0]
    if probes.margin_noise is not None:
        terms.append(KAPPA_SIGMAS * probes.margin_noise / math.sqrt(checks.at_least("eot", eot, 1)))
    if probes.gate is not None:
        terms.append(GATE_SLACK * probes.gate)
    if probes.batch_dependent:
        terms.append(2 * probes.difference)
    return round(max(terms), 2)


def _parse(name: str) -> Planned:
    name, _, kappa = str(name).partition(" kappa=")
    k = checks.non_negative("kappa", _number(kappa)) if kappa else 0.0
    head, _, rest = name.partition("-")
    if head.startswith("eot") and head[3:].isdigit() and int(head[3:]) >= 2:
        checks.choice("attack", rest, attack_registry.names())
        return Planned(rest, int(head[3:]), k)
    checks.choice("attack", name, attack_registry.names() + tuple(f"eot5-{a}" for a in attack_registry.names()) +
                  ("square kappa=2",))
    return Planned(name, 1, k)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def check_plan(plan: Sequence[Planned], exp: Experiment, repeats: int) -> None:
    """Fail before the first query where the plan cannot run as asked: every attack is built with its settings
    (an unknown argument or a bad kappa is a ValueError naming it), and the budget must pay for the clean query and
    one step of every attack (``attacks.registry.affordable``: EOT's points of ``eot`` queries included)."""
    checks.at_least("repeats", repeats, 1)
    if not plan:
        raise ValueError("attacks: the plan has no attacks")
    for planned in plan:
        built = attack_registry.build(planned.attack, dataset=exp.protocol, norm=exp.threat.norm, eot=planned.eot,
                                      progress=False, **{"eps": exp.threat.eps, **planned.kwargs})
        attack_registry.affordable(built, exp.budget, planned.label)


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
    restarts: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """The per-attack table, the restarts and the worst case as its last row; every accuracy with its 95%
        interval over the images each run attacked (``metrics.interval``)."""
        worst = {"attack": "worst case", "seed": "all", "images": len(self.images),
                 **{f"robust@{b}": self.worst[f"robust@{b}"] for b in self.budgets}, "final": self.worst["final"]}
        table = pd.concat([self.attacks, self.restarts, pd.DataFrame([worst])], ignore_index=True)
        return metrics.with_intervals(table, [f"robust@{b}" for b in self.budgets] + ["final"], "images")

    def to_markdown(self) -> str:
        probes = ", ".join(f"{k}: {v}" for k, v in self.probes.as_dict().items()
                           if k not in ("difference", "z", "noise", "margin_noise", "gate"))
        final = "re-evaluated with fresh queries" if self.reevaluated else "as observed (deterministic defense)"
        restarts = self.settings["restarts"]
        lo, hi = self.worst["final lo"], self.worst["final hi"]
        return (f"Probes: {probes}\n\n" + plots.with_intervals(self.table()).to_markdown(index=False, floatfmt=".3f")
                + f"\n\n`final`: robust accuracy after {self.budgets[-1]} queries, {final}; [lo, hi]: 95% Wilson "
                f"interval over the images. Restarts of {restarts['attack']}: seeds {restarts['seeds']} (new images "
                f"broken: {restarts['new']}). Worst case over {len(self.attacks) + len(self.restarts)} runs: **{self.worst['final']:.3f}** "
                f"[{lo:.3f}, {hi:.3f}] on {len(self.images)} images.")

    def plot(self, ax: plt.Axes | None = None) -> plt.Figure:
        """Robust accuracy against queries for every attack of the suite (as observed) and the per-image worst
        case over every run, restarts included, with the final worst case and its interval."""
        return plots.worst_case(self.images, self.attacks["attack"].tolist(), self.budgets[-1], self.worst["final"],
                                (self.worst["final lo"], self.worst["final hi"]), ax=ax)


def evaluate(defended: nn.Module | runs.Target | Experiment, x: torch.Tensor | None = None,
             y: torch.Tensor | None = None, *, undefended: nn.Module | None = None, dataset: str | None = None,
             norm: str = "linf", eps: float | None = None, budget: int | None = None,
             budgets: Sequence[int] | None = None, attacks: str | Sequence[str] = "standard", seed: int = 0,
             eot: int | None = None, repeats: int = runs.REPEATS, restarts: int = RESTARTS,
             probe_images: torch.Tensor | None = None, cache_dir: str | Path | None = None,
             cache_key: str | None = None, progress: bool = True) -> Evaluation:
    """Evaluate ``defended`` on the images ``x`` with labels ``y`` (see the module docstring).

    Args:
        defended: an ``experiment.Experiment`` (``experiment.setup`` makes one from names: then its images,
            protocol, threat, budgets and seed are the evaluation's, and only ``attacks``, ``eot``, ``repeats``,
            ``restarts``, ``cache_dir`` and ``progress`` may be given); or any ``nn.Module`` mapping images in
            [0, 1] to logits, or a defense ``runs.target`` made (then ``undefended``, ``probe_images`` and
            ``cache_key`` come with it), with the images ``x`` and labels ``y``.
        undefended: the model without the defense (for the prediction probe; recommended).
        dataset: the protocol (``workbench.protocol``: its eps and the attacks' settings) to use;
            default the zoo model's inside the defense, else the one protocol the images' shape fits
            (``setting.resolve``); otherwise a ValueError asks for it. Images of another shape are refused.
        norm, eps: the threat model (eps default: the dataset's, e.g. l-inf 0.3 on MNIST, 8/255 on CIFAR-10).
        budget: queries per image (default 1000); budgets: where robust accuracy is read (default 10, 100, ... up
            to budget).
        attacks: "standard" (the suite the probes call for) or a list of names (``"eot5-square"`` for EOT,
            ``"square kappa=2"`` for a confidence margin).
        seed: seed of every attack (and the defense's randomness, reseeded before each attack).
        eot: queries averaged per point by the EOT attacks (None: from the measured noise, ``eot_samples``);
            repeats: fresh queries per re-evaluated image.
        restarts: the most restarts of the strongest attack (0: none; see the module docstring).
        probe_images: clean images to probe the defense with (default: the first 32 of ``x``).
        cache_dir, cache_key: keep every attack's per-image record under ``cache_dir`` (a killed run resumes);
            ``cache_key`` must identify the defense (the CLI uses its name, arguments and weights fingerprint).

    The whole plan is checked before the first query (``check_plan``): a budget that cannot pay for one step of
    an attack (an EOT point of ``eot`` queries included) is a ValueError before anything runs.
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
    restarts = checks.at_least("restarts", restarts, 0)
    plan = suite(exp.target.probes, attacks, eot, exp.budget, exp.target.defense)
    check_plan(plan, exp, repeats)
    return run_plan(exp, plan, repeats=repeats, restarts=restarts, cache_dir=cache_dir, progress=progress)


def run_plan(exp: Experiment, plan: Sequence[Planned], *, repeats: int, restarts: int,
             cache_dir: str | Path | None = None, progress: bool = True) -> Evaluation:
    """Run a checked plan (``check_plan``) on an experiment: every attack at the experiment's seed, then the
    restarts of the strongest one on the images still robust, and the per-image worst case over all runs."""
    target = exp.target
    runs_done: list[_Run] = []
    for planned in tqdm(plan, desc="attacks", unit="attack", disable=not progress):
        record = exp.run(planned.attack, eot=planned.eot, attack_kwargs=planned.kwargs, repeats=repeats,
                         cache_dir=cache_dir, progress=progress)
        runs_done.append(_Run(planned, exp.seed, np.arange(len(exp.x)), record))
    strongest = max(runs_done, key=lambda r: int((~r.result.final).sum()))  # the first of equals: plan order
    seeds, new = [exp.seed], []
    with tqdm(total=restarts, desc="restarts", unit="seed", disable=not progress) as bar:
        for restart in range(1, restarts + 1):
            alive = np.flatnonzero(_worst_final(runs_done, len(exp.x)))
            if not len(alive):
                break
            sub = dataclasses.replace(exp, x=exp.x[alive], y=exp.y[alive], seed=exp.seed + restart)
            record = sub.run(strongest.planned.attack, eot=strongest.planned.eot,
                             attack_kwargs=strongest.planned.kwargs, repeats=repeats, cache_dir=cache_dir,
                             progress=progress)
            runs_done.append(_Run(strongest.planned, sub.seed, alive, record))
            seeds.append(sub.seed)
            new.append(int((~record.final).sum()))
            bar.update(1)
            if not new[-1]:  # a restart that breaks no new image ends them: the next would most likely not either
                break
        bar.total = bar.n  # stopped early by the rule: the bar ends complete, not as an error
        bar.refresh()
    settings = {"dataset": exp.protocol.name, "norm": exp.threat.norm, "eps": exp.threat.eps, "budget": exp.budget,
                "seed": exp.seed, "eot": max([p.eot for p in plan] + [1]), "repeats": repeats, "n": len(exp.x),
                "reevaluated": target.reevaluate, "kappa": max([p.kappa for p in plan] + [0.0]),
                "restarts": {"attack": strongest.planned.label, "seeds": seeds, "new": new, "cap": restarts}}
    images = _images(exp.y, runs_done, exp.budget, target.reevaluate)
    suite_runs = [r for r in runs_done if r.seed == exp.seed]
    return Evaluation(target.probes, _per_attack(suite_runs, exp.budgets), images, _worst(images, exp.budgets),
                      exp.budgets, target.reevaluate, settings, _per_attack(runs_done[len(suite_runs):], exp.budgets))


@dataclasses.dataclass(frozen=True)
class _Run:
    """One attack run of an evaluation: what ran, at which seed, on which images (indices into the experiment's),
    and its result on them."""

    planned: Planned
    seed: int
    images: np.ndarray
    result: Result

    def label(self, seed: int) -> str:
        return self.planned.label if self.seed == seed else f"{self.planned.label} @seed {self.seed}"

    def spread(self, values: torch.Tensor, n: int, fill: Any, dtype: Any) -> np.ndarray:
        """Per image of the experiment: this run's ``values`` where it ran, ``fill`` elsewhere."""
        out = np.full(n, fill, dtype=dtype)
        out[self.images] = values.numpy()
        return out


def _worst_final(done: Sequence[_Run], n: int) -> np.ndarray:
    """Per image: robust after every run so far."""
    robust = np.ones(n, dtype=bool)
    for r in done:
        robust &= r.spread(r.result.final, n, True, bool)
    return robust


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


def _images(y: torch.Tensor, done: Sequence[_Run], budget: int, reevaluate: bool) -> pd.DataFrame:
    """One row per image: each run's first successful query (-1: none, or not run on it) and re-evaluated share,
    and the worst case: which attack at which seed broke it, at which query."""
    n, seed = len(y), done[0].seed
    table = pd.DataFrame({"image": np.arange(n), "label": y.cpu().numpy(),
                          "clean correct": done[0].result.clean_correct.numpy()})
    for r in done:
        table[f"{r.label(seed)}: query"] = r.spread(r.result.first_success, n, -1, np.int64)
        if reevaluate:
            table[f"{r.label(seed)}: re-evaluated"] = r.spread(r.result.reevaluated, n, np.nan, np.float64)
    broken = np.stack([~r.spread(r.result.final, n, True, bool) for r in done])  # (runs, images)
    queries = np.stack([table[f"{r.label(seed)}: query"].to_numpy() for r in done])
    # the query that broke it (the budget where only the re-evaluation saw it fall); the earliest run wins ties
    when = np.where(broken, np.where(queries > 0, queries, budget), np.iinfo(np.int64).max)
    first = when.argmin(0)
    robust = ~broken.any(0)
    table["broken by"] = np.where(robust, "", np.asarray([r.planned.label for r in done], dtype=object)[first])
    table["seed"] = np.where(robust, -1, np.asarray([r.seed for r in done])[first])
    table["at query"] = np.where(robust, -1, when[first, np.arange(n)])
    table["final"] = robust
    return table


def _per_attack(done: Sequence[_Run], budgets: Sequence[int]) -> pd.DataFrame:
    """One row per run: robust accuracy at every budget as observed and ``final``, on the images it ran on."""
    rows = []
    for r in done:
        first = r.result.first_success.numpy()
        fooled = first[first > 0]
        rows.append({"attack": r.planned.label, "seed": r.seed, "images": len(first),
                     **{f"robust@{b}": float(v) for b, v in zip(budgets, metrics.robust_by_query(first, budgets))},
                     "final": r.result.final_accuracy,
                     "median queries": float(np.median(fooled)) if len(fooled) else float("nan"),
                     "seconds": r.result.seconds, **metrics.detection(r.result)})
    columns = ["attack", "seed", "images", *(f"robust@{b}" for b in budgets), "final", "median queries", "seconds"]
    detected = [c for c in rows[0] if c not in columns] if rows else []  # against a detector: its columns
    return pd.DataFrame(rows, columns=columns + detected)


def _worst(images: pd.DataFrame, budgets: Sequence[int]) -> dict[str, float]:
    """The per-image worst case at every budget (as observed) and ``final``, each with its 95% interval."""
    first = metrics.earliest(np.stack([images[c].to_numpy() for c in images.columns if c.endswith(": query")]))
    worst = {f"robust@{b}": float(r) for b, r in zip(budgets, metrics.robust_by_query(first, budgets))}
    worst["final"] = float(images["final"].mean())
    for key in list(worst):
        worst[f"{key} lo"], worst[f"{key} hi"] = metrics.interval(worst[key], len(images))
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
    parser.add_argument("--restarts", type=int, default=RESTARTS, help="the most restarts of the strongest attack")
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
    report = evaluate(exp, restarts=args.restarts, cache_dir=folder)
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
