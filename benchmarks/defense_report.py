"""The defense report on the embedded default (seed 0): every registered defense around the zoo's MNIST CNN
(AT and RND-GF on their fine-tuned zoo variants), Square l-inf eps 0.3, the first 500 test images, 100 / 1000
queries; calibrated defenses (AAA, temperature scaling) are tuned on the protocol's held-out test images (500-999,
disjoint from the attacked ones, as the AAA paper did on CIFAR-10). Beside the report's columns: each calibrated
defense's temperature, its prediction agreement with the undefended model on all 1000 test images and its ECE on
the held-out images. DENT costs about 20 forward passes per query on the CPU (6 Adam steps through the whole
network), so it is attacked on the first ``--slow-n`` images (default 100); the "images" column says how many each
row used.

    python -m benchmarks.defense_report [--n 500] [--slow-n 100] [--budget 1000] [--only aaa-linear,aaa-sine]
"""

from __future__ import annotations

import pandas as pd
import torch

from benchmarks import common
from workbench import metrics
from workbench.defenses.registry import names
from workbench.report import defense_report

SLOW = ("dent",)


def calibration(defended: torch.nn.Module, model: torch.nn.Module, test) -> dict[str, float]:
    """Temperature, agreement on every test image and ECE on the held-out ones."""
    logits = metrics.predict(defended, test.x)
    x_held, y_held = common.held_out(test)
    return {"temperature": float(getattr(defended, "temperature", float("nan"))),
            "agreement (all test)": metrics.agreement(logits, metrics.predict(model, test.x)),
            "ECE (held out)": metrics.ece(metrics.predict(defended, x_held), y_held)}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--slow-n", type=int, default=100)
    parser.add_argument("--only", default=",".join(names()))
    args = parser.parse_args()
    torch.manual_seed(0)
    test, model = common.test_set(), common.model(args.device)
    defenses = {name: common.prepared(name, test, args.device).defended for name in args.only.split(",")}
    tables = []
    for group, n in [([k for k in defenses if k not in SLOW], args.n), ([k for k in defenses if k in SLOW], args.slow_n)]:
        if group:
            table = defense_report({k: defenses[k] for k in group}, model, *test[:n], budgets=(100, args.budget))
            extra = pd.DataFrame({k: calibration(defenses[k], model, test) for k in group}).T
            tables.append(table.join(extra).assign(images=n))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print("Square l-inf 0.3, seed 0\n")
    print(pd.concat(tables).round(4).to_string())


if __name__ == "__main__":
    main()
