"""The defense report on the embedded default (seed 0): every registered defense around the zoo's MNIST CNN
(AT and RND-GF on their fine-tuned zoo variants), Square l-inf eps 0.3, the first 500 test images, 100 / 1000
queries; calibrated defenses (AAA, temperature scaling) are tuned on test images 500-999. DENT costs about 20
forward passes per query on the CPU (6 Adam steps through the whole network), so it is attacked on the first
``--slow-n`` images (default 100); the "images" column says how many each row used.

    python benchmarks/defense_report.py [--n 500] [--slow-n 100] [--budget 1000] [--only aaa-linear,unig]
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from workbench import data, models
from workbench.defenses.registry import names, prepare, variant
from workbench.report import defense_report

SLOW = ("dent",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--slow-n", type=int, default=100)
    parser.add_argument("--only", default=",".join(names()))
    args = parser.parse_args()
    torch.manual_seed(0)
    test = data.load("mnist5k", "test")
    model = models.load("mnist-cnn")
    defenses = {}
    for name in args.only.split(","):
        defenses[name] = prepare(name, "mnist-cnn" if variant(name) else model, held_out=test[500:])
    tables = []
    for group, n in [([k for k in defenses if k not in SLOW], args.n), ([k for k in defenses if k in SLOW], args.slow_n)]:
        if group:
            table = defense_report({k: defenses[k] for k in group}, model, *test[:n], budgets=(100, args.budget))
            tables.append(table.assign(images=n))
    table = pd.concat(tables)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print("Square l-inf 0.3, seed 0\n")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
