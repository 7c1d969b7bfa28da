"""What an attack run gives: one :class:`Result` per run, whether an attack ran on an Oracle of your own
(``Attack.run``) or through the run path (``runs.run``, which adds the re-evaluated outcome, the provenance and,
when asked, the recorded traces). Per image: the query at which it was first misclassified, the queries spent,
the clean prediction's correctness and the final outcome, so robust accuracy at every budget up to the run's
comes from one run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from workbench import checks
from workbench.threat import Threat


@dataclass
class Result:
    """One attack run's outcome; every tensor has one entry per image.

    Attributes:
        first_success: (N,) the query (1-based) at which the image was first misclassified as the attacker saw it
            (already at the clean query counts); -1 where it never was.
        queries: (N,) queries spent per image (the clean query included).
        clean_correct: (N,) whether the clean image was classified correctly (by the first query).
        budget: the per-image budget of the run.
        seconds: wall time of the run (of the run that computed it, when read from the cache).
        x_adv: (N, C, H, W) the first misclassified query for successful images, else the attack's best point;
            None when the result was read from the cache.
        reevaluated: (N,) the share of fresh queries that classified the final image correctly; None where
            nothing was re-evaluated.
        forward_seconds: the part of ``seconds`` spent in the model's forward passes.
        queries_per_point: queries averaged per candidate point (EOT; 1 otherwise).
        final: (N,) the final outcome the run path gives: where it re-evaluated a randomized or batch-dependent
            defense, whether the majority of fresh queries of the final image classify it correctly; else the same
            as ``robust``. None outside the run path (``Attack.run``).
        computed: the provenance of the run that computed it (``runs.provenance``); None outside the run path.
        threat: the threat model the attack ran in (the handle's ``Threat``); None when read from the cache.

    ``robust`` (per image) and ``robust_accuracy`` are what the attacker observed; ``final`` and
    ``final_accuracy`` the outcome after re-evaluation. A table says which of the two it shows.
        observed, reference_margin, kept: the Oracle's recordings (``record=True``, ``reference=``,
            ``keep_images=``): per image and query the margin the attacker saw, the undefended model's margin at
            the same input, the queried images (query 1 is the clean image); None where not recorded.
        first_detection, detections, refusals: against a stateful defense (a detector), per image the query at
            which it was first flagged (-1: never), the number of flagged queries and of refused ones (refused
            queries count in ``queries`` too); None against a stateless defense.
    """

    first_success: torch.Tensor
    queries: torch.Tensor
    clean_correct: torch.Tensor
    budget: int
    seconds: float
    x_adv: torch.Tensor | None = None
    reevaluated: torch.Tensor | None = None
    final: torch.Tensor | None = None
    forward_seconds: float = 0.0
    queries_per_point: int = 1
    computed: dict[str, str] | None = None
    observed: torch.Tensor | None = None
    reference_margin: torch.Tensor | None = None
    kept: torch.Tensor | None = None
    threat: Threat | None = None
    first_detection: torch.Tensor | None = None
    detections: torch.Tensor | None = None
    refusals: torch.Tensor | None = None

    @property
    def robust(self) -> torch.Tensor:
        """(N,) whether the image was never misclassified within the run's budget, as the attacker observed it."""
        return self.first_success < 0

    @property
    def success(self) -> torch.Tensor:
        """(N,) whether the image was misclassified at some query."""
        return self.first_success > 0

    def robust_accuracy(self, budget: int | None = None) -> float:
        """Fraction of images not misclassified within ``budget`` queries (default: the run's budget), as the
        attacker observed it."""
        budget = self.budget if budget is None else checks.at_least("budget", budget, 1)
        if budget > self.budget:
            raise ValueError(f"budget={budget} exceeds the run's budget of {self.budget} queries")
        fooled = self.success & (self.first_success <= budget)
        return 1.0 - fooled.float().mean().item()

    @property
    def detected(self) -> torch.Tensor | None:
        """(N,) whether a detector flagged any query of the image; None against a stateless defense."""
        return None if self.first_detection is None else self.first_detection > 0

    def undetected_success(self) -> torch.Tensor | None:
        """(N,) misclassified before (or without) any flag: what succeeds where a detection ends the account."""
        if self.first_detection is None:
            return None
        return self.success & ((self.first_detection < 0) | (self.first_success < self.first_detection))

    @property
    def final_accuracy(self) -> float:
        """The share of images robust in the end (``final``): re-evaluated where the run path re-evaluated, else
        the observed robust accuracy at the run's budget."""
        return (self.robust if self.final is None else self.final).double().mean().item()

    def as_row(self) -> dict[str, Any]:
        """The per-image columns and the run's facts, as JSON-ready values (the cache's record)."""
        return {"first success": self.first_success.tolist(), "queries": self.queries.tolist(),
                "clean correct": self.clean_correct.tolist(),
                "final": (self.robust if self.final is None else self.final).tolist(),
                "re-evaluated correct": None if self.reevaluated is None else self.reevaluated.tolist(),
                "budget": self.budget, "seconds": self.seconds, "computed": self.computed,
                **({} if self.first_detection is None else {
                    "first detection": self.first_detection.tolist(), "detections": self.detections.tolist(),
                    "refusals": self.refusals.tolist()})}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Result:
        """The result ``as_row`` wrote (without the adversarial images and recordings)."""
        shares = row["re-evaluated correct"]
        return cls(torch.tensor(row["first success"], dtype=torch.long), torch.tensor(row["queries"], dtype=torch.long),
                   torch.tensor(row["clean correct"], dtype=torch.bool), int(row["budget"]), float(row["seconds"]),
                   final=torch.tensor(row["final"], dtype=torch.bool),
                   reevaluated=None if shares is None else torch.tensor(shares, dtype=torch.float64),
                   computed=_provenance_of(row.get("computed")),
                   **({} if "first detection" not in row else {
                       key: torch.tensor(row[name], dtype=torch.long) for key, name in (
                           ("first_detection", "first detection"), ("detections", "detections"),
                           ("refusals", "refusals"))}))


def _provenance_of(stored: object) -> dict[str, str] | None:
    """A cached record's provenance if it is well formed (the keys of ``runs.provenance``, string values), else
    None."""
    keys = {"workbench", "git commit", "torch", "device"}
    if isinstance(stored, dict) and set(stored) == keys and all(isinstance(v, str) for v in stored.values()):
        return dict(stored)
    return None
