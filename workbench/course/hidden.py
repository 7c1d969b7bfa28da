"""The grader's own verdict: each exercise's self-check and the instructor's hidden checks, run in the grader's
process on the answers a submission exported (``workbench.course.answers``).

The self-checks (``workbench.course.exercises``) stay formative: a student runs them in the notebook and sees PASS
or FAIL with a hint. They are public, and in the student's kernel they can be talked past (one line,
``exercises.verdict = lambda key, answers: (True, "pass")``, used to score every check). The grader therefore
scores nothing the kernel says: it reads the exported answers and runs the same self-check here, then the hidden
checks, which the instructor keeps in a Python file of their own and never hands out (as nbgrader and Otter keep
hidden tests)::

    # hidden_checks.py, kept by the instructor (an example: docs/hidden_checks_example.py)
    from workbench.course import hidden
    from workbench.course.checking import require

    @hidden.exercise("06.4")
    def _every_distance(distance):
        require(..., "a hint shown in the gradebook's feedback")

A hidden check takes the exercise's answers by name, like its self-check, and raises ``checking.Wrong`` (through
``require``) to fail; its hint goes to the gradebook. An exercise earns its point only where its self-check and
every hidden check of it pass. ``python -m workbench.course.grading grade ... --hidden hidden_checks.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workbench.course import checking
from workbench.course.checking import Wrong, get

Hidden = dict[str, list[Callable[..., None]]]  # exercise key -> its hidden checks, in the file's order
_MARK = "__workbench_hidden__"


def exercise(key: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark ``test`` as a hidden check of exercise ``key`` (collected by ``load`` from the instructor's file), as
    ``checking.exercise`` registers a self-check."""
    get(key)  # a clear error for an exercise that does not exist

    def mark(test: Callable[..., None]) -> Callable[..., None]:
        setattr(test, _MARK, key)
        return test

    return mark


def load(path: str | Path | None) -> Hidden:
    """The hidden checks of the instructor's file ``path`` (none for None): every function it marks with
    ``exercise``. The file is the instructor's own code and runs with the grader's rights."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise ValueError(f"hidden={str(path)!r} is not a Python file of hidden checks")
    spec = importlib.util.spec_from_file_location(f"_workbench_hidden_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: Hidden = {}
    for value in vars(module).values():
        if callable(value) and hasattr(value, _MARK):
            found.setdefault(getattr(value, _MARK), []).append(value)
    if not found:
        raise ValueError(f"hidden={str(path)!r} marks no check (decorate each with @hidden.exercise('NN.k'))")
    return found


def verdict(key: str, answers: Mapping[str, Any], hidden: Hidden) -> tuple[bool, str]:
    """``(passed, message)`` for the ``answers`` to exercise ``key``: its self-check, then each hidden check of
    it; never raises on a wrong answer."""
    passed, message = checking.verdict(key, answers)
    if not passed:
        return passed, message
    for test in hidden.get(key, []):
        try:
            test(**answers)
        except Wrong as wrong:
            return False, f"{wrong} (a check kept by the instructor)"
        except Exception as error:  # an answer of a kind the hidden check did not expect
            return False, f"the instructor's check could not read the answer ({type(error).__name__}: {error})"
    return True, "pass"
