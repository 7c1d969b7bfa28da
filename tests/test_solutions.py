"""The course kit: every exercise of every lesson has a solution, and the solutions run in fast mode (in their
own file, so that pytest-xdist runs them beside the lessons)."""

from __future__ import annotations

import re
import time

import pytest

from workbench import paths
from workbench.course import notebooks


@pytest.mark.notebook
@pytest.mark.parametrize("path", notebooks.notebooks(solutions=True), ids=lambda p: f"solutions/{p.name}")
def test_solutions_run_in_fast_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FIGURES", str(tmp_path))
    start = time.perf_counter()
    notebooks.execute(path, fast=True, timeout=300)
    print(f"solutions/{path.name}: {time.perf_counter() - start:.1f} s in fast mode")


def test_every_exercise_has_a_solution():
    """Each lesson's numbered exercises and its solutions notebook (same name) answer them one by one."""
    import nbformat

    for lesson in notebooks.notebooks():
        text = "\n".join(c.source for c in nbformat.read(lesson, as_version=4).cells if c.cell_type == "markdown")
        exercises = text.split("## Exercises", 1)[1] if "## Exercises" in text else ""
        asked = re.findall(r"^(\d+)\. ", exercises, flags=re.M)
        solution = paths.notebooks_dir() / "solutions" / lesson.name
        assert asked and solution.is_file(), f"{lesson.name}: exercises {asked}, solution file {solution}"
        answered = re.findall(r"^## Exercise (\d+)", "\n".join(
            c.source for c in nbformat.read(solution, as_version=4).cells if c.cell_type == "markdown"), flags=re.M)
        assert answered == asked, f"{solution.name} answers {answered}, the lesson asks {asked}"
