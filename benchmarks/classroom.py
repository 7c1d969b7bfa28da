"""A classroom under load: lesson 00 in fast mode run as a Jupyter kernel runs it (no thread setting), quiet, beside
one busy core, and four copies at once; and AAA's 100-query Square (the README's defense, 100 images), quiet and
beside a busy core. Each under the waiting policy the classroom extension gives kernels (``OMP_WAIT_POLICY=PASSIVE``),
under OpenMP's default (spin, then sleep: scripts, and kernels before; the benchmark passes an empty policy, which
libgomp reports as invalid and ignores) and under a brief spin (``GOMP_SPINCOUNT=10000``). Prints the times and the ratios from this one run (goals: busy
core at most 2x quiet, four at once at most 2.5x one alone, AAA's Square at most 2x).

    python -m benchmarks.classroom [--lesson 00]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

POLICIES = {"PASSIVE (classroom kernels)": {"OMP_WAIT_POLICY": "PASSIVE"},
            "OpenMP's default (scripts)": {"OMP_WAIT_POLICY": ""},
            "brief spin (GOMP_SPINCOUNT 10k)": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"}}
ROOT = Path(__file__).resolve().parents[1]

_LESSON = """
import sys
from workbench.course import notebooks
notebooks.execute(notebooks.notebooks(sys.argv[1])[0], fast=True)
"""

_AAA_SQUARE = """
import time
from workbench import data, models
from workbench.attacks.square import Square
from workbench.defenses.aaa import AAA
from workbench.oracle import Oracle
test = data.load("mnist", "test")
model = models.load("mnist-cnn")
aaa = AAA(model, curve="linear").calibrate(*test[500:])
x, y = test[:100]
start = time.perf_counter()
Square(eps=0.3, progress=False).run(Oracle(aaa, x, y, budget=100))
print(time.perf_counter() - start)
"""


def _env(policy: dict[str, str]) -> dict[str, str]:
    """A kernel's environment: no thread setting, the waiting policy given, fast mode."""
    drop = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **policy, "WORKBENCH_FAST": "1", "MPLBACKEND": "Agg"}


def lessons(lesson: str, policy: dict[str, str], copies: int) -> float:
    """Wall seconds for ``copies`` runs of the lesson started together (the slowest one's finish)."""
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", _LESSON, lesson], env=_env(policy), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(copies)]
    if any(p.wait() for p in running):
        raise RuntimeError(f"lesson {lesson} failed under {policy}")
    return time.perf_counter() - start


def aaa_square(policy: dict[str, str]) -> float:
    """Seconds of the 100-query Square against AAA-linear, as the child timed it (set-up excluded)."""
    out = subprocess.run([sys.executable, "-c", _AAA_SQUARE], env=_env(policy), cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--lesson", default="00")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; lesson {args.lesson} in fast mode, kernels with no thread setting")
    header = f"{'policy':<34}{'quiet s':>9}{'busy core s':>13}{'ratio':>7}{'4 at once s':>13}{'ratio':>7}" \
             f"{'AAA Square quiet s':>20}{'busy s':>8}{'ratio':>7}"
    print(header)
    for label, policy in POLICIES.items():
        quiet = lessons(args.lesson, policy, 1)
        four = lessons(args.lesson, policy, 4)
        square_quiet = aaa_square(policy)
        with common.busy_core():
            busy = lessons(args.lesson, policy, 1)
            square_busy = aaa_square(policy)
        print(f"{label:<34}{quiet:>9.1f}{busy:>13.1f}{busy / quiet:>7.2f}{four:>13.1f}{four / quiet:>7.2f}"
              f"{square_quiet:>20.2f}{square_busy:>8.2f}{square_busy / square_quiet:>7.2f}")


if __name__ == "__main__":
    main()
