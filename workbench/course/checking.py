"""The machinery of the lessons' self-checks: an exercise spec (:class:`Exercise`, registered with the
``exercise`` decorator), the verdict on a student's answers, the check cell's output (``check``: pass or fail with
a hint, one output of type :data:`MIME` that the grader reads), the cells a student sheet carries, and the helpers
a check uses to read an answer of the expected kind (or say what was expected). The lessons' checks themselves
are in ``workbench.course.exercises``, one spec per exercise."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.results import Result

MIME = "application/vnd.workbench.check+json"  # the output type the grader reads


class Wrong(Exception):
    """An answer that does not hold; the message is the hint shown to the student."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its key ``NN.k`` (lesson NN, exercise k), the answers it asks for (name -> what to set, as
    the student sheet's answer cell says it) and the test that raises :class:`Wrong` with a hint."""

    key: str
    asks: dict[str, str]
    test: Callable[..., None]

    @property
    def lesson(self) -> str:
        return self.key.split(".")[0]


EXERCISES: dict[str, Exercise] = {}


def exercise(key: str, **asks: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``test`` as the check of exercise ``key`` asking for the answers ``asks``."""

    def register(test: Callable[..., None]) -> Callable[..., None]:
        if key in EXERCISES:
            raise ValueError(f"exercise {key} is registered twice")
        EXERCISES[key] = Exercise(key, dict(asks), test)
        return test

    return register


def of_lesson(lesson: str) -> list[Exercise]:
    """The exercises of lesson ``lesson`` ("01" or "01_sqa_and_aaa"), in order."""
    number = str(lesson)[:2]
    found = [e for e in EXERCISES.values() if e.lesson == number]
    if not found:
        lessons = sorted({e.lesson for e in EXERCISES.values()})
        raise ValueError(f"lesson={lesson!r} has no exercises; choose one of {', '.join(lessons)}")
    return sorted(found, key=lambda e: int(e.key.split(".")[1]))


def get(key: str) -> Exercise:
    """The exercise ``key``; a clear error for an unknown one."""
    if key not in EXERCISES:
        raise ValueError(f"exercise={key!r} is not an exercise; choose one of {', '.join(EXERCISES)}")
    return EXERCISES[key]


def verdict(key: str, answers: Mapping[str, Any]) -> tuple[bool, str]:
    """``(passed, message)`` for the ``answers`` to exercise ``key``; never raises on a wrong answer."""
    spec = get(key)
    missing = [name for name in spec.asks if name not in answers]
    unexpected = [name for name in answers if name not in spec.asks]
    if missing or unexpected:
        return False, (f"the check cell passes {', '.join(answers) or 'nothing'}; it should pass "
                       f"{', '.join(spec.asks)}: restore it from the handed-out sheet")
    blank = [name for name, value in answers.items() if value is Ellipsis]
    if blank:
        return False, f"not answered yet: set {', '.join(blank)} in the answer cell above (replace the ...)"
    try:
        spec.test(**answers)
    except Wrong as wrong:
        return False, str(wrong)
    except Exception as error:  # an answer of the wrong kind: say what was expected, never crash the notebook
        asks = "; ".join(f"{name}: {what}" for name, what in spec.asks.items())
        return False, f"could not check the answer ({type(error).__name__}: {error}). Expected {asks}"
    return True, "pass"


def check(key: str, **answers: Any) -> None:
    """Check the answers to exercise ``key`` and show pass or fail (with a hint) below the cell."""
    passed, message = verdict(key, answers)
    text = f"Exercise {key}: {'PASS' if passed else 'FAIL'}" + ("" if passed else f": {message}")
    colour = "#1a7f37" if passed else "#b42318"
    bundle = {"text/plain": text, MIME: {"exercise": key, "passed": passed, "message": message},
              "text/html": f'<div class="workbench-check" style="color:{colour};font-weight:600">'
                           f"{html.escape(text)}</div>"}
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python without IPython
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(bundle, raw=True)


def check_source(key: str) -> str:
    """The check cell of exercise ``key``, as the sheet carries it (and the grader restores it)."""
    spec = get(key)
    passed = ", ".join(f"{name}={name}" for name in spec.asks)
    return f"from workbench.course import exercises\n\nexercises.check({key!r}, {passed})"


def stub_source(key: str) -> str:
    """The answer cell of exercise ``key`` as handed out: what to set, each answer ``...``."""
    lines = ["# Your answer: compute it here, then set"]
    for name, what in get(key).asks.items():
        lines.append(f"{name} = ...  # {what}")
    return "\n".join(lines)


# ---- helpers for the checks: an answer of the expected kind, or Wrong with what was expected -----------------

def number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, nan: bool = False) -> float:
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise Wrong(f"{name} should be a number, not {type(value).__name__}") from None
    if math.isnan(number) and nan:
        return number
    if not low <= number <= high:
        raise Wrong(f"{name} = {number:g} is outside [{low:g}, {high:g}]: is it the quantity asked for?")
    return number


def mapping(name: str, value: Any, keys: tuple[Any, ...]) -> dict[Any, Any]:
    """``value`` as a dict with exactly ``keys`` (numeric keys match any numeric type or their text)."""
    if isinstance(value, pd.Series):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise Wrong(f"{name} should be a dict with keys {list(keys)}, not {type(value).__name__}")
    out = {}
    for key in keys:
        for given in value:
            same = given == key
            if not same and isinstance(key, (int, float)):
                try:
                    same = float(given) == float(key)
                except (TypeError, ValueError):
                    same = False
            if same:
                out[key] = value[given]
                break
        else:
            raise Wrong(f"{name} should have the keys {list(keys)}; it has {list(value)}")
    return out


def numbers(name: str, value: Any, keys: tuple[Any, ...], low: float = -math.inf, high: float = math.inf,
             nan: bool = False) -> dict[Any, float]:
    """``value`` as a dict of numbers with exactly ``keys``, each within [low, high] (or NaN where allowed)."""
    return {k: number(f"{name}[{k!r}]", v, low, high, nan) for k, v in mapping(name, value, keys).items()}


def fractions(name: str, value: Any, keys: tuple[Any, ...]) -> dict[Any, float]:
    return numbers(name, value, keys, 0.0, 1.0)


def result(name: str, value: Any) -> Result:
    if not isinstance(value, Result):
        raise Wrong(f"{name} should be the Result of a run (what runs.run or Attack.run returns), "
                    f"not {type(value).__name__}")
    return value


def results(name: str, value: Any, keys: tuple[Any, ...]) -> dict[Any, Result]:
    """``value`` as a dict of run Results with exactly ``keys``."""
    return {k: result(f"{name}[{k!r}]", v) for k, v in mapping(name, value, keys).items()}


def require(holds: bool, hint: str) -> None:
    if not holds:
        raise Wrong(hint)
