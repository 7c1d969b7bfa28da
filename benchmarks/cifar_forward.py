"""The CIFAR-10 zoo model's forward throughput, and Square's time against it, measured in one run in the thread
setting the process starts with (a JupyterLab kernel sets none).

1. Images per second of plain eager forwards (inference mode) by batch size, for the model with contiguous
   weights, with channels_last weights (what ``models.load`` gives), and the copy with folded batch norms and
   in-place ReLUs the Oracle forwards through (``workbench.speed.inference``); with ``--compile`` also
   ``torch.compile`` of the folded copy (the first call compiles: excluded from the timing); with ``--bfloat16``
   also the folded copy under bfloat16 autocast (the Oracle does not use it: its logits keep 8 significant bits,
   too coarse for the small margin changes Square and AAA compare).
2. Square (l-inf 8/255, the protocol's settings) on the first ``--images`` embedded test images for ``--queries``
   queries: its wall time, the images it forwarded, and its time over two floors: the forward floor (those images
   at the best throughput of part 1) and the replayed floor (the query batches Square sent, in the Oracle's chunks,
   through the folded copy with nothing else: what the forwards cost at the batch sizes the attack had, so that
   Square's time over it is the attack's and the Oracle's own work). Best of ``--rounds`` Square runs and as many
   replays, interleaved; and each run's time over the time its Oracle spent in forwards, measured in the same run
   (what the host's drift leaves alone: the attack's and the Oracle's own work).

    python -m benchmarks.cifar_forward [--weights PATH] [--images 200] [--queries 1000] [--rounds 3] [--compile] [--bfloat16]
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from benchmarks import common
from workbench import data, models
from workbench.attacks import registry as attacks
from workbench.speed.forward import CPU_BATCH
from workbench.speed.inference import fold_batchnorm
from workbench.oracle import Oracle

BATCHES = (1, 16, 64, 128, 256, 512)


class Bfloat16(torch.nn.Module):
    """``model`` under bfloat16 autocast, returning float32 logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def throughput(model: torch.nn.Module, x: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Images per second of forwards of ``batch`` images (best of ``repeats`` passes over ``x``)."""
    n = min(len(x), max(batch * 4, 64))
    with torch.inference_mode():
        model(x[:batch])
        best = common.best(lambda: [model(x[i:i + batch]) for i in range(0, n, batch)], repeats)
    return n / best


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--weights", default=None, help="a checkpoint of cifar10-resnet20 (default: the shipped one)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="Square runs, each followed by its replayed floor")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile of the folded copy")
    parser.add_argument("--bfloat16", action="store_true", help="also measure the folded copy under bfloat16 autocast")
    args = parser.parse_args()
    test = data.load("cifar10-jpeg")
    x = test.x.to(args.device)
    load = dict(weights=args.weights, device=args.device)
    variants = {"contiguous": models.load("cifar10-resnet20", channels_last=False, **load),
                "channels_last": models.load("cifar10-resnet20", **load)}
    variants["folded"] = fold_batchnorm(variants["channels_last"])
    if args.compile:
        variants["compiled (folded)"] = torch.compile(variants["folded"])
    if args.bfloat16:
        variants["bfloat16 (folded)"] = Bfloat16(variants["folded"])
    rates = pd.DataFrame({name: {b: throughput(m, x, b) for b in BATCHES} for name, m in variants.items()})
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("1. forward throughput, images / s (rows: batch size)")
    print(rates.round(0).to_string())
    xs, ys = test[:args.images]
    xs, ys = xs.to(args.device), ys.to(args.device)
    runs, replays, own = [], [], []
    for _ in range(args.rounds):  # interleaved: the host's drift reaches both sides alike
        oracle = Oracle(variants["channels_last"], xs, ys, budget=args.queries)
        start = time.perf_counter()
        result = attacks.build("square", dataset="cifar10-jpeg", seed=0, progress=False).run(oracle)
        runs.append(time.perf_counter() - start)
        own.append(runs[-1] / oracle.forwards.seconds)
        replays.append(replay(variants["folded"], xs, result.queries))
    seconds, replayed = min(runs), min(replays)
    forwarded = int(result.queries.sum())
    floor = forwarded / float(rates[["contiguous", "channels_last", "folded"]].max().max())
    print(f"\n2. Square l-inf 8/255, {args.images} images, {args.queries} queries (best of {args.rounds}): "
          f"{seconds:.1f} s, {forwarded} images forwarded, robust {result.robust_accuracy():.3f}; floor {floor:.1f} s "
          f"-> {seconds / floor:.2f}x the floor; replayed floor {replayed:.1f} s -> {seconds / replayed:.2f}x it; "
          f"its time over its own forwards' (same run): {', '.join(f'{r:.3f}' for r in own)}")


def replay(model: torch.nn.Module, x: torch.Tensor, queries: torch.Tensor, repeats: int = 2) -> float:
    """Seconds of plain forwards (best of ``repeats``) of the query batches an attack that queries every unfinished
    image once per step sent, given each image's query count: step t has the images with more than t queries,
    forwarded in the Oracle's chunks (``CPU_BATCH`` images on a CPU, whole on a GPU)."""
    counts = queries.cpu()
    sizes = [int((counts > t).sum()) for t in range(int(counts.max()))]
    step = CPU_BATCH if x.device.type == "cpu" else len(x)

    def run() -> None:
        for n in sizes:
            for i in range(0, n, step):
                model(x[i:min(i + step, n)])

    with torch.inference_mode():
        return common.best(run, repeats)


if __name__ == "__main__":
    main()
