"""An instructor's hidden checks: an example to copy into a file the students never receive.

Grade with it: ``python -m workbench.course.grading grade SUBMISSIONS --out gradebook.csv --hidden
hidden_checks.py``. The grader runs these in its own process on the answers each submission exported, after the
exercise's self-check (``workbench.course.hidden``): an exercise earns its point only where both pass. Keep your
own copy outside the repository the students pull (nbgitpuller hands out the whole repository).

A hidden check asks for more than the self-check the students can read: the self-check of 06.4 confirms the
undefended model's distance only, so a student who guesses the rest still passes it; this one recomputes every
defense's distance from the recorded table.
"""

from __future__ import annotations

import math
from typing import Any

from workbench import experiments
from workbench.course import hidden
from workbench.course.checking import numbers, require


@hidden.exercise("06.4")
def _every_distance(distance: Any) -> None:
    table = experiments.recorded("mnist-table")
    points = table.groupby("defense").agg({"logit diff": "first", "re-evaluated": "mean"})
    scaled = points["logit diff"] / points["logit diff"].max()
    reference = ((scaled ** 2 + (1 - points["re-evaluated"]) ** 2) ** 0.5).to_dict()
    given = numbers("distance", distance, tuple(reference), 0, math.sqrt(2))
    wrong = [d for d in reference if abs(given[d] - reference[d]) > 1e-6]
    require(not wrong, f"the distances of {', '.join(wrong)} do not match the recorded table: scale each logit "
                       "difference by the largest one")
