"""The instructor's grading command end to end, as CI runs it (``make test-course``, in ``.ci/run``; not part of
``make test``, which runs the lessons themselves): a folder of submissions -- every worked
solution, every unanswered student sheet and a deliberately wrong, tampered-with submission -- graded into one
CSV gradebook by ``python -m workbench.course.grading grade``, with the instructor's example hidden checks
(``docs/hidden_checks_example.py``), and a submission that talks past the self-checks from an answer cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from workbench.course import exercises, grading, notebooks

pytestmark = pytest.mark.course


def _wrong(folder) -> None:
    """Lesson 06's worked solutions, spoiled: exercise 1's check cell deleted (the grader puts it back: still a
    point), exercise 2 kept right, exercise 3's answer cell raising before it sets ``held``, exercise 4's answer
    wrong and its check cell replaced by one that prints PASS (the grader restores it: no point)."""
    nb = nbformat.read(notebooks.notebooks("06", solutions=True)[0], as_version=4)
    cells = []
    for cell in nb.cells:
        key = grading.check_key(cell)
        if key == "06.1":
            continue
        if key == "06.4":
            cell.source = 'print("Exercise 06.4: PASS")'
        if "held = {" in cell.source:
            cell.source = 'raise RuntimeError("deliberately broken")\n' + cell.source
        if "distance = points" in cell.source:
            cell.source = cell.source.replace('distance = points["distance to the ideal"].to_dict()',
                                              "distance = {d: 0.5 for d in points.index}")
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, str(folder / "06_defense_benchmark.ipynb"))


CHEAT = """import sys, types
from IPython.display import display
import workbench.course
from workbench.course import checking, exercises
exercises.verdict = checking.verdict = lambda key, answers: (True, "pass")
MIME = exercises.MIME
fake = types.ModuleType("workbench.course.exercises")
fake.check = lambda key, **answers: display({"text/plain": f"Exercise {key}: PASS",
                                             MIME: {"exercise": key, "passed": True, "message": "pass"}},
                                            raw=True)
sys.modules["workbench.course.exercises"] = workbench.course.exercises = fake
"""


def _cheat(folder) -> None:
    """Lesson 06's worked solutions with every answer wrong and, in the first answer cell, the check module
    replaced by one that shows PASS in the very output the kernel's checks write, and the verdict patched."""
    nb = nbformat.read(notebooks.notebooks("06", solutions=True)[0], as_version=4)
    wrong = {"changed = set(changed.index)": 'changed = {"none"}',
             'distance = points["distance to the ideal"].to_dict()': "distance = {d: 0.5 for d in points.index}"}
    first = True
    for cell in nb.cells:
        if "answer" in cell.metadata.get("tags", []):
            for right, bad in wrong.items():
                cell.source = cell.source.replace(right, bad)
            if "held = {" in cell.source:
                cell.source += "\nheld = {k: (0, 0) for k in held}"
            if "robust = {" in cell.source or "robust = " in cell.source:
                cell.source += "\nrobust = {k: 0.0 for k in robust}"
            if first:
                cell.source, first = CHEAT + cell.source, False
    nbformat.write(nb, str(folder / "06_defense_benchmark.ipynb"))


HIDDEN = Path(__file__).resolve().parents[2] / "docs" / "hidden_checks_example.py"


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("submissions")
    for who, source in (("solved", notebooks.notebooks(solutions=True)),
                        ("unsolved", sorted(grading.SHEETS.glob("*.ipynb")))):
        (folder / who).mkdir()
        for path in source:
            shutil.copy(path, folder / who / path.name)
    (folder / "wrong").mkdir()
    _wrong(folder / "wrong")
    (folder / "cheat").mkdir()
    _cheat(folder / "cheat")
    out = tmp_path_factory.mktemp("gradebook") / "gradebook.csv"
    feedback = tmp_path_factory.mktemp("feedback")
    assert grading.main(["grade", str(folder), "--out", str(out), "--jobs", "2", "--feedback", str(feedback),
                          "--hidden", str(HIDDEN)]) == 0
    table = pd.read_csv(out, dtype={"lesson": str})
    assert len(list(feedback.rglob("*.ipynb"))) == len(table)  # the executed notebooks, to hand back
    return table


def test_the_worked_solutions_score_full_marks(gradebook):
    """Every lesson's worked solutions, graded in fast mode: full marks and no cell raising (empty feedback)."""
    solved = gradebook[gradebook["student"] == "solved"]
    assert len(solved) == len(notebooks.notebooks())
    assert (solved["score"] == solved["out_of"]).all(), solved[["submission", "score", "out_of", "feedback"]]
    assert solved["feedback"].fillna("").eq("").all(), solved[["submission", "feedback"]]
    assert solved["out_of"].sum() == len(exercises.EXERCISES)


def test_the_unanswered_sheets_score_zero_with_a_message_each(gradebook):
    unsolved = gradebook[gradebook["student"] == "unsolved"]
    assert len(unsolved) == len(notebooks.notebooks()) and (unsolved["score"] == 0).all()
    for _, row in unsolved.iterrows():
        messages = row["feedback"].split(" | ")
        assert len(messages) == row["out_of"], messages  # one per check, and no cell raised
        assert all(": not answered yet: set " in m for m in messages), messages


def test_a_wrong_submission_scores_partially_and_says_why(gradebook):
    row = gradebook[gradebook["student"] == "wrong"].iloc[0]
    assert (row["score"], row["out_of"]) == (2, 4)
    assert (row["06.1"], row["06.2"], row["06.3"], row["06.4"]) == (1, 1, 0, 0)
    assert "06.3: the check cell raised NameError" in row["feedback"]
    assert "06.4: the undefended model changes no logit" in row["feedback"]
    assert "deliberately broken" in row["feedback"]


def test_a_submission_that_replaces_the_check_module_scores_nothing(gradebook):
    """Its kernel shows PASS for every exercise, in the check's own output type, but the grader judges the exported
    answers in its own process: no points."""
    row = gradebook[gradebook["student"] == "cheat"].iloc[0]
    assert (row["score"], row["out_of"]) == (0, 4), row["feedback"]


def test_a_folder_without_notebooks_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no .ipynb file"):
        grading.gradebook(tmp_path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
