"""The exercises' self-checks as a student meets them: an unanswered exercise says so, an answer of the wrong kind
gets a message instead of an exception, and a wrong answer fails with a hint (the worked solutions pass: see
test_solutions.py)."""

from __future__ import annotations

import math

import pytest

from workbench.course import exercises


@pytest.mark.parametrize("key", list(exercises.EXERCISES))
def test_unanswered_and_malformed_answers_fail_without_raising(key):
    spec = exercises.get(key)
    passed, message = exercises.verdict(key, {name: ... for name in spec.asks})
    assert not passed and message.startswith("not answered yet") and all(n in message for n in spec.asks)
    for junk in (None, "0.5", {"x": 1}, float("nan"), -1):
        passed, message = exercises.verdict(key, {name: junk for name in spec.asks})
        assert not passed and message, (key, junk)


def test_a_check_cell_that_passes_the_wrong_names_says_what_it_should_pass():
    passed, message = exercises.verdict("01.1", {"robustness": 0.5})
    assert not passed and "should pass robust" in message


@pytest.mark.parametrize(("key", "answers", "hint"), [
    ("01.1", {"robust": {"undefended": 0.75, "AAA-linear": 0.70}}, "AAA should still help"),
    ("01.2", {"largest_step": {"linear": 12.0, "sine": 6.0}}, "sine's largest step"),
    ("01.3", {"lost_at_2": 9, "stripes_fool": 7}, "compare the same images"),
    ("03.1", {"largest_change": 0.0}, "did not change"),
    ("04.3", {"kurtosis": {"snd": 3.0, "snd-beta": 3.1}}, "compare the tails"),
    ("05.3", {"square_robust": 0.6, "whitebox_robust": 0.2}, "never lose"),
    ("06.1", {"changed": {"at", "unig"}}, "rank each budget"),
    ("06.3", {"held": {"AAA Table 2": (30, 30), "UniG Table 1": (75, 75)}}, "tie"),
    ("09.2", {"agreement": {"all": 1.0, "10": 0.9}, "ece": {"all": 0.17, "10": 0.23}}, "never changes a prediction"),
])
def test_a_wrong_answer_fails_with_its_hint(key, answers, hint):
    passed, message = exercises.verdict(key, answers)
    assert not passed and hint in message, message


def test_a_right_answer_passes():
    """Properties that hold by construction: AAA's query-2 losses are the stripes', the sine has no jump."""
    assert exercises.verdict("01.3", {"lost_at_2": 9, "stripes_fool": 9}) == (True, "pass")
    assert exercises.verdict("01.2", {"largest_step": {"linear": 12.0, "sine": 0.005}}) == (True, "pass")
    assert exercises.verdict("00.1", {"median_queries": {"square": 6, "signhunter": 16, "bandits": math.nan}})[0]


def test_check_prints_outside_jupyter(capsys):
    assert exercises.check("03.1", largest_change=...) is None
    assert capsys.readouterr().out.startswith("Exercise 03.1: FAIL: not answered yet")


def test_unknown_exercises_and_lessons_are_named_errors():
    with pytest.raises(ValueError, match="exercise='99.1' is not an exercise"):
        exercises.verdict("99.1", {})
    with pytest.raises(ValueError, match="lesson='12' has no exercises"):
        exercises.of_lesson("12")
