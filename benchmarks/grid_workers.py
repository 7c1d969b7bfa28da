"""A CIFAR-10 grid's wall time in one process against the default local executor (one process per core, each on
its share of the threads), measured in one run in the thread setting the process starts with (a JupyterLab kernel
sets none), each on a fresh cache. The rows must agree; the ratio is printed.

The grid: the undefended ResNet-20 and AAA-linear x Square, SignHunter and SimBA on the first ``--n`` embedded
CIFAR-10 (JPEG q75) test images, l-inf 8/255, ``--queries`` queries.

    python -m benchmarks.grid_workers [--n 50] [--queries 300]
"""

from __future__ import annotations

import tempfile
import time

import torch

from benchmarks import common
from workbench import experiments


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    cells = experiments.grid(defenses=["none", "aaa-linear"], attacks=["square", "signhunter", "simba"],
                             model="cifar10-resnet20", n=args.n, budgets=(args.queries,))
    default = experiments.default_workers(args.device)
    seconds, tables = {}, {}
    for workers in (1, default):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            tables[workers] = experiments.tabulate(cells, workers=workers, cache_dir=folder, device=args.device,
                                              progress=False)
            seconds[workers] = time.perf_counter() - start
    column = f"robust@{args.queries}"
    same = tables[1][column].tolist() == tables[default][column].tolist()
    print(f"{len(cells)} CIFAR-10 cells ({args.n} images, {args.queries} queries), {torch.get_num_threads()} threads "
          f"in this process: one process {seconds[1]:.1f} s, {default} processes {seconds[default]:.1f} s -> "
          f"{seconds[1] / seconds[default]:.2f}x; robust accuracy the same in every cell: {same}")


if __name__ == "__main__":
    main()
