"""The command line of the grids: ``python -m workbench.experiments PRESET [--csv ...] [--record] ...``."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

from workbench import metrics, paths
from workbench.experiments.execution import EXECUTORS, tabulate
from workbench.experiments.presets import preset, presets


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.experiments", description="Run a preset grid of defense x attack cells, cached and resumable.")
    parser.add_argument("preset", choices=presets())
    parser.add_argument("--csv", default=None, help="where to write the table (default: <preset>.csv)")
    parser.add_argument("--record", action="store_true",
                        help="also record the table as data/tables/<preset>.csv (what the notebooks show)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--workers", type=int, default=None,
                        help="local processes at once (default: one per core on a CPU; 1: in this process)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights", default=None, help="local checkpoint of the model (CIFAR-10 / ImageNet)")
    parser.add_argument("--recompute", action="store_true", help="ignore the cache: run every cell again")
    args = parser.parse_args(None if argv is None else list(argv))
    start = time.perf_counter()
    cells = preset(args.preset)
    if args.weights:
        cells = [dataclasses.replace(c, weights=args.weights) for c in cells]
    table = tabulate(cells, executor=args.executor, workers=args.workers, cache_dir=args.cache_dir, device=args.device,
                recompute=args.recompute)
    columns = ["defense", "attack", "norm", "targeted", "seed", "clean acc", "logit diff", "ECE"] + \
        metrics.budget_columns(table.columns) + ["re-evaluated", "mean queries", "seconds"]
    print(table[columns].to_markdown(index=False, floatfmt=".3f"))
    out = Path(args.csv or f"{args.preset}.csv")
    for target in [out] + ([paths.tables_dir() / f"{args.preset}.csv"] if args.record else []):
        paths.atomic_write(target, lambda tmp: table.to_csv(tmp, index=False))
    print(f"\n{len(table)} cells in {time.perf_counter() - start:.0f} s; table written to {out}")


if __name__ == "__main__":
    main()
