"""The acceptance scenarios behind the test suite's thresholds, in one table.

Each scenario measures some quantities for a seed (of whatever is random in it: the attack, the defense's noise,
PGD's start) with the test's sizes and the shipped zoo weights, and names the threshold each quantity must clear.
The tests assert them at seed 0 (``check``); ``python -m benchmarks.threshold_spread`` measures them over seeds
0-4 and prints each value's mean and spread beside its threshold: a threshold must clear the measured value by
more than its spread (another CPU rounds differently, which acts like another seed). Each test's docstring quotes
that line.
"""

from __future__ import annotations

import functools
import json
import operator
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
import torch

from workbench import data, experiment, experiments, leaderboard, losses, metrics, models, paths, protocol
from workbench import evaluate as evaluation
from workbench.attacks import build
from workbench.attacks.square import Square
from workbench.attacks.whitebox import pgd
from workbench.defenses.aaa import AAA
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.registry import build as defend
from workbench.oracle import Oracle

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Scenario:
    """``measure(seed) -> {quantity: value}`` and, per quantity, the threshold it must clear as (op, bound)."""

    measure: Callable[[int], dict[str, float]]
    thresholds: dict[str, tuple[str, float]]


@functools.cache
def _test() -> data.Dataset:
    return data.load("mnist", "test")


@functools.cache
def _cnn() -> torch.nn.Module:
    return models.load("mnist-cnn")


@functools.cache
def _cifar() -> data.Dataset:
    return data.load("cifar10-jpeg")  # the embedded 1000 test images


@functools.cache
def _resnet() -> torch.nn.Module:
    return models.load("cifar10-resnet20")


def _cifar_square(seed: int) -> Square:
    return build("square", dataset="cifar10-jpeg", seed=seed, progress=False)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return metrics.accuracy(metrics.predict(model, x), y)


def square_undefended(seed: int) -> dict[str, float]:
    x, y = _test()[:500]
    result = Square(eps=0.3, seed=seed, progress=False).run(Oracle(_cnn(), x, y, budget=1000))
    return {"robust@1000": result.robust_accuracy(), "robust@100 - robust@1000": result.robust_accuracy(100) -
            result.robust_accuracy()}


def aaa(seed: int) -> dict[str, float]:
    x, y = _test()[:200]
    plain = Square(eps=0.3, seed=seed, progress=False).run(Oracle(_cnn(), x, y, budget=500)).robust_accuracy()
    defended = AAA(_cnn()).calibrate(*_test()[500:])
    robust = Square(eps=0.3, seed=seed, progress=False).run(Oracle(defended, x, y, budget=500)).robust_accuracy()
    return {"plain": plain, "aaa - plain": robust - plain}


def adaptive(seed: int) -> dict[str, float]:
    x, y = _test()[:60]
    defended = AAA(_cnn(), "linear", temperature=1.414)
    robust = {n: build(n, dataset="mnist", seed=seed, progress=False).run(
        Oracle(defended, x, y, budget=300)).robust_accuracy() for n in ("square", "square-op", "square-bi")}
    return {"square - op": robust["square"] - robust["square-op"], "square - bi": robust["square"] - robust["square-bi"]}


def eot(seed: int) -> dict[str, float]:
    x, y = _test()[:100]
    noisy = InputNoise(_cnn(), sigma=0.02, seed=seed)
    observed, fresh = {}, {}
    for m in (1, 5):
        noisy.reseed(seed)
        result = build("square", dataset="mnist", eot=m, seed=seed, progress=False).run(
            Oracle(noisy, x, y, budget=100 * m))
        observed[m] = result.robust_accuracy(100 * m)
        fresh[m] = metrics.reevaluated_accuracy(noisy, result.x_adv, y, repeats=10)
    return {"observed M1 - M5": observed[1] - observed[5], "re-evaluated M1 - M5": fresh[1] - fresh[5],
            "re-evaluated - observed (M1)": fresh[1] - observed[1]}


def unig(seed: int) -> dict[str, float]:
    x, y = _test()[:100]
    plain = build("square", dataset="mnist", seed=seed, progress=False).run(
        Oracle(_cnn(), x, y, budget=300)).robust_accuracy()
    defended = defend("unig", _cnn(), seed=seed)
    result = build("square", dataset="mnist", seed=seed, progress=False).run(Oracle(defended, x, y, budget=300))
    return {"re-evaluated - plain": metrics.reevaluated_accuracy(defended, result.x_adv, y, repeats=5) - plain}


def unig_clean(seed: int) -> dict[str, float]:
    test = _test()
    defended = defend("unig", _cnn(), seed=seed)
    clean, out = metrics.predict(_cnn(), test.x, 100), metrics.predict(defended, test.x, 100)
    return {"agreement": metrics.agreement(out, clean),
            "|accuracy change|": abs(metrics.accuracy(out, test.y) - metrics.accuracy(clean, test.y))}


def at(seed: int) -> dict[str, float]:
    x, y = _test()[:200]
    model = models.load("mnist-cnn-at")
    robust = _accuracy(model, pgd(model, x, y, eps=0.3, seed=seed, progress=False), y)
    plain = _accuracy(_cnn(), pgd(_cnn(), x, y, eps=0.3, seed=seed, progress=False), y)
    return {"AT pgd": robust, "AT pgd - plain pgd": robust - plain}


def noise(seed: int) -> dict[str, float]:
    test = _test()
    clean = _accuracy(_cnn(), test.x, test.y)
    return {f"{n} accuracy loss": clean - _accuracy(defend(n, _cnn(), seed=seed), test.x, test.y)
            for n in ("rnd", "snd", "snd-beta")}


def rnd_gf(seed: int) -> dict[str, float]:
    test = _test()
    return {"rnd-gf accuracy": _accuracy(defend("rnd-gf", "mnist-cnn", seed=seed), test.x, test.y)}


def whitebox(seed: int) -> dict[str, float]:
    x, y = _test()[:200]
    gcm = GCM(_cnn())
    return {"pgd cnn": _accuracy(_cnn(), pgd(_cnn(), x, y, eps=0.3, seed=seed, progress=False), y),
            "pgd gcm": _accuracy(gcm, pgd(gcm, x, y, eps=0.3, seed=seed, progress=False), y),
            "bpda gcm": _accuracy(gcm, pgd(gcm, x, y, eps=0.3, seed=seed, bpda=gcm.concealment_name, progress=False), y)}


def cifar_clean(seed: int) -> dict[str, float]:
    test = _cifar()
    logits = metrics.predict(_resnet(), test.x)
    aaa = AAA(_resnet()).calibrate(*test[500:])
    return {"accuracy": metrics.accuracy(logits, test.y),
            "AAA agreement": metrics.agreement(metrics.predict(aaa, test.x), logits)}


def cifar_square(seed: int) -> dict[str, float]:
    x, y = _cifar()[:100]
    return {"robust@2500": _cifar_square(seed).run(Oracle(_resnet(), x, y, budget=2500)).robust_accuracy()}


def cifar_at(seed: int) -> dict[str, float]:
    x, y = _cifar()[:200]
    eps = protocol.get("cifar10-jpeg").eps["linf"]
    at = models.load("cifar10-resnet20-at")
    robust = _accuracy(at, pgd(at, x, y, eps=eps, steps=20, seed=seed, progress=False), y)
    plain = _accuracy(_resnet(), pgd(_resnet(), x, y, eps=eps, steps=20, seed=seed, progress=False), y)
    return {"AT clean": _accuracy(at, x, y), "AT pgd-20": robust, "AT pgd-20 - plain pgd-20": robust - plain}


def cifar_gf(seed: int) -> dict[str, float]:
    test = _cifar()
    return {"rnd-gf accuracy": _accuracy(defend("rnd-gf", "cifar10-resnet20", dataset="cifar10-jpeg", seed=seed),
                                         test.x, test.y)}


def cifar_aaa(seed: int) -> dict[str, float]:
    x, y = _cifar()[:50]
    plain = _cifar_square(seed).run(Oracle(_resnet(), x, y, budget=300)).robust_accuracy()
    defended = AAA(_resnet()).calibrate(*_cifar()[500:])
    robust = _cifar_square(seed).run(Oracle(defended, x, y, budget=300)).robust_accuracy()
    return {"plain@300": plain, "aaa - plain": robust - plain}


@functools.cache
def _imagenet() -> data.Dataset:
    return data.load("imagenet-samples")  # the embedded 100 samples


@functools.cache
def _lite0() -> torch.nn.Module:
    return models.load("efficientnet-lite0")


def _true_margin(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The undefended Lite0's margin on ``x``: what AAA's serving hides."""
    return losses.margin(metrics.predict(_lite0(), x), y)


def imagenet_aaa(seed: int) -> dict[str, float]:
    """Square (linf 4/255, the ImageNet protocol's) for 150 queries on 8 embedded samples, against the undefended
    Lite0 and against AAA-linear calibrated on held-out samples: robust accuracy, and how far each attack's final
    images lowered the *true* (undefended) margin. AAA's attractors should mislead the attack into raising it."""
    x, y = _imagenet()[:8]
    defended = AAA(_lite0()).calibrate(*_imagenet()[70:])
    clean = _true_margin(x, y)
    out = {}
    for name, model in (("plain", _lite0()), ("aaa", defended)):
        result = build("square", dataset="imagenet-samples", seed=seed, progress=False).run(
            Oracle(model, x, y, budget=150))
        out[f"{name}@150"] = result.robust_accuracy()
        out[f"{name} margin drop"] = (clean - _true_margin(result.x_adv, y)).mean().item()
    out["aaa - plain"] = out["aaa@150"] - out["plain@150"]
    return out


RECOMPUTED = {"mnist-table": (("none", "square"), ("aaa-linear", "square")),
              "cifar10-table": (("none", "square"), ("aaa-linear", "square")),
              "cifar10-adaptive": (("aaa-linear", "square"), ("aaa-sine", "square-switch"))}  # (defense, attack)


def _recorded_cells(table: str, seed: int) -> dict[str, float]:
    """The cells ``RECOMPUTED[table]`` of recorded table ``table`` (Square and its switch-direction variant),
    recomputed from their stored configuration at their first budget (the Square schedule does not depend on the
    budget, so a shorter run is the recorded one's beginning) with attack seed ``seed``: how far each lands from
    the recorded seed-0 value."""
    rows = experiments.recorded(table)
    out = {}
    for defense, attack in RECOMPUTED[table]:
        row = rows[(rows["defense"] == defense) & (rows["attack"] == attack)].iloc[0]
        recorded = experiments.Cell.from_config(json.loads(row["config"]))
        first = recorded.budgets[0]
        with tempfile.TemporaryDirectory() as folder:
            again = experiments.run_cell(replace(recorded, budgets=(first,), seed=seed), cache_dir=folder)
        out[f"{defense} {attack} |robust@{first} - recorded|"] = abs(again[f"robust@{first}"] - row[f"robust@{first}"])
        out[f"{defense} {attack} |clean acc - recorded|"] = abs(again["clean acc"] - row["clean acc"])
    return out


DETECTED = ("cifar10-detection-attacks", "blacklight", 8 / 255, "square")  # (table, detector, eps, attack)
DETECTION_BUDGET = 10


def _detection_cell(seed: int) -> dict[str, float]:
    """A recorded cell of the detection table (``DETECTED``: plain Square against Blacklight at 8/255),
    recomputed on its images with ``DETECTION_BUDGET`` queries at attack and salt seed ``seed``: Blacklight flags
    Square's third query (its second perturbed one) unless the image fell at query 2, so the detected share and
    the first detection are settled within a few queries and a short run gives the recorded ones."""
    table, detector, eps, attack = DETECTED
    rows = pd.read_csv(paths.tables_dir() / f"{table}.csv")
    row = rows[(rows["detector"] == detector) & ((rows["eps"] - eps).abs() < 1e-5) & (rows["attack"] == attack)]
    row = row.iloc[0]
    exp = experiment.setup(detector, dataset="cifar10-jpeg", n=int(row["images"]), budgets=(DETECTION_BUDGET,),
                           eps=eps, seed=seed)
    found = metrics.detection(exp.run(attack))
    return {f"{detector} {attack} |detected - recorded|": abs(found["detected"] - row["detected"]),
            f"{detector} {attack} |first detection - recorded|": abs(found["first detection"] - row["first detection"])}


RESTARTED = ("cifar10-worst-case", "aaa-sine")  # (board, defense): a recorded row whose first restart is recomputed


def _restarted_cell(seed: int) -> dict[str, float]:
    """The first restart of a recorded board row (``RESTARTED``), recomputed from its per-image records at the
    board's first budget (100 queries; the Square schedule does not depend on the budget, so a shorter run is the
    recorded run's beginning): the restart attack at seed 1 + ``seed`` on the images the seed-0 suite left robust
    (those not broken at seed 0), against the images the recorded restart at seed 1 broke within 100 queries (the
    per-image records' ``seed`` 1: a restart attacks only what every earlier run left, so each image it broke
    names it). The defense is deterministic, so the observed query is the outcome."""
    board, defense = RESTARTED
    row = leaderboard.recorded(board).set_index("defense").loc[defense]
    images = pd.read_csv(leaderboard.images_dir(paths.tables_dir() / f"{board}.csv") / f"{defense}.csv")
    dataset, n, budgets = leaderboard.BOARDS[board]
    exp = experiment.setup(defense, None, dataset=dataset, n=n, budgets=(budgets[0],), seed=1 + seed)
    alive = torch.tensor((images["seed"] != 0).to_numpy()).nonzero().flatten()
    planned = evaluation._parse(row["restart attack"])
    sub = replace(exp, x=exp.x[alive], y=exp.y[alive])
    result = sub.run(planned.attack, eot=planned.eot, attack_kwargs=planned.kwargs)
    again = int(((result.first_success > 0) & (result.first_success <= budgets[0])).sum())
    recorded = int(((images["seed"] == 1) & (images["at query"] <= budgets[0])).sum())
    return {f"{defense} restart |broken@{budgets[0]} - recorded| / images": abs(again - recorded) / len(alive)}


SCENARIOS: dict[str, Scenario] = {
    "square": Scenario(square_undefended, {"robust@1000": ("<=", 0.05), "robust@100 - robust@1000": (">=", 0.0)}),
    "aaa": Scenario(aaa, {"plain": ("<=", 0.05), "aaa - plain": (">=", 0.5)}),
    "adaptive": Scenario(adaptive, {"square - op": (">", 0.2), "square - bi": (">", 0.2)}),
    "eot": Scenario(eot, {"observed M1 - M5": (">", 0.0), "re-evaluated M1 - M5": (">", 0.0),
                          "re-evaluated - observed (M1)": (">", 0.0)}),
    "unig": Scenario(unig, {"re-evaluated - plain": (">", 0.35)}),
    "unig-clean": Scenario(unig_clean, {"agreement": (">=", 0.995), "|accuracy change|": ("<=", 0.005)}),
    "at": Scenario(at, {"AT pgd - plain pgd": (">", 0.3)}),
    "noise": Scenario(noise, {"rnd accuracy loss": ("<=", 0.02), "snd accuracy loss": ("<=", 0.02),
                              "snd-beta accuracy loss": ("<=", 0.02)}),
    "rnd-gf": Scenario(rnd_gf, {"rnd-gf accuracy": (">", 0.95)}),
    "whitebox": Scenario(whitebox, {"pgd cnn": ("<", 0.05), "pgd gcm": (">", 0.8), "bpda gcm": ("<", 0.05)}),
    "cifar-clean": Scenario(cifar_clean, {"accuracy": (">=", 0.85), "AAA agreement": (">=", 0.995)}),
    "cifar-square": Scenario(cifar_square, {"robust@2500": ("<=", 0.05)}),
    "cifar-aaa": Scenario(cifar_aaa, {"plain@300": ("<=", 0.5), "aaa - plain": (">=", 0.2)}),
    "cifar-at": Scenario(cifar_at, {"AT clean": (">=", 0.6), "AT pgd-20 - plain pgd-20": (">", 0.2)}),
    "cifar-gf": Scenario(cifar_gf, {"rnd-gf accuracy": (">", 0.8)}),
    "imagenet-aaa": Scenario(imagenet_aaa, {"plain@150": ("<=", 0.75), "aaa - plain": (">", 0.0),
                                            "plain margin drop": (">=", 1.0), "aaa margin drop": ("<=", 0.0)}),
    **{f"recorded-{t}": Scenario(functools.partial(_recorded_cells, t),
                                 {f"{d} {a} |{q} - recorded|": ("<=", bound) for d, a in cells
                                  for q, bound in (("robust@100", 0.1), ("clean acc", 1e-4))})
       for t, cells in RECOMPUTED.items()},
    "recorded-restart": Scenario(_restarted_cell, {f"{RESTARTED[1]} restart |broken@100 - recorded| / images":
                                                   ("<=", 0.1)}),
    "recorded-detection": Scenario(_detection_cell, {f"{DETECTED[1]} {DETECTED[3]} |detected - recorded|": ("<=", 0.1),
                                                     f"{DETECTED[1]} {DETECTED[3]} |first detection - recorded|":
                                                         ("<=", 1.0)}),
}


def failures(name: str, values: dict[str, float]) -> list[str]:
    """The thresholds of scenario ``name`` that ``values`` do not clear."""
    return [f"{name}: {q} = {values[q]:.4f}, threshold {op} {bound}"
            for q, (op, bound) in SCENARIOS[name].thresholds.items() if not OPS[op](values[q], bound)]


def check(name: str, seed: int = 0) -> dict[str, float]:
    """Measure scenario ``name`` at ``seed`` and assert every threshold; returns the values."""
    values = SCENARIOS[name].measure(seed)
    assert not failures(name, values), failures(name, values)
    return values
