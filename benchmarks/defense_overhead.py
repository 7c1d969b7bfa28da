"""Time per query of every registered defense relative to the undefended model, measured in one run: forward
passes over the 1000 MNIST-5k test images in query batches of 1, 100 and 1000 (best of 3 repeats each).

    python -m benchmarks.defense_overhead [--device cpu|cuda]
"""

from __future__ import annotations

import pandas as pd

from benchmarks import common
from workbench.defenses.registry import build, names
from workbench.report import seconds_per_image

BATCHES = (1, 100, 1000)


def _best(model, x, batch: int) -> float:
    return min(seconds_per_image(model, x, batch) for _ in range(3))


def main() -> None:
    args = common.parser(__doc__).parse_args()
    test = common.test_set()
    model = common.model(args.device)
    x = test.x.to(args.device)
    small = x[:100]  # batches of one: 100 images are enough
    base = {b: _best(model, small if b == 1 else x, b) for b in BATCHES}
    rows = {}
    for name in names():
        defended = build(name, common.MODEL).to(args.device)
        rows[name] = {f"batch {b}": _best(defended, small if b == 1 else x, b) / base[b] for b in BATCHES}
    print(f"device {args.device}; undefended seconds per image: "
          + ", ".join(f"batch {b}: {s * 1e3:.3f} ms" for b, s in base.items()))
    print(pd.DataFrame(rows).T.round(2).to_string())


if __name__ == "__main__":
    main()
