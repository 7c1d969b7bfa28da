"""Attack overhead: every registered attack's wall time divided by the time of the model forward passes it made
(the Oracle times them), measured in one run on the embedded default. Goal: <= 1.2 on the CPU for each attack.

Undefended MNIST CNN, l-inf eps 0.3 (MNIST presets), the first 500 test images, 1000 queries, seed 0.

    python -m benchmarks.attack_overhead [--n 500] [--budget 1000] [--device cpu|cuda]
"""

from __future__ import annotations

import pandas as pd

from benchmarks import common
from workbench.attacks import build, names
from workbench.oracle import Oracle


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--budget", type=int, default=1000)
    args = parser.parse_args()
    x, y = common.test_set()[:args.n]
    model = common.model(args.device)
    rows = {}
    for name in names():
        result = build(name, dataset="mnist", seed=0, progress=False).run(Oracle(model, x, y, budget=args.budget))
        rows[name] = {"wall s": result.seconds, "forward s": result.forward_seconds,
                      "queries": int(result.queries.sum()), "wall / forward": result.seconds / result.forward_seconds,
                      "robust": result.robust_accuracy()}
    table = pd.DataFrame(rows).T
    table["<= 1.2"] = table["wall / forward"] <= 1.2
    pd.set_option("display.width", 200)
    print(f"device {args.device}, {args.n} images, budget {args.budget}")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
