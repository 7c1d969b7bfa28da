"""The measured values behind the test suite's acceptance thresholds, over seeds 0-4, with their spread.

A test must not sit on a knife edge: its threshold has to clear the measured value by more than the value's
spread over seeds (another CPU rounds differently, which acts like another seed). This script measures each
quantity a test asserts on, with the test's sizes and the shipped zoo weights, for five seeds of whatever is
random in it (the attack, the defense's noise, PGD's start), and prints mean, std, min, max, the threshold and
the distance of the worst seed from it in units of std. The docstring of every test quotes its line.

Usage::

    python benchmarks/threshold_spread.py            # all (about 10 minutes on a 2-core CPU)
    python benchmarks/threshold_spread.py square aaa # some
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

from workbench import data, metrics, models
from workbench.attacks import build
from workbench.attacks.square import Square
from workbench.attacks.whitebox import pgd
from workbench.defenses.aaa import AAA
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.registry import build as defend
from workbench.oracle import Oracle

SEEDS = range(5)
test = data.load("mnist5k", "test")
cnn = models.load("mnist-cnn")


def accuracy(model, x, y) -> float:
    return metrics.accuracy(metrics.predict(model, x), y)


def square_undefended(seed: int) -> dict[str, float]:
    x, y = test[:500]
    result = Square(eps=0.3, seed=seed, progress=False).run(Oracle(cnn, x, y, budget=1000))
    return {"robust@1000": result.robust_accuracy()}


def aaa(seed: int) -> dict[str, float]:
    x, y = test[:200]
    plain = Square(eps=0.3, seed=seed, progress=False).run(Oracle(cnn, x, y, budget=500)).robust_accuracy()
    defended = AAA(cnn).calibrate(*test[500:])
    robust = Square(eps=0.3, seed=seed, progress=False).run(Oracle(defended, x, y, budget=500)).robust_accuracy()
    return {"plain": plain, "aaa - plain": robust - plain}


def adaptive(seed: int) -> dict[str, float]:
    x, y = test[:60]
    defended = AAA(cnn, "linear", temperature=1.414)
    robust = {n: build(n, seed=seed, progress=False).run(Oracle(defended, x, y, budget=300)).robust_accuracy()
              for n in ("square", "square-op", "square-bi")}
    return {"square - op": robust["square"] - robust["square-op"], "square - bi": robust["square"] - robust["square-bi"]}


def eot(seed: int) -> dict[str, float]:
    x, y = test[:100]
    noisy = InputNoise(cnn, sigma=0.02, seed=seed)
    observed, fresh = {}, {}
    for m in (1, 5):
        noisy.reseed(seed)
        result = build("square", eot=m, seed=seed, progress=False).run(Oracle(noisy, x, y, budget=100 * m))
        observed[m] = result.robust_accuracy(100 * m)
        fresh[m] = metrics.reevaluated_accuracy(noisy, result.x_adv, y, repeats=10)
    return {"observed M1 - M5": observed[1] - observed[5], "re-evaluated M1 - M5": fresh[1] - fresh[5],
            "re-evaluated - observed (M1)": fresh[1] - observed[1]}


def unig(seed: int) -> dict[str, float]:
    x, y = test[:100]
    plain = build("square", seed=seed, progress=False).run(Oracle(cnn, x, y, budget=300)).robust_accuracy()
    defended = defend("unig", cnn, seed=seed)
    result = build("square", seed=seed, progress=False).run(Oracle(defended, x, y, budget=300))
    return {"re-evaluated - plain": metrics.reevaluated_accuracy(defended, result.x_adv, y, repeats=5) - plain}


def unig_clean(seed: int) -> dict[str, float]:
    defended = defend("unig", cnn, seed=seed)
    clean, out = metrics.predict(cnn, test.x, 100), metrics.predict(defended, test.x, 100)
    return {"agreement": metrics.agreement(out, clean),
            "|accuracy change|": abs(metrics.accuracy(out, test.y) - metrics.accuracy(clean, test.y))}


def at(seed: int) -> dict[str, float]:
    x, y = test[:200]
    model = models.load("mnist-cnn-at")
    robust = accuracy(model, pgd(model, x, y, seed=seed, progress=False), y)
    plain = accuracy(cnn, pgd(cnn, x, y, seed=seed, progress=False), y)
    return {"AT pgd": robust, "AT pgd - plain pgd": robust - plain}


def noise(seed: int) -> dict[str, float]:
    clean = accuracy(cnn, test.x, test.y)
    row = {f"{n} accuracy loss": clean - accuracy(defend(n, cnn, seed=seed), test.x, test.y)
           for n in ("rnd", "snd", "snd-beta")}
    row["rnd-gf accuracy"] = accuracy(defend("rnd-gf", "mnist-cnn", seed=seed), test.x, test.y)
    return row


def whitebox(seed: int) -> dict[str, float]:
    x, y = test[:200]
    gcm = GCM(cnn)
    return {"pgd cnn": accuracy(cnn, pgd(cnn, x, y, seed=seed, progress=False), y),
            "pgd gcm": accuracy(gcm, pgd(gcm, x, y, seed=seed, progress=False), y),
            "bpda gcm": accuracy(gcm, pgd(gcm, x, y, seed=seed, bpda=gcm.concealment_name, progress=False), y)}


# name -> (measure, {quantity: threshold as text})
MEASURES: dict[str, tuple[Callable[[int], dict[str, float]], dict[str, str]]] = {
    "square": (square_undefended, {"robust@1000": "<= 0.05"}),
    "aaa": (aaa, {"plain": "<= 0.05", "aaa - plain": ">= 0.5"}),
    "adaptive": (adaptive, {"square - op": "> 0.2", "square - bi": "> 0.2"}),
    "eot": (eot, {"observed M1 - M5": "> 0", "re-evaluated M1 - M5": "> 0", "re-evaluated - observed (M1)": "> 0"}),
    "unig": (unig, {"re-evaluated - plain": "> 0.5"}),
    "unig-clean": (unig_clean, {"agreement": ">= 0.995", "|accuracy change|": "<= 0.005"}),
    "at": (at, {"AT pgd - plain pgd": "> 0.3", "AT pgd": ""}),
    "noise": (noise, {"rnd accuracy loss": "<= 0.02", "snd accuracy loss": "<= 0.02",
                      "snd-beta accuracy loss": "<= 0.02", "rnd-gf accuracy": "> 0.95"}),
    "whitebox": (whitebox, {"pgd cnn": "< 0.05", "pgd gcm": "> 0.8", "bpda gcm": "< 0.05"}),
}


def report(name: str) -> None:
    measure, thresholds = MEASURES[name]
    rows = [measure(s) for s in SEEDS]
    for quantity, threshold in thresholds.items():
        v = np.array([r[quantity] for r in rows])
        margin = ""
        if threshold:
            bound, std = float(threshold.split()[1]), v.std(ddof=1)
            margin = (f"mean {abs(v.mean() - bound) / std:.1f} std from it" if std > 0 else
                      f"no spread over seeds; mean {abs(v.mean() - bound):.3g} from it")
        print(f"{name:9s} {quantity:30s} {v.mean():.4f} ± {v.std(ddof=1):.4f} (min {v.min():.4f}, max {v.max():.4f}) "
              f"threshold {threshold or '-':8s} {margin}", flush=True)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    for name in argv or MEASURES:
        report(name)


if __name__ == "__main__":
    main(sys.argv[1:])
