"""The attack issue's acceptance numbers on the embedded default, measured in one run (seed 0, CPU or CUDA).

1. Every registered attack, l-inf eps 0.3, MNIST presets, undefended CNN, the first 500 test images, one run of
   2500 queries: robust accuracy at 100 / 1000 / 2500 queries, against the goals (Square <= 5% and SignHunter
   <= 10% at 1000; SimBA, NES, Bandits <= 30% at 2500). Also the papers' CIFAR / ImageNet hyperparameters where
   the MNIST preset differs from them (NES lr 2/255; Bandits online_lr 100 on a 50x50 prior).
2. Adaptive Square vs AAA-linear / AAA-sine (temperature tuned on test images 500-999), the first 100 test
   images, 1000 queries (AAA Table 6's setting in miniature).
3. EOT (M = 1, 5, 10) vs input noise sigma 0.02, 200 images, robust accuracy after 100 / 300 points, as the
   attacker saw it and re-evaluated with 10 fresh noisy queries of the final images.
4. White-box FGSM / PGD-40 / BPDA vs the undefended CNN and GCM, 500 images.

    python -m benchmarks.attack_table [--sections 1234] [--device cpu|cuda]
"""

from __future__ import annotations

import pandas as pd

from benchmarks import common
from workbench import metrics
from workbench.attacks import build, names
from workbench.attacks.whitebox import fgsm, pgd
from workbench.defenses.aaa import AAA
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.oracle import Oracle

GOALS = {"square": (1000, 0.05), "signhunter": (1000, 0.10), "simba": (2500, 0.30), "simba-pixel": (2500, 0.30),
         "nes": (2500, 0.30), "bandits": (2500, 0.30)}
PAPER_SETTINGS = {"nes (CIFAR lr 2/255)": ("nes", {"lr": 2 / 255}),
                  "bandits (ImageNet: prior 50, online_lr 100)": ("bandits", {"prior_size": 50, "online_lr": 100.0})}


def _row(result, budgets) -> dict:
    row = {f"robust@{b}": result.robust_accuracy(b) for b in budgets}
    return {**row, **metrics.query_stats(result), "seconds": result.seconds}


def every_attack(model, x, y) -> pd.DataFrame:
    rows = {}
    runs = [(name, name, {}) for name in names()] + [(label, n, kw) for label, (n, kw) in PAPER_SETTINGS.items()]
    for label, name, kwargs in runs:
        result = build(name, dataset="mnist", seed=0, **kwargs).run(Oracle(model, x, y, budget=2500))
        rows[label] = _row(result, (100, 1000, 2500))
        if label in GOALS:
            budget, goal = GOALS[label]
            rows[label]["goal"] = f"<= {goal:.0%} @ {budget}"
            rows[label]["met"] = result.robust_accuracy(budget) <= goal
    return pd.DataFrame(rows).T


def adaptive(model, x, y, held_out) -> pd.DataFrame:
    rows = {}
    for curve in ("linear", "sine"):
        defended = AAA(model, curve).calibrate(*held_out)
        for name in ("square", "square-op", "square-bi"):
            result = build(name, dataset="mnist", seed=0).run(Oracle(defended, x, y, budget=1000))
            rows[(f"AAA-{curve} (T={defended.temperature:.3g})", name)] = _row(result, (100, 1000))
    return pd.DataFrame(rows).T


def eot(model, x, y) -> pd.DataFrame:
    noisy = InputNoise(model, sigma=0.02, seed=0)
    rows = {}
    for m in (1, 5, 10):
        noisy.reseed(0)
        result = build("square", dataset="mnist", seed=0, eot=m).run(Oracle(noisy, x, y, budget=300 * m))
        rows[f"M={m}"] = {"observed@100 points": result.robust_accuracy(100 * m),
                          "observed@300 points": result.robust_accuracy(300 * m),
                          "re-evaluated@300 points": metrics.reevaluated_accuracy(noisy, result.x_adv, y, 10),
                          "queries": int(result.queries.sum()), "seconds": result.seconds}
    return pd.DataFrame(rows).T


def whitebox(model, x, y) -> pd.DataFrame:
    defended = GCM(model)
    layer = defended.concealment_name
    attacks = {"clean": lambda m, b: x, "FGSM": lambda m, b: fgsm(m, x, y, eps=0.3, bpda=b),
               "PGD-40": lambda m, b: pgd(m, x, y, eps=0.3, bpda=b)}
    rows = {}
    for target, net, bpda in [("undefended", model, None), ("GCM", defended, None), ("GCM + BPDA", defended, layer)]:
        rows[target] = {name: metrics.accuracy(metrics.predict(net, attack(net, bpda)), y)
                        for name, attack in attacks.items()}
    defended(x)
    rows["GCM"]["input elements changed (clean)"] = f"{defended.last_changed} / {defended.last_total}"
    return pd.DataFrame(rows).T


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--sections", default="1234")
    args = parser.parse_args()
    test = common.test_set()
    model = common.model(args.device)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    sections = {"1": ("every attack, l-inf 0.3, 500 images, 2500 queries", lambda: every_attack(model, *test[:500])),
                "2": ("adaptive Square vs AAA, 100 images, 1000 queries",
                      lambda: adaptive(model, *test[:100], test[500:])),
                "3": ("EOT vs input noise sigma 0.02, 200 images", lambda: eot(model, *test[:200])),
                "4": ("white-box vs GCM, l-inf 0.3, 500 images", lambda: whitebox(model, *test[:500]))}
    for key in args.sections:
        title, make = sections[key]
        print(f"\n## {key}. {title} (device {args.device})\n")
        print(make().round(4).to_string(), flush=True)


if __name__ == "__main__":
    main()
