"""The detection measurements: what a stateful detector catches, what it costs benign users, and what it stores.

Four tables, each row with its 95% Wilson interval over the images (or queries):

- ``attacks``: for every detector, threat model (eps) and attack (plain Square, OARS's adaptive Square): robust
  accuracy with refusals counted against the budget, the share of attacked images detected, the median first
  detection query, the undetected success (broken before any flag) and the refused share of the queries;
- ``false_positives``: every detector's false-positive rate on benign streams of the test images from one account:
  the images in order, each followed by its JPEG re-encoding, each followed by a brighter copy;
- ``long_interval``: the UniG paper's claim that detection "meets problem when facing long-interval queries":
  plain Square's detected share against the number of benign queries interleaved before each attack query, with
  the published unbounded memory and with a bounded one (the last ``memory`` queries per account);
- ``memory``: stored bytes per query and screening seconds per query, per detector.

Command line (writes ``<out>-<table>.csv`` atomically, table by table; a table already written is kept unless
``--recompute``)::

    python -m workbench.detection --n 100 --budget 1000 --out data/tables/cifar10-detection

The long-interval rows run on ``--interval-n`` images (20) with ``--interval-budget`` queries (200): every attack
query there costs up to 33 screenings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import checks, data, experiment, metrics, paths, stateful
from workbench.experiment import Experiment

DETECTORS = ("blacklight", "piha", "knn-pixels", "knn-encoder")
EPS = (8 / 255, 0.05)  # the papers' CIFAR-10 l-inf, and OARS's
ATTACKS = ("square", "oars-square")
INTERLEAVES = (0, 2, 8, 32)
MEMORY = 100  # the bounded memory of the long-interval rows (queries per account)
DATASET = "cifar10-jpeg"


def attacks_table(detectors: Sequence[str], n: int, budget: int, eps: Sequence[float] = EPS,
                  attacks: Sequence[str] = ATTACKS, seed: int = 0, dataset: str = DATASET) -> pd.DataFrame:
    """The ``attacks`` table (see the module docstring)."""
    rows = []
    for name in tqdm(detectors, desc="detectors", unit="detector"):
        for e in eps:
            exp = experiment.setup(name, dataset=dataset, n=n, budgets=(budget,), eps=e, seed=seed)
            for attack in attacks:
                result = exp.run(attack, progress=True)
                rows.append(row(name, e, attack, result, budget))
    return pd.DataFrame(rows)


def row(detector: str, eps: float, attack: str, result: object, budget: int) -> dict[str, object]:
    """One row of the attacks table: the final robust accuracy with its interval and the detection columns."""
    robust = result.final_accuracy
    lo, hi = metrics.interval(robust, len(result.final))
    return {"detector": detector, "eps": round(eps, 6), "attack": attack, "images": len(result.final),
            "budget": budget, "robust": robust, "robust lo": lo, "robust hi": hi, **metrics.detection(result),
            "seconds": result.seconds}


def false_positive_table(detectors: Sequence[str], n: int = 1000, streams: Sequence[str] = metrics.STREAMS,
                         dataset: str = DATASET) -> pd.DataFrame:
    """The ``false_positives`` table on the first ``n`` test images (the detectors calibrated as ``setup`` does,
    on the held-out images at the end of the split: the stream then overlaps them, as a real user's would)."""
    rows = []
    for name in tqdm(detectors, desc="detectors", unit="detector"):
        exp = experiment.setup(name, dataset=dataset, n=1, budgets=(1,))
        detector = _detector(exp)
        x = data.load(exp.protocol, "test").x[:n]
        for kind in streams:
            rows.append({"detector": name, "stream": kind, **metrics.false_positives(detector,
                                                                                     metrics.benign_stream(x, kind))})
    return pd.DataFrame(rows)


def long_interval_table(detectors: Sequence[str], n: int, budget: int, interleaves: Sequence[int] = INTERLEAVES,
                        memories: Sequence[int | None] = (None, MEMORY), seed: int = 0,
                        dataset: str = DATASET) -> pd.DataFrame:
    """The ``long_interval`` table: plain Square at the protocol's eps, benign test images (past the attacked and
    held-out ones' start: images 500 on) interleaved, with each memory bound (None: unbounded)."""
    rows = []
    for name in tqdm(detectors, desc="detectors", unit="detector"):
        for bound in memories:
            kwargs = {} if bound is None else {"memory": bound}
            exp = experiment.setup(name, dataset=dataset, n=n, budgets=(budget,), seed=seed, defense_kwargs=kwargs)
            benign = data.load(exp.protocol, "test").x[500:]
            for k in interleaves:
                result = exp.run("square", serving={"interleave": k, "benign": benign} if k else None)
                rows.append({**row(name, exp.threat.eps, "square", result, budget), "interleaved": k,
                             "memory": "unbounded" if bound is None else bound})
    return pd.DataFrame(rows)


def memory_table(detectors: Sequence[str], n: int = 200, dataset: str = DATASET) -> pd.DataFrame:
    """Stored bytes per query (the payload the detector keeps, ``Stateful.footprint``, averaged over ``n`` benign
    queries from one account) and screening seconds per query."""
    rows = []
    for name in detectors:
        exp = experiment.setup(name, dataset=dataset, n=1, budgets=(1,))
        detector = _detector(exp)
        x = data.load(exp.protocol, "test").x[:n]
        before = detector.snapshot()
        detector.reset()
        start = time.perf_counter()
        detector.screen(x, torch.zeros(n, dtype=torch.long))
        seconds = (time.perf_counter() - start) / n
        size = sum(detector.footprint(s) for s in _listed(detector.signature(x)))
        detector.restore(before)
        rows.append({"detector": name, "bytes per query": size / n, "seconds per query": seconds, "queries": n})
    return pd.DataFrame(rows)


def _listed(signatures: object) -> list:
    return list(signatures) if not isinstance(signatures, torch.Tensor) else list(signatures.unbind(0))


def _detector(exp: Experiment) -> stateful.Stateful:
    found = stateful.find(exp.target.defended)
    if found is None:
        raise ValueError(f"{type(exp.target.defended).__name__} is no detector (workbench.stateful.Stateful)")
    return found


TABLES = ("memory", "false_positives", "attacks", "long_interval")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="attacked images")
    parser.add_argument("--budget", type=int, default=1000, help="queries per image")
    parser.add_argument("--interval-n", type=int, default=20, help="attacked images of the long-interval rows")
    parser.add_argument("--interval-budget", type=int, default=200, help="their queries per image")
    parser.add_argument("--memories", nargs="+", type=int, default=None,
                        help="bounded memories of the long-interval rows (default: unbounded and 100)")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--out", required=True, help="path prefix of the CSV files")
    parser.add_argument("--recompute", action="store_true")
    args = parser.parse_args(argv)
    n, budget = checks.at_least("n", args.n, 1), checks.at_least("budget", args.budget, 2)
    makers = {"memory": lambda: memory_table(args.detectors),
              "false_positives": lambda: false_positive_table(args.detectors),
              "attacks": lambda: attacks_table(args.detectors, n, budget),
              "long_interval": lambda: long_interval_table(
                  args.detectors, args.interval_n, args.interval_budget,
                  memories=(None, MEMORY) if args.memories is None else args.memories)}
    for table in args.tables:
        path = Path(f"{args.out}-{table.replace('_', '-')}.csv")
        if path.exists() and not args.recompute:
            continue
        frame = makers[table]()
        paths.atomic_write(path, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
        print(f"{table}: {path}\n{frame.to_string()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
