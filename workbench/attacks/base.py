"""The batched query loop every score-based attack runs on.

The base class owns what all attacks share: argument checks, the threat model, seeding, the first (clean) query,
per-image success bookkeeping (the query at which each image was first misclassified and the image that did it),
per-image early stopping, exact budgets and the progress bar. An attack only proposes candidates and decides which
to keep, in ``init`` (optional, after the clean query) and ``step`` (one round for the images still active).

Early stopping: an image is not queried after the step in which it was first misclassified. An attack whose
step sends several queries of one image in one batch (NES's probe pairs, Bandits' two probes) spends the rest of
that batch even when an earlier query of it succeeded, as the reference codes do; ``first_success`` is the
earliest successful query all the same.

Query counting: every call of the Oracle on an image counts, the clean query included (query 1). Reference codes
that leave the clean check uncounted report one query fewer per image.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from workbench import checks
from workbench.losses import cross_entropy, dlr, margin, targeted_dlr
from workbench.oracle import Oracle, QueryHandle, rank_within_repeats
from workbench.results import Result
from workbench.threat import Threat, quantize8

LOSSES = ("margin", "ce", "probability", "dlr")


def fresh(oracle: Oracle) -> Oracle:
    """``oracle`` itself, after checking it is an Oracle (``_start`` checks that nothing has queried it yet)."""
    if not isinstance(oracle, Oracle):
        raise ValueError(f"oracle must be a workbench Oracle, got {type(oracle).__name__}")
    return oracle


class Session:
    """What the base class keeps for an attack during one run: the query handle (``handle``: the only way to the
    model, scores only), the original images, the labels (or targets), the random generator, and per-image success
    bookkeeping. Every attack's ``init`` and ``step`` get it."""

    def __init__(self, handle: QueryHandle, targets: torch.Tensor | None, seed: int, kappa: float = 0.0,
                 refusals: str | None = None):
        self.handle = handle
        self.refusals = refusals  # None: the attack cannot use refused queries; else the attack's name
        self.last_refused = torch.zeros(0, dtype=torch.bool, device=handle.device)
        self.kappa = kappa
        self.x0 = handle.x
        self.y = handle.y
        self.targets = targets
        n = len(handle)
        self.gen = torch.Generator(device=handle.device).manual_seed(seed)
        self.success = torch.zeros(n, dtype=torch.bool, device=handle.device)
        self.first_success = torch.full((n,), -1, dtype=torch.long, device=handle.device)
        self.x_adv = self.x0.clone()
        self.exhausted = torch.zeros(n, dtype=torch.bool, device=handle.device)  # set by attacks with no move left
        self.clean_scores: torch.Tensor | None = None
        self.clean_correct: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.handle.device

    @property
    def eps(self) -> float:
        """The radius of the threat model, as the handle carries it."""
        return self.handle.threat.eps

    @property
    def norm(self) -> str:
        """The norm of the threat model, as the handle carries it."""
        return self.handle.threat.norm

    def evaluate(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Query the oracle with candidates ``x`` for images ``idx`` and note which ones are misclassified.
        When the oracle quantizes, ``x`` is rounded in place first, so the attack keeps what was evaluated."""
        rounded = self.admissible(x, idx)
        if rounded is not x:
            x.copy_(rounded)
        scores = self.handle.query(x, idx)
        refused = self.handle.refused
        if refused is None or not refused.any():
            refused = torch.zeros(len(idx), dtype=torch.bool, device=scores.device)
        elif self.refusals is None:
            raise RuntimeError("the defense refused queries and this attack cannot use a refusal (its update needs "
                               "every score): run an attack that handles refusals (square, simba, signhunter, "
                               "oars-square, oars-nes)")
        else:  # no scores reach the attack for a refused query (under OARS's convention the flag says the same)
            scores = scores.clone()
            scores[refused] = float("nan")
        self.last_refused = refused
        hit = self.fooled(scores, idx) & ~refused & ~self.success[idx]
        if hit.any():  # the counters before this call: after it, less this call's queries of each image
            before = self.handle.queries[idx] - torch.bincount(idx, minlength=len(self.x0))[idx]
            self._note_success(x[hit], idx[hit], before[hit], hit.nonzero().flatten())
        return scores

    def admissible(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Candidates ``x`` of the images ``idx`` (default: all) as the oracle would evaluate them: rounded to 8
        bits inside the eps-ball if it quantizes, else ``x`` itself."""
        if not self.handle.quantize:
            return x
        x0 = self.x0 if idx is None else self.x0[idx]
        return quantize8(x, x0, self.eps, self.norm)

    def _note_success(self, x: torch.Tensor, idx: torch.Tensor, before: torch.Tensor, rows: torch.Tensor) -> None:
        q = before + 1 + rank_within_repeats(idx)  # the 1-based query number of every successful row
        first = torch.full_like(self.first_success, torch.iinfo(torch.long).max)
        first.scatter_reduce_(0, idx, q, reduce="amin")
        keep = q == first[idx]
        self.success[idx[keep]] = True
        self.first_success[idx[keep]] = q[keep]
        self.x_adv[idx[keep]] = x[keep]

    def fooled(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Misclassified (untargeted) or classified as the target (targeted); with a confidence margin ``kappa`` >
        0, by at least ``kappa`` (Carlini and Wagner 2017): the best other class's logit is at least ``kappa``
        above the true class's (targeted: the target's at least ``kappa`` above every other class's). Logits are
        compared; probability scores are compared as log-probabilities (the same differences)."""
        if self.kappa > 0:
            logits = scores.clamp_min(1e-30).log() if self.handle.scores == "probabilities" else scores
            return self.margin_loss(logits, idx) <= -self.kappa
        pred = scores.argmax(1)
        return pred == self.targets[idx] if self.targets is not None else pred != self.y[idx]

    def margin_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Margin of the true class (untargeted) or of the best other class over the target (targeted)."""
        if self.targets is not None:
            return -margin(scores, self.targets[idx])
        return margin(scores, self.y[idx])

    def ce_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the target (targeted, to minimize) or minus that of the true class (untargeted)."""
        probs = self.handle.scores == "probabilities"
        if self.targets is not None:
            return cross_entropy(scores, self.targets[idx], probs)
        return -cross_entropy(scores, self.y[idx], probs)

    def probability_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Probability of the true class (untargeted) or minus that of the target (targeted)."""
        probs = scores if self.handle.scores == "probabilities" else scores.softmax(1)
        if self.targets is not None:
            return -probs.gather(1, self.targets[idx, None]).squeeze(1)
        return probs.gather(1, self.y[idx, None]).squeeze(1)

    def dlr_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The DLR ratio of the true class (untargeted) or of the target (targeted), computed on logits (on
        log-probabilities where the oracle gives probabilities: the same, as the ratio ignores a shift)."""
        logits = scores.clamp_min(1e-30).log() if self.handle.scores == "probabilities" else scores
        if logits.shape[1] < (4 if self.targets is not None else 3):
            raise ValueError(f"loss 'dlr' needs at least {4 if self.targets is not None else 3} classes, the "
                             f"scores have {logits.shape[1]}")
        if self.targets is not None:
            return targeted_dlr(logits, self.targets[idx])
        return dlr(logits, self.y[idx])

    def loss(self, name: str, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss ``name`` (one of ``LOSSES``) of ``scores``; every attack minimizes it."""
        return {"margin": self.margin_loss, "ce": self.ce_loss, "probability": self.probability_loss,
                "dlr": self.dlr_loss}[name](scores, idx)

    def active(self, cost: int = 1) -> torch.Tensor:
        """Indices of the images still to attack that can afford ``cost`` more queries."""
        return (~self.success & ~self.exhausted & (self.handle.remaining() >= cost)).nonzero().flatten()

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.device)

    def randint(self, high: int | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Integers in [0, high) (``high`` may be a tensor broadcast against ``shape``)."""
        return (self.uniform(*shape) * high).long()

    def signs(self, *shape: int) -> torch.Tensor:
        return torch.where(self.uniform(*shape) < 0.5, -1.0, 1.0)


class Attack(ABC):
    """Base of every score-based attack. Subclasses set ``name`` and ``norms`` and implement ``step``.

    Args (shared by every attack):
        norm: ``"linf"`` or ``"l2"`` (where the attack supports it).
        eps: radius of the eps-ball (> 0; required: the dataset decides it, see ``attacks.build``).
        loss: ``"margin"``, ``"ce"``, ``"probability"`` or ``"dlr"`` (all minimized; None: the attack's
            default, which may differ for targeted runs).
        kappa: the confidence margin an image must be misclassified by to count as broken (default 0: any
            misclassification). With ``kappa`` > 0 the attack goes on with an image until the best wrong logit
            leads the true one by ``kappa`` (Carlini and Wagner 2017, "Towards Evaluating the Robustness of Neural
            Networks", their confidence kappa): against a randomized or batch-dependent defense an image stopped at
            the first wrong answer sits on the boundary, where fresh queries put it right again, so an attack aimed
            at the re-evaluated outcome must push past it (Tramer et al. 2020, "On Adaptive Attacks to Adversarial
            Example Defenses", Sec. 5: optimize the quantity the defense is judged by).
        seed: seed of the attack's random generator.
        progress: show a progress bar over queries.
    """

    name: ClassVar[str] = "attack"
    norms: ClassVar[tuple[str, ...]] = checks.NORMS
    handles_refusals: ClassVar[bool] = True  # a refused candidate is simply not kept (its loss is inf)
    cost: ClassVar[int] = 1  # the fewest queries one step spends per image
    default_loss: ClassVar[str] = "margin"  # untargeted runs
    targeted_loss: ClassVar[str] = "margin"  # targeted runs

    def __init__(self, *, norm: str = "linf", eps: float, loss: str | None = None, kappa: float = 0.0,
                 seed: int = 0, progress: bool = True):
        checks.choice("norm", norm, self.norms)
        self.kappa = checks.non_negative("kappa", kappa)
        self.threat = Threat(norm, eps)
        if norm == "linf" and self.threat.eps >= 1:
            warnings.warn(f"eps={eps:g} (l-inf) covers the whole [0, 1] image range: every image is reachable",
                          stacklevel=3)
        if loss is not None:
            checks.choice("loss", loss, LOSSES)
        seed = checks.at_least("seed", seed, 0)
        self.loss_name, self.seed = loss, seed
        self.progress = checks.flag("progress", progress)

    norm = property(lambda self: self.threat.norm, doc="the norm of the attack's threat model")
    eps = property(lambda self: self.threat.eps, doc="the radius of the attack's threat model")

    def __repr__(self) -> str:
        kappa = f", kappa={self.kappa:g}" if self.kappa else ""
        return f"{type(self).__name__}(norm={self.norm!r}, eps={self.eps:g}{kappa}, seed={self.seed})"

    def loss(self, session: Session, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The attack's loss (to minimize) of ``scores`` for the images ``idx``."""
        name = self.loss_name or (self.targeted_loss if session.targets is not None else self.default_loss)
        return session.loss(name, scores, idx).nan_to_num(nan=float("inf"))  # a refused query: never kept

    def start_from(self, session: Session, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query the starting points ``x`` (N, C, H, W) of the images still to attack. Returns the points as
        evaluated (8-bit oracles round them; the clean image for images already done) and every image's loss
        there (the clean loss for images already done)."""
        todo = session.active()
        start = session.x0.clone()
        loss = self.loss(session, session.clean_scores, torch.arange(len(start), device=session.device))
        if len(todo):
            queried = x[todo]  # evaluate may round it in place: keep what was evaluated
            loss[todo] = self.loss(session, session.evaluate(queried, todo), todo)
            start[todo] = queried
        return start, loss

    def run(self, oracle: Oracle, targets: torch.Tensor | None = None) -> Result:
        """Attack every image of ``oracle`` until it is misclassified (or classified as ``targets[i]`` when
        targets are given) or its budget is spent. The attack gets only ``oracle.handle(self.threat)``."""
        result, seconds, recorded = fresh(oracle).serve(self.threat, lambda handle: self.run_on(handle, targets))
        return dataclasses.replace(result, forward_seconds=seconds, **recorded)

    def run_on(self, handle: QueryHandle, targets: torch.Tensor | None = None) -> Result:
        """The query loop on an attacker's handle (``run`` opens one; EOT passes an averaging one). The threat model
        is the handle's."""
        start = time.perf_counter()
        session = self._start(handle, targets)
        state = self.init(session)
        with tqdm(total=handle.budget, desc=f"{self.name} {self.norm}", unit="query", disable=not self.progress,
                  leave=False) as bar:
            bar.update(1)
            shown = time.perf_counter()
            while len(idx := session.active(self.cost)):
                self.step(session, state, idx)
                if self.progress and time.perf_counter() - shown > 0.2:  # refresh a few times a second
                    shown = time.perf_counter()
                    bar.update(int(handle.queries.max()) - bar.n)
                    bar.set_postfix(robust=f"{1 - session.success.float().mean().item():.3f}", refresh=False)
            bar.update(int(handle.queries.max()) - bar.n)
            bar.total = bar.n  # stopped early (every image done): the bar ends complete, not as an error
            bar.refresh()
        x_best = session.admissible(self.best(state))  # an iterate never queried (NES, Bandits) gets rounded too
        x_adv = torch.where(session.success.view(-1, 1, 1, 1), session.x_adv, x_best)
        first = session.first_success.clone()
        return Result(first, handle.queries, session.clean_correct, handle.budget,
                      time.perf_counter() - start, x_adv=x_adv, threat=handle.threat)

    def _start(self, handle: QueryHandle, targets: torch.Tensor | None) -> Session:
        if not isinstance(handle, QueryHandle):
            raise ValueError(f"handle must be a QueryHandle (Oracle.handle), got {type(handle).__name__}")
        if int(handle.queries.sum()):
            raise ValueError("oracle has been queried already: give every attack run a fresh Oracle")
        if handle.norm not in self.norms:
            raise ValueError(f"the handle's threat model {handle.threat} has a norm {type(self).__name__} does not "
                             f"attack in (it attacks in {', '.join(self.norms)})")
        if targets is not None:
            targets = checks.labels("targets", targets, len(handle)).to(handle.device)
            if (targets == handle.y).any():
                raise ValueError("targets must differ from the true labels for every image")
        session = Session(handle, targets, self.seed, self.kappa, self.name if self.handles_refusals else None)
        if session.norm == "l2" and session.eps > session.x0[0].numel() ** 0.5:
            warnings.warn(f"eps={session.eps:g} (l2) exceeds the diameter of the [0, 1] image box "
                          f"({session.x0[0].numel() ** 0.5:.3g}): every image is reachable", stacklevel=4)
        all_idx = torch.arange(len(handle), device=handle.device)
        session.clean_scores = session.evaluate(session.x0.clone(), all_idx)
        session.clean_correct = (session.clean_scores.argmax(1) == session.y) | session.last_refused  # unknown: on
        if targets is not None and targets.max() >= session.clean_scores.shape[1]:
            raise ValueError(f"targets must hold class indices in [0, {session.clean_scores.shape[1]}), got "
                             f"{targets.max().item()}")
        return session

    @abstractmethod
    def init(self, session: Session) -> Any:
        """Set up the attack's state after the clean query (``session.clean_scores``); may query."""

    @abstractmethod
    def step(self, session: Session, state: Any, idx: torch.Tensor) -> None:
        """One round for the images ``idx`` (each can afford ``cost`` queries): propose, query, keep or reject."""

    @abstractmethod
    def best(self, state: Any) -> torch.Tensor:
        """The attack's current point for every image (N, C, H, W)."""
