"""Time per query of every registered defense relative to the undefended model, measured in one run, in the
thread setting the process starts with (a JupyterLab kernel sets none):

1. the module called directly: forward passes over the 1000 MNIST-5k test images in batches of 1, 100 and 1000;
2. through an Oracle with its own batch policy (what an attack pays): the first 500 test images queried in query
   batches of 1, 4, 16, 64, 100 and 500 (the Oracle chunks the forwards, folds batch norms and post-processes as
   it does for an attack; batches of 1 and 4 over the first 100 images).

Each ratio is the defense's best of ``--repeats`` timings over the undefended model's best of as many, the two
interleaved (the host's speed drifts; the best of each side is what the drift leaves alone). A timing through an
Oracle is the best of 3 passes.

    python -m benchmarks.defense_overhead [--device cpu|cuda] [--repeats 7] [--only aaa-linear,aaa-sine]
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from benchmarks import common
from workbench.defenses.registry import names
from workbench.oracle import Oracle
from workbench.report import seconds_per_image

DIRECT = (1, 100, 1000)
QUERIES = (1, 4, 16, 64, 100, 500)


def through_oracle(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, passes: int = 3) -> float:
    """Seconds per query of the best of ``passes`` passes of query batches of ``batch`` images through a fresh
    Oracle (built, and its probes run, outside the timing)."""
    x, y = (x[:100], y[:100]) if batch < 16 else (x, y)
    oracle = Oracle(model, x, y, budget=passes)
    return common.best(lambda: [oracle.query(x[i:i + batch], torch.arange(i, min(i + batch, len(x))))
                                for i in range(0, len(x), batch)], passes) / len(x)


def ratio(seconds: Callable[[torch.nn.Module], float], defended: torch.nn.Module, model: torch.nn.Module,
          repeats: int) -> float:
    """The best of ``repeats`` timings of ``defended`` over the best of as many of ``model``, interleaved."""
    pairs = [(seconds(defended), seconds(model)) for _ in range(repeats)]
    return min(d for d, _ in pairs) / min(u for _, u in pairs)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default=",".join(names()))
    args = parser.parse_args()
    test = common.test_set()
    model = common.model(args.device)
    x, y = test.x.to(args.device), test.y.to(args.device)
    defenses = {name: common.prepared(name, test, args.device).defended for name in args.only.split(",")}
    direct, oracle = {}, {}
    for name, defended in defenses.items():
        direct[name] = {f"batch {b}": ratio(lambda m: seconds_per_image(m, x[:100] if b == 1 else x, b),
                                            defended, model, args.repeats) for b in DIRECT}
        oracle[name] = {f"query batch {b}": ratio(lambda m: through_oracle(m, x[:500], y[:500], b),
                                                  defended, model, args.repeats) for b in QUERIES}
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("1. the module called directly (time per image / undefended)")
    print(pd.DataFrame(direct).T.round(2).to_string())
    print("\n2. through an Oracle, its own batch policy (time per query / undefended)")
    print(pd.DataFrame(oracle).T.round(2).to_string())


if __name__ == "__main__":
    main()
