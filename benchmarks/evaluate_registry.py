"""``evaluate`` on every defense of the registry (the acceptance of the one-call evaluation): probes, the suite
they called for, every attack's final robust accuracy and the per-image worst case, on the embedded default
(zoo CNN; AT / RND-GF on their zoo variants; calibrated defenses tuned on test images 500-999), l-inf 0.3.

Each attack run is cached under ``<data>/evaluations`` (a killed run resumes). DENT costs about 20 forward passes
per query on a CPU, so it is evaluated on ``--slow-n`` images.

    python benchmarks/evaluate_registry.py [--n 100] [--budget 1000] [--slow-n 20] [--only aaa-linear,aaa-sine]
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from workbench import data, models, paths
from workbench.defenses.registry import names, prepare, variant
from workbench.evaluate import evaluate

SLOW = ("dent",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--slow-n", type=int, default=20)
    parser.add_argument("--only", default=",".join(names()))
    args = parser.parse_args()
    test, model = data.load("mnist5k", "test"), models.load("mnist-cnn")
    rows = []
    for name in args.only.split(","):
        start = time.perf_counter()
        n = args.slow_n if name in SLOW else args.n
        defended = prepare(name, "mnist-cnn" if variant(name) else model, held_out=test[500:])
        x, y = test[:n]
        key = json.dumps({"defense": name, "kwargs": {}, "model": "mnist-cnn",
                          "weights": models.entry("mnist-cnn").sha256}, sort_keys=True)
        report = evaluate(defended, x, y, undefended=model, budget=args.budget, cache_dir=paths.data_dir() /
                          "evaluations", cache_key=key)
        finals = dict(zip(report.attacks["attack"], report.attacks["final"]))
        p = report.probes
        rows.append({"defense": name, "images": n, "randomized": p.randomized, "batch-dep.": p.batch_dependent,
                     "post-proc.": p.post_processing, "attacks": len(finals), **finals,
                     "min per attack": min(finals.values()), "worst case": report.worst["final"],
                     "worst <= min": report.worst["final"] <= min(finals.values()) + 1e-12,
                     "unexplained images": int(((~report.images["robust"]) & (report.images["broken by"] == "")).sum()),
                     "seconds": round(time.perf_counter() - start)})
        print(f"\n## {name}\n\n{report.to_markdown()}", flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
