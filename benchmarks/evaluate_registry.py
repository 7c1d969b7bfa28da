"""``evaluate`` on every defense of the registry (the acceptance of the one-call evaluation): probes, the suite
they called for, every attack's final robust accuracy and the per-image worst case, on the embedded default
(zoo CNN; AT / RND-GF on their zoo variants; calibrated defenses tuned on test images 500-999), l-inf 0.3.

Each attack run is cached by the run path under ``<data>/evaluations`` (a killed run resumes). DENT costs about 20 forward passes
per query on a CPU, so it is evaluated on ``--slow-n`` images.

    python -m benchmarks.evaluate_registry [--n 100] [--budget 1000] [--slow-n 20] [--only aaa-linear,aaa-sine]
"""

from __future__ import annotations

import time

import pandas as pd

from benchmarks import common
from workbench import paths
from workbench.defenses.registry import names
from workbench.evaluate import evaluate

SLOW = ("dent",)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--slow-n", type=int, default=20)
    parser.add_argument("--only", default=",".join(names()))
    args = parser.parse_args()
    test = common.test_set()
    rows = []
    for name in args.only.split(","):
        start = time.perf_counter()
        n = args.slow_n if name in SLOW else args.n
        x, y = test[:n]
        report = evaluate(common.prepared(name, test, args.device), x, y, budget=args.budget,
                          cache_dir=paths.data_dir() / "evaluations")
        finals = dict(zip(report.attacks["attack"], report.attacks["final"]))
        p = report.probes
        rows.append({"defense": name, "images": n, "randomized": p.randomized, "batch-dep.": p.batch_dependent,
                     "post-proc.": p.post_processing, "attacks": len(finals), **finals,
                     "min per attack": min(finals.values()), "worst case": report.worst["final"],
                     "worst <= min": report.worst["final"] <= min(finals.values()) + 1e-12,
                     "unexplained images": int(((~report.images["final"]) & (report.images["broken by"] == "")).sum()),
                     "seconds": round(time.perf_counter() - start)})
        print(f"\n## {name}\n\n{report.to_markdown()}", flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
