"""The README's first attack, timed: Square against the undefended CNN (500 test images, 1000 queries), then
AAA-linear calibrated on the held-out images and attacked with ``record=True`` and the undefended model as the
reference; prints the numbers the README prints and the wall time of the whole example (default threads).

    python -m benchmarks.first_attack
"""

from __future__ import annotations

import time

from benchmarks import common
from workbench import metrics, runs
from workbench.defenses.aaa import AAA


def main() -> None:
    common.parser(__doc__).parse_args()
    start = time.perf_counter()
    test, model = common.test_set(), common.model()
    x, y = test[:500]
    result = runs.run(model, "square", x, y, budget=1000, seed=0)
    print(result.robust_accuracy(100), result.robust_accuracy(1000))
    defended = AAA(model, curve="linear").calibrate(*common.held_out(test))
    traced = runs.run(defended, "square", x, y, budget=1000, record=True, reference=model)
    print(metrics.summary(traced, [100, 1000]))
    print(f"\nthe whole example: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
