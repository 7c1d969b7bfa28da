"""The Oracle's fast path (batch-norm folding, AAA's post-processing once per query batch, the thread choice) for
small attacks: decided on the work ahead (images x budget, ``workbench.speed.forward.FAST_PATH_WORK``) against the
old rule (more than 64 images only), measured in one run on the same images, at the thread setting the process
starts with (a JupyterLab kernel sets none), optionally with one core kept busy. The results must agree.

The attack: Square (l-inf 8/255) on AAA-linear around the CIFAR-10 ResNet-20, the first 16 and 44 embedded
CIFAR-10 (JPEG q75) test images, ``--queries`` queries.

    python -m benchmarks.fast_path [--queries 1000] [--busy]
"""

from __future__ import annotations

import time
from unittest import mock

import torch

from benchmarks import common
from workbench import data, protocol, runs
from workbench.speed import forward

DATASET = "cifar10-jpeg"


def _timed(target: runs.Target, x: torch.Tensor, y: torch.Tensor, queries: int) -> tuple[float, float]:
    start = time.perf_counter()
    result = runs.run(target, "square", x, y, budget=queries, dataset=DATASET, seed=0, progress=False)
    return time.perf_counter() - start, result.robust_accuracy()


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    test = data.load(DATASET, "test")
    entry = protocol.get(DATASET)
    target = runs.target("aaa-linear", entry.model, dataset=DATASET, held_out=test[len(test) - entry.held_out:],
                         device=args.device)
    with common.busy_core(args.busy):
        for n in (16, 44):
            x, y = test[:n]
            with mock.patch.object(forward, "FAST_PATH_WORK", float("inf")):  # the old rule: the image count only
                old, old_robust = _timed(target, x, y, args.queries)
            new, new_robust = _timed(target, x, y, args.queries)
            print(f"{n} images x {args.queries} queries, AAA-linear, {torch.get_num_threads()} threads"
                  f"{', one core busy' if args.busy else ''}: image-count rule {old:.1f} s, work rule {new:.1f} s "
                  f"-> {old / new:.2f}x; robust accuracy {old_robust:.3f} vs {new_robust:.3f}")


if __name__ == "__main__":
    main()
