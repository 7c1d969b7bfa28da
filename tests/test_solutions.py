"""The course kit: every exercise of every lesson has a solution and a check, and the student sheets are what
``release`` makes of the solutions. That the worked solutions, graded by the instructor's grader in fast mode,
score full marks with no cell raising is tested once, with the rest of the grading command, by ``make
test-course`` (``tests/course``, run by CI)."""

from __future__ import annotations

import re

import nbformat

from workbench import paths
from workbench.course import exercises, grading, notebooks


def test_every_exercise_has_a_solution_and_a_check():
    """Each lesson's numbered exercises, its solutions notebook (same name) answering them one by one, and one
    registered check per exercise whose cell follows its answer cells."""
    for lesson in notebooks.notebooks():
        text = "\n".join(c.source for c in nbformat.read(lesson, as_version=4).cells if c.cell_type == "markdown")
        exercises_text = text.split("## Exercises", 1)[1] if "## Exercises" in text else ""
        asked = re.findall(r"^(\d+)\. ", exercises_text, flags=re.M)
        solution = paths.notebooks_dir() / "solutions" / lesson.name
        assert asked and solution.is_file(), f"{lesson.name}: exercises {asked}, solution file {solution}"
        master = nbformat.read(solution, as_version=4)
        answered = re.findall(r"^## Exercise (\d+)", "\n".join(
            c.source for c in master.cells if c.cell_type == "markdown"), flags=re.M)
        assert answered == asked, f"{solution.name} answers {answered}, the lesson asks {asked}"
        checked = [grading.check_key(c) for c in master.cells if grading.check_key(c)]
        registered = [e.key for e in exercises.of_lesson(lesson.name)]
        assert checked == registered == [f"{lesson.name[:2]}.{k}" for k in asked], (checked, registered)
        for cell in master.cells:
            if grading.check_key(cell):
                assert cell.source == exercises.check_source(grading.check_key(cell)), cell.source


def test_the_student_sheets_are_released_from_the_solutions(tmp_path):
    """``notebooks/exercises/`` is what ``python -m workbench.course.grading release`` writes (run it after
    editing a solution): no written answer, no solution code, one stub and one check per exercise."""
    written = grading.release(out=tmp_path)
    assert [p.name for p in written] == [p.name for p in notebooks.notebooks()]
    for path in written:
        committed = grading.SHEETS / path.name
        assert committed.is_file() and committed.read_text() == path.read_text(), (
            f"{committed} is not the released sheet: run python -m workbench.course.grading release")
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "**Answer.**" not in text and "Solutions to the exercises" not in text
        for spec in exercises.of_lesson(path.name):
            assert exercises.stub_source(spec.key) in text and exercises.check_source(spec.key) in text
