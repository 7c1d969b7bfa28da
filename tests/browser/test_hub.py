"""The course as a course runs it: JupyterHub with two students, each of whom logs in, pulls the course with the
nbgitpuller link the instructor hands out, runs lesson 00 in JupyterLab and works its exercise sheet; the
instructor then collects both sheets from the students' folders and grades them with the grader.

Run with ``make test-browser`` (it installs the ``hub`` extra: JupyterHub 6, its Python proxy and nbgitpuller).
The course is pulled from this checkout's committed branch, as a course server pulls the course's repository.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from workbench import paths
from workbench.course import grading

import hub as course_hub
import lab

ROOT = paths.notebooks_dir().parent
STUDENTS = ("ada", "bob")


def _branch() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


WHY = lab.available() or course_hub.available() or (None if _branch() else "not a git checkout: nothing to pull")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"hub test skipped: {WHY}")


def test_two_students_pull_the_course_run_lesson_00_and_are_graded(tmp_path):
    hub = course_hub.Hub(tmp_path / "hub", STUDENTS)
    try:
        for student in STUDENTS:
            hub.login(student)
            hub.pull(f"file://{ROOT}", _branch(), "course", "notebooks/00_quickstart.ipynb")
            page = hub.run_all("course/notebooks/00_quickstart.ipynb")
            print(f"{student}: lesson 00 in {page.seconds:.1f} s on the hub, {page.images} images")
            assert not page.failures(), "\n".join(page.failures())
            # the student's own copy of the sheet (notebooks/mine/, as the course asks): ada's with the worked
            # answers, bob's as handed out
            notebooks = hub.home(student) / "course" / "notebooks"
            (notebooks / "mine").mkdir(exist_ok=True)
            source = notebooks / ("solutions" if student == "ada" else "exercises") / "00_quickstart.ipynb"
            shutil.copy(source, notebooks / "mine" / "00_quickstart.ipynb")
            sheet = hub.run_all("course/notebooks/mine/00_quickstart.ipynb")
            assert not sheet.errors, sheet.errors
            hub.logout()
    finally:
        hub.close()
    submissions = tmp_path / "submissions"
    for student in STUDENTS:  # the instructor collects each student's sheet from their folder
        (submissions / student).mkdir(parents=True)
        shutil.copy(hub.home(student) / "course" / "notebooks" / "mine" / "00_quickstart.ipynb",
                    submissions / student / "00_quickstart.ipynb")
    table = grading.gradebook(submissions, tmp_path / "gradebook.csv", jobs=2).set_index("student")
    assert (table.loc["ada", "score"], table.loc["ada", "out_of"]) == (3, 3), table.loc["ada", "feedback"]
    assert (table.loc["bob", "score"], table.loc["bob", "out_of"]) == (0, 3)
    assert "not answered yet" in table.loc["bob", "feedback"]
