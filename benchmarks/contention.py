"""The tiny-tensor paths under a busy laptop: AAA's calibration (41 temperatures x 100 solver steps), a 100-query
Square against AAA, one UniG forward pass of 100 images, and one DENT forward pass of 100 images, each timed
quiet and then with another process keeping one core busy, in the thread setting the process starts with (a
JupyterLab kernel sets none). Prints the times and their ratio (goal: within 2x).

    python -m benchmarks.contention [--repeats 3]
"""

from __future__ import annotations

import torch

from benchmarks import common
from workbench.attacks.square import Square
from workbench.defenses.registry import build
from workbench.oracle import Oracle


def tasks():
    test, model = common.test_set(), common.model()
    aaa = common.prepared("aaa-linear", test).defended
    unig, dent = build("unig", model), build("dent", model)
    x, y = test[:100]
    return {
        "AAA.calibrate (500 images)": lambda: aaa.calibrate(*common.held_out(test)),
        "Square vs AAA (100 images, 100 queries)": lambda: Square(eps=0.3, progress=False).run(
            Oracle(aaa, x, y, budget=100)),
        "the same, threads fixed at the setting": lambda: Square(eps=0.3, progress=False).run(
            Oracle(aaa, x, y, budget=100, threads=torch.get_num_threads())),
        "the same, Oracle(threads='auto')": lambda: Square(eps=0.3, progress=False).run(
            Oracle(aaa, x, y, budget=100, threads="auto")),
        "UniG forward (100 images)": lambda: unig(x),
        "DENT forward (100 images)": lambda: dent(x),
    }


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    work = tasks()
    quiet = {name: common.best(task, args.repeats) for name, task in work.items()}
    with common.busy_core():
        busy = {name: common.best(task, args.repeats) for name, task in work.items()}
    print(f"{'':<42}{'quiet s':>10}{'one core busy s':>18}{'ratio':>8}")
    for name in work:
        print(f"{name:<42}{quiet[name]:>10.3f}{busy[name]:>18.3f}{busy[name] / quiet[name]:>8.2f}")


if __name__ == "__main__":
    main()
