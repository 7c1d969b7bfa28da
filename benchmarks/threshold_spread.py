"""The measured values behind the test suite's acceptance thresholds, over seeds 0-4, with their spread.

A test must not sit on a knife edge: its threshold has to clear the measured value by more than the value's
spread over seeds (another CPU rounds differently, which acts like another seed). The scenarios and their
thresholds are one table, ``tests/scenarios.py``, which the tests assert at seed 0; this script measures each of
them for five seeds of whatever is random in it (the attack, the defense's noise, PGD's start) and prints mean,
std, min, max, the threshold and the distance of the mean from it in units of std. The docstring of every test
quotes its line. Run it from the repository's root (it reads the tests' table):

    python -m benchmarks.threshold_spread            # all (about 10 minutes on a 2-core CPU)
    python -m benchmarks.threshold_spread aaa eot    # some
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tests.scenarios import SCENARIOS

SEEDS = range(5)


def report(name: str) -> None:
    scenario = SCENARIOS[name]
    rows = [scenario.measure(s) for s in SEEDS]
    for quantity in rows[0]:
        v = np.array([r[quantity] for r in rows])
        op, bound = scenario.thresholds.get(quantity, ("", None))
        margin = ""
        if bound is not None:
            std = v.std(ddof=1)
            margin = (f"mean {abs(v.mean() - bound) / std:.1f} std from it" if std > 0 else
                      f"no spread over seeds; mean {abs(v.mean() - bound):.3g} from it")
        threshold = f"{op} {bound:g}" if bound is not None else "-"
        print(f"{name:10s} {quantity:30s} {v.mean():.4f} ± {v.std(ddof=1):.4f} (min {v.min():.4f}, "
              f"max {v.max():.4f}) threshold {threshold:8s} {margin}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"scenarios to measure (default: all): {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    torch.set_num_threads(1)
    for name in args.names or SCENARIOS:
        report(name)


if __name__ == "__main__":
    main()
