"""Grading time per submission against the lesson's own fast-mode time, measured in one run, one notebook at a
time, in the thread setting the process starts with (a JupyterLab kernel sets none).

Per lesson: the lesson notebook run top to bottom in fast mode (``notebooks.execute``, what the test suite does),
the worked solutions run the same way, the worked solutions graded (``grading.grade``: check cells restored,
every cell run, the checks read back) and the unanswered student sheet graded. The acceptance goal: grading one
submission takes less than the lesson's fast-mode time plus a few seconds. ``--busy`` keeps one core busy with
another process throughout (a grading machine is rarely idle).

    python -m benchmarks.grading [--lessons 00 06] [--busy]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from benchmarks import common
from workbench.course import grading, notebooks


def measure(lesson: str) -> dict[str, float]:
    """Seconds for one lesson: the lesson, its solutions, the solutions graded, the sheet graded."""
    lesson_path, = notebooks.notebooks(lesson)
    solution, = notebooks.notebooks(lesson, solutions=True)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["WORKBENCH_FIGURES"] = scratch
        row = {"lesson (fast)": notebooks.execute(lesson_path, fast=True),
               "solutions (fast)": notebooks.execute(solution, fast=True)}
    graded = grading.grade(solution, fast=True)
    row["solutions graded"] = graded.seconds
    row["score"] = f"{graded.score}/{len(graded.points)}"
    sheet = grading.grade(grading.SHEETS / Path(solution).name, fast=True)
    row["sheet graded"] = sheet.seconds
    row["sheet score"] = f"{sheet.score}/{len(sheet.points)}"
    row["graded - lesson"] = row["solutions graded"] - row["lesson (fast)"]
    return row


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--lessons", nargs="*", default=[], help="lesson numbers (default: all)")
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    lessons = args.lessons or [p.name[:2] for p in notebooks.notebooks()]
    with common.busy_core(args.busy):
        rows = {lesson: measure(lesson) for lesson in tqdm(lessons, desc="lessons", unit="lesson")}
    table = pd.DataFrame(rows).T
    print(table.to_markdown(floatfmt=".1f"))
    numeric = table[["lesson (fast)", "solutions graded", "graded - lesson"]].astype(float)
    print(f"\nlargest excess of grading over the lesson: {numeric['graded - lesson'].max():.1f} s "
          f"(lesson {numeric['graded - lesson'].idxmax()})")


if __name__ == "__main__":
    main()
