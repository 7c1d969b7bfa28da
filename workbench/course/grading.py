"""The instructor's side of the course: hand out exercise sheets, grade a folder of submissions into a gradebook.

The worked solutions (``notebooks/solutions/NN_slug.ipynb``) are the masters. Their cells carry tags (JupyterLab:
the property inspector's "Cell Tags"):

- ``answer``: a solution's code, handed out as the exercise's answer stub (``exercises.stub_source``);
- ``solution``: a cell (a written answer, the solutions' foreword) left out of the sheet;
- ``check``: the check cell (``exercises.check_source``), handed out as it is.

Two commands, both local (nbclient on a local kernel: no Docker, no network)::

    python -m workbench.course.grading release [NN ...] --out DIR   # student sheets (default: every lesson)
    python -m workbench.course.grading grade SUBMISSIONS --out gradebook.csv [--feedback DIR] [--jobs N]
                                                  [--hidden hidden_checks.py]

``grade`` runs every ``*.ipynb`` under SUBMISSIONS (``SUBMISSIONS/<student>/NN_slug.ipynb``, or flat) top to
bottom in fast mode, after putting back every check cell as handed out (a student's edit of a check cell does not
count; a deleted one is appended at the end), and scores one point per exercise whose answers pass its check in the
grader's own process: an export cell after each check cell writes the answers as data (``course.answers``), and
the grader judges them with the self-check and the instructor's hidden checks (``course.hidden``, ``--hidden``), so
nothing a student's code does in the kernel counts (what the kernel prints is feedback only). A cell that raises does not
stop the run; a kernel that dies or a cell over the timeout fails the checks that did not run. The gradebook has
one row per submission: student, submission, lesson, score, out_of, one column per exercise (1 or 0), seconds,
and feedback (the hint of every failed check). ``--feedback DIR`` also writes each executed notebook, outputs
and all, to hand back. Grading runs the students' code with your rights: grade in an account or container that
holds nothing else of value.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from workbench import checks, paths
from workbench.course import answers, classroom, exercises, hidden, notebooks

SHEETS = paths.notebooks_dir() / "exercises"
_CHECK = re.compile(r"exercises\.check\(\s*[\"'](\d\d\.\d+)[\"']")
IN_WORDS = "**In words.** *What do your numbers say? Double-click here and write it.*"
_TITLE = re.compile(r"^# (\d\d) — Solutions: (.*)$", flags=re.M)


def _tags(cell: Any) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def check_key(cell: Any) -> str | None:
    """The exercise a check cell checks (from its source), else None."""
    found = _CHECK.search(cell.source) if cell.cell_type == "code" else None
    return found.group(1) if found else None


def sheet(master: Path) -> Any:
    """The student version of the worked solutions ``master``: answers blanked to their stubs, written answers
    and the foreword out, checks kept; a new foreword says how to work it."""
    import nbformat  # lazy: the notebook tooling loads only for the course's commands

    nb = nbformat.read(master, as_version=4)
    title = _TITLE.search(nb.cells[0].source) if nb.cells and nb.cells[0].cell_type == "markdown" else None
    if title is None:
        raise ValueError(f"{master}: the first cell should be the title '# NN — Solutions: <lesson>'")
    lesson = Path(master).stem
    cells = [nbformat.v4.new_markdown_cell(
        f"# {title.group(1)} — Exercises: {title.group(2)}\n\n"
        f"The exercises of `../{lesson}.ipynb`. Each has an answer cell: compute what it asks for and replace "
        "every `...` by your value. Run the check cell below it: it says PASS, or FAIL with a hint. Checks hold in "
        "fast mode (`WORKBENCH_FAST=1`) and with the full sizes.")]
    pending = False  # an answer cell seen, its check cell not yet
    for cell in nb.cells[1:]:
        tags = _tags(cell)
        if "solution" in tags:
            continue
        if "answer" in tags:
            pending = True
            continue
        key = check_key(cell)
        if pending and key is None:
            raise ValueError(f"{master}: an answer cell is not followed by its check cell")
        if key is not None:
            cells.append(nbformat.v4.new_code_cell(exercises.stub_source(key)))
            cells.append(nbformat.v4.new_code_cell(exercises.check_source(key), metadata={"tags": ["check"]}))
            cells.append(nbformat.v4.new_markdown_cell(IN_WORDS))
            pending = False
            continue
        cells.append(nbformat.v4.new_markdown_cell(cell.source) if cell.cell_type == "markdown"
                     else nbformat.v4.new_code_cell(cell.source))
    out = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": nb.metadata.get("kernelspec", {}),
                                                          "workbench": {"lesson": lesson}})
    for number, cell in enumerate(out.cells):
        cell.id = str(number)
    return out


def release(lessons: Sequence[str] = (), out: Path = SHEETS) -> list[Path]:
    """Write the student sheets of ``lessons`` (prefixes like "01"; all when empty) into ``out``."""
    import nbformat

    written = []
    for master in (notebooks.notebooks(p, solutions=True) for p in (lessons or [""])):
        for path in master:
            text = nbformat.writes(classroom.stripped(sheet(path))) + "\n"  # as the save hook stores it
            target = Path(out) / path.name
            paths.atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
            written.append(target)
    return written


@dataclass
class Graded:
    """One graded submission: per exercise 1 or 0 and the message of its check; the errors any other cell
    raised."""

    submission: str
    lesson: str
    points: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> int:
        return sum(self.points.values())

    def row(self) -> dict[str, Any]:
        failed = " | ".join([f"{k}: {m}" for k, m in self.messages.items() if not self.points.get(k)] + self.errors)
        return {"student": _student(self.submission), "submission": self.submission, "lesson": self.lesson, "score": self.score,
                "out_of": len(self.points), **self.points, "seconds": round(self.seconds, 1), "feedback": failed}


def _student(submission: str) -> str:
    """Who handed in ``submission`` (a path relative to the graded folder): its folder, or a flat file's stem."""
    parts = Path(submission).parts
    return parts[0] if len(parts) > 1 else Path(submission).stem


def _lesson_of(nb: Any, path: Path) -> str:
    lesson = nb.metadata.get("workbench", {}).get("lesson") or Path(path).stem
    try:
        exercises.of_lesson(lesson)
    except ValueError:
        raise ValueError(f"{path}: not an exercise sheet of a workbench lesson (no metadata workbench.lesson and "
                         "no NN_ prefix of a lesson in its name)") from None
    return lesson


def _restore_checks(nb: Any, lesson: str) -> dict[str, int]:
    """Put back the lesson's check cells as handed out; return each exercise's check cell index, in order."""
    import nbformat

    at: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        key = check_key(cell)
        if key is not None and key.split(".")[0] == lesson[:2] and key not in at:
            at[key] = index
    for spec in exercises.of_lesson(lesson):
        source = exercises.check_source(spec.key)
        if spec.key in at:
            nb.cells[at[spec.key]].source = source
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source))
            at[spec.key] = len(nb.cells) - 1
    return {spec.key: at[spec.key] for spec in exercises.of_lesson(lesson)}


def _error(cell: Any) -> str | None:
    """The hint for a check cell that raised (or never ran), else None."""
    outputs = cell.get("outputs", [])
    for output in outputs:
        if output.get("output_type") == "error":
            return f"the check cell raised {output['ename']}: {output['evalue']} (is a cell above failing?)"
    if not outputs and cell.get("execution_count") is None:
        return "the check did not run (a cell above timed out or the kernel died)"
    return None


def _with_exports(nb: Any, at: dict[str, int], folder: Path) -> tuple[dict[str, int], list[int]]:
    """Put an export cell (``answers.export``) after each check cell; return the check cells' new indices and the
    export cells' indices."""
    import nbformat

    keys = {index: key for key, index in at.items()}
    cells, checks_at, exports = [], {}, []
    for index, cell in enumerate(nb.cells):
        if index in keys:
            checks_at[keys[index]] = len(cells)
        cells.append(cell)
        if index in keys:
            exports.append(len(cells))
            cells.append(nbformat.v4.new_code_cell(
                f"from workbench.course import answers as _answers; _answers.export({keys[index]!r}, globals(), "
                f"{str(folder / (keys[index] + '.json'))!r})"))
    nb.cells = cells
    return {key: checks_at[key] for key in at}, exports


def grade(path: Path, name: str | None = None, fast: bool = True, timeout: int = 600,
          save_to: Path | None = None, threads: int | None = None, hidden_checks: hidden.Hidden | None = None
          ) -> Graded:
    """Run one submitted notebook with its check cells restored and score it (see the module docstring):
    each exercise's answers are exported after its check cell and judged in this process (``hidden.verdict``:
    the self-check and ``hidden_checks``, the instructor's); ``threads``: the kernel's ``OMP_NUM_THREADS``
    (default: the environment's)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    lesson = _lesson_of(nb, path)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # the kernel's folder; a submission's figures land here too
        exported = Path(scratch) / "answers"
        at, exports = _with_exports(nb, _restore_checks(nb, lesson), exported)
        env = {**os.environ, "WORKBENCH_FAST": "1" if fast else "0", "WORKBENCH_FIGURES": scratch,
               "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg"),
               **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                interrupt_on_timeout=True, resources={"metadata": {"path": scratch}})
        try:
            client.execute(env=env)
        except DeadKernelError:
            pass  # the checks that did not run fail with "did not run"
        graded = Graded(name or path.name, lesson, seconds=time.perf_counter() - start)
        for key, index in at.items():
            graded.points[key], graded.messages[key] = _judged(key, nb.cells[index], exported, hidden_checks or {})
    exports = set(exports)
    skipped = set(at.values()) | exports
    for number, cell in enumerate(nb.cells):
        if number not in skipped:
            graded.errors += [f"cell {number} raised {o['ename']}: {o['evalue']}" for o in cell.get("outputs", [])
                              if o.get("output_type") == "error"]
    if save_to is not None:
        nb.cells = [cell for number, cell in enumerate(nb.cells) if number not in exports]
        target = Path(save_to) / graded.submission
        target.parent.mkdir(parents=True, exist_ok=True)
        paths.atomic_write(target, lambda tmp: nbformat.write(nb, str(tmp)))
    return graded


def _judged(key: str, check_cell: Any, folder: Path, hidden_checks: hidden.Hidden) -> tuple[int, str]:
    """The point and message of exercise ``key``: the check cell's error where it raised, else the grader's own
    verdict on the exported answers."""
    error = _error(check_cell)
    if error is not None:
        return 0, error
    try:
        given = answers.read(key, folder / f"{key}.json")
    except ValueError as unreadable:
        return 0, str(unreadable)
    passed, message = hidden.verdict(key, given, hidden_checks)
    return int(passed), message


def _grade_one(job: tuple[Path, str, bool, int, Path | None, int | None, Path | None]) -> Graded | str:
    path, name, fast, timeout, save_to, threads, hidden_file = job
    try:
        return grade(path, name, fast=fast, timeout=timeout, save_to=save_to, threads=threads,
                     hidden_checks=hidden.load(hidden_file))
    except Exception as error:  # one unreadable submission never stops the gradebook
        return f"{name}: {type(error).__name__}: {error}"


def gradebook(folder: Path, out: Path, feedback: Path | None = None, fast: bool = True, timeout: int = 600,
              jobs: int = 1, hidden_file: str | Path | None = None) -> pd.DataFrame:
    """Grade every ``*.ipynb`` under ``folder``, ``jobs`` at once, and write the gradebook CSV ``out`` (one row per
    submission; a submission that cannot be graded gets score 0 and the reason as its feedback). Unless
    ``OMP_NUM_THREADS`` is set, each kernel runs PyTorch on one thread: a fast-mode notebook takes the same time
    on one thread as on two on an idle 2-core machine (8.0 s and 8.1 s), and with one core busy 8.0 s instead of
    74 s (docs/teaching.md); ``jobs`` sets how many run at once. ``hidden_file``: the instructor's hidden checks
    (``workbench.course.hidden``), loaded once here to fail early and again in each grading process."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder of submitted notebooks")
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise ValueError(f"folder={str(folder)!r} holds no .ipynb file")
    jobs = checks.at_least("jobs", jobs, 1)
    hidden.load(hidden_file)  # a missing or empty file of hidden checks fails before any notebook runs
    threads = None if os.environ.get("OMP_NUM_THREADS") else 1
    work = [(p, str(p.relative_to(folder)), fast, timeout, feedback, threads, hidden_file) for p in found]
    with ProcessPoolExecutor(jobs) as pool:
        graded = list(tqdm(pool.map(_grade_one, work), total=len(work), desc="grading", unit="notebook"))
    rows = []
    for (_, name, *_), one in zip(work, graded):
        if isinstance(one, Graded):
            rows.append(one.row())
        else:
            rows.append({"student": _student(name), "submission": name, "score": 0, "out_of": 0,
                         "feedback": f"not graded: {one}"})
    table = pd.DataFrame(rows)
    keys = sorted(c for c in table.columns if re.fullmatch(r"\d\d\.\d+", str(c)))
    table = table[["student", "submission", "lesson", "score", "out_of", *keys, "seconds", "feedback"]
                  if "lesson" in table else list(table.columns)]
    paths.atomic_write(Path(out), lambda tmp: table.to_csv(tmp, index=False))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    handout = commands.add_parser("release", help="write the student sheets")
    handout.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    handout.add_argument("--out", type=Path, default=SHEETS, help=f"folder (default {SHEETS})")
    marking = commands.add_parser("grade", help="grade a folder of submissions into a CSV gradebook")
    marking.add_argument("folder", type=Path)
    marking.add_argument("--out", type=Path, required=True, help="the gradebook CSV to write")
    marking.add_argument("--feedback", type=Path, default=None, help="write the executed notebooks here")
    marking.add_argument("--full", action="store_true", help="full sizes instead of fast mode")
    marking.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    marking.add_argument("--hidden", type=Path, default=None, help="a Python file of hidden checks the instructor "
                         "keeps (workbench.course.hidden), run in the grader's process")
    marking.add_argument("--jobs", type=int, default=1, help="submissions graded at once, one kernel each (default "
                                                            "1; up to the number of cores)")
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in release(args.lessons, args.out):
            print(f"wrote {path}")
        return 0
    table = gradebook(args.folder, args.out, args.feedback, fast=not args.full, timeout=args.timeout,
                      jobs=args.jobs, hidden_file=args.hidden)
    print(table[["submission", "score", "out_of", "seconds"]].to_string(index=False))
    print(f"gradebook: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
