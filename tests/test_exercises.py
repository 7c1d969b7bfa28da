"""The exercises' self-checks as a student meets them: an unanswered exercise says so, an answer of the wrong kind
gets a message instead of an exception, and a wrong answer fails with a hint (the worked solutions pass: see
tests/course/test_gradebook.py)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

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


def test_answers_travel_as_data_and_come_back_equal(tmp_path):
    """What the grader reads back is what the kernel held: numbers (NaN too), containers, tensors, frames and run
    Results; anything else arrives as a marker every check fails, and nothing is unpickled."""
    from workbench.course import answers
    from workbench.results import Result
    from workbench.threat import Threat
    result = Result(torch.tensor([2, -1]), torch.tensor([2, 5]), torch.tensor([True, True]), 5, 0.1,
                    x_adv=torch.rand(2, 1, 4, 4), threat=Threat("linf", 0.3))
    frame = pd.DataFrame({"beta": [1.0, 2.0], "ECE": [0.1, float("nan")], "name": ["a", "b"]})
    value = {"n": 3, "x": math.nan, "s": {"a", "b"}, "t": (1, "two"), 0.05: [1.5, None], "u": ..., "r": result,
             "f": frame, "series": frame["beta"], "tensor": torch.arange(6).reshape(2, 3), "obj": object()}
    back = answers.decode(json.loads(json.dumps(answers.encode(value))))
    assert back["n"] == 3 and math.isnan(back["x"]) and back["s"] == {"a", "b"} and back["t"] == (1, "two")
    assert back[0.05] == [1.5, None] and back["u"] is ...
    assert torch.equal(back["tensor"], value["tensor"]) and isinstance(back["obj"], answers.Unsupported)
    pd.testing.assert_frame_equal(back["f"], frame)
    pd.testing.assert_series_equal(back["series"], frame["beta"])
    assert torch.equal(back["r"].x_adv, result.x_adv) and back["r"].robust_accuracy() == 0.5
    assert back["r"].threat == result.threat
    answers.export("02.2", {"fell_at": torch.tensor([3, 4])}, tmp_path / "a.json")
    assert torch.equal(answers.read("02.2", tmp_path / "a.json")["fell_at"], torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="another exercise"):
        answers.read("02.1", tmp_path / "a.json")
    (tmp_path / "p.json").write_bytes(b"\x80\x04\x95")  # a pickle is not read
    with pytest.raises(ValueError, match="not readable"):
        answers.read("02.2", tmp_path / "p.json")


def test_the_graders_verdict_adds_the_instructors_hidden_checks():
    """The example hidden check of 06.4 recomputes every distance: guessing all but the undefended model's passes
    the self-check and fails the hidden one; the right answers pass both."""
    from pathlib import Path

    from workbench import experiments
    from workbench.course import hidden
    checks_file = Path(__file__).resolve().parents[1] / "docs" / "hidden_checks_example.py"
    kept = hidden.load(checks_file)
    assert list(kept) == ["06.4"]
    points = experiments.recorded("mnist-table").groupby("defense").agg({"logit diff": "first",
                                                                          "re-evaluated": "mean"})
    scaled = points["logit diff"] / points["logit diff"].max()
    right = ((scaled ** 2 + (1 - points["re-evaluated"]) ** 2) ** 0.5).to_dict()
    guessed = {d: (v if d == "none" else 0.5) for d, v in right.items()}
    assert exercises.verdict("06.4", {"distance": guessed}) == (True, "pass")
    passed, message = hidden.verdict("06.4", {"distance": guessed}, kept)
    assert not passed and "kept by the instructor" in message
    assert hidden.verdict("06.4", {"distance": right}, kept) == (True, "pass")
    with pytest.raises(ValueError, match="not a Python file"):
        hidden.load(checks_file.with_suffix(".txt"))
