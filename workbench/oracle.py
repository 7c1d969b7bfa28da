"""The black box an attack sees.

An :class:`Oracle` is the experimenter's side: it wraps a classifier (defended or not) and a fixed set of images
with their labels (a copy: editing the caller's tensor afterwards changes nothing), counts every query per image,
refuses queries beyond an image's budget, refuses candidates outside the threat model's eps-ball, refuses
non-finite scores, optionally quantizes queries to 8 bits (staying in the ball), and can record for every image
and query the margin the attacker observed and, for analysis only, the undefended model's margin at the same
input (the data behind AAA's Fig. 2). It serves a stateful defense (a detector, ``workbench.stateful``) too: row by
row per account, with refusals, bans, new accounts and interleaved benign queries as settings, and it records each
image's detections.

An attack never holds the Oracle. ``oracle.handle(threat)`` fixes the threat model (once) and returns a
:class:`QueryHandle`: it can query, read the budget, the queries used and left, the clean images and labels
(copies) and the threat model, and nothing else: no model, reference model, counters to reset or recorded traces.
(Python cannot stop deliberate introspection of a closure; the handle closes every attribute path.)

Example::

    oracle = Oracle(defended, x, y, budget=1000, record=True, reference=undefended)
    handle = oracle.handle(Threat("linf", 0.3))         # what the attack gets
    scores = handle.query(x[:3], torch.arange(3))       # three queries, one per image
    oracle.queries[:3]                                   # tensor([1, 1, 1]) on the experimenter's side
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn as nn

from workbench import checks, stateful
from workbench.losses import margin
from workbench.probes import Probes
from workbench.speed import Forwards
from workbench.threat import Threat, inside, model_device, quantize8

SCORES = ("logits", "probabilities")
RECORD_LIMIT = 2 ** 31  # recorded values (images x budget, and kept pixels) an Oracle may allocate: 8 GB of float32
T = TypeVar("T")


class BudgetExceeded(RuntimeError):
    """A query would take an image past its budget."""


class QueryHandle:
    """What an attack holds: score queries under a fixed threat model and a per-image budget.

    Attributes (read-only): ``x`` and ``y`` (copies of the clean images and labels), ``budget``, ``threat`` (the
    Oracle's ``Threat``, with ``norm`` and ``eps`` read from it), ``scores`` ("logits" or "probabilities"), ``quantize``, ``device``;
    ``queries`` (a copy of the per-image counts), ``remaining(idx)``, ``query(x, idx)``, ``len(handle)``; against a
    detector, ``refused`` (which rows of the last query were refused) and ``new_account(idx)`` where allowed.
    """

    __slots__ = ("_query", "_used", "_x", "_y", "_info", "_refused", "_open")

    def __init__(self, query: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], used: Callable[[], torch.Tensor],
                 x: torch.Tensor, y: torch.Tensor, *, budget: int, threat: Threat, scores: str,
                 quantize: bool, refused: Callable[[], torch.Tensor | None] = lambda: None,
                 new_account: Callable[[torch.Tensor], None] | None = None):
        for name, value in (("_query", query), ("_used", used), ("_x", x.clone()), ("_y", y.clone()),
                            ("_info", (budget, threat, scores, quantize)), ("_refused", refused),
                            ("_open", new_account)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a query handle is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"QueryHandle({len(self)} images, budget={self.budget}, {self.norm} eps={self.eps:g})"

    def __len__(self) -> int:
        return len(self._x)

    budget = property(lambda self: self._info[0], doc="queries allowed per image")
    threat = property(lambda self: self._info[1], doc="the threat model (a ``Threat``)")
    norm = property(lambda self: self._info[1].norm, doc="the threat model's norm")
    eps = property(lambda self: self._info[1].eps, doc="the threat model's radius")
    scores = property(lambda self: self._info[2], doc='"logits" or "probabilities"')
    quantize = property(lambda self: self._info[3], doc="whether queries are rounded to 8 bits")
    device = property(lambda self: self._x.device, doc="where the images and scores live")
    x = property(lambda self: self._x.clone(), doc="a copy of the clean images (N, C, H, W)")
    y = property(lambda self: self._y.clone(), doc="a copy of the labels (N,)")
    queries = property(lambda self: self._used().clone(), doc="a copy of the queries used per image")
    refused = property(lambda self: self._refused(), doc="which rows of the last query were refused (a bool "
                       "tensor), or None where the defense never refuses")

    def new_account(self, idx: torch.Tensor) -> None:
        """Send the later queries of the images ``idx`` from a fresh account (an empty memory, no ban), where the
        threat model allows it (``Oracle(new_accounts=True)``); with one account for the whole run, the run moves."""
        if self._open is None:
            raise ValueError("this threat model allows no new accounts: build the Oracle with new_accounts=True "
                             "(an attacker who can open accounts at will)")
        self._open(idx)

    def remaining(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Queries left per image (for the images ``idx``, or all)."""
        left = self.budget - self._used()
        return left if idx is None else left[idx]

    def query(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates ``x`` (B, C, H, W) of the images ``idx`` (B,); an index may repeat."""
        return self._query(x, idx)


ACCOUNTS = ("image", "shared")
REFUSALS = ("empty", "closest", "silent")


class Oracle:
    """Score-only access to ``model`` for the images ``x`` with labels ``y``.

    Args:
        model: any classifier (an ``nn.Module``) mapping images in [0, 1] to logits, defended or not.
        x: images (N, C, H, W) in [0, 1], N >= 1 (float64 / float16 are converted to float32; copied);
            y: labels (N,).
        budget: queries allowed per image (>= 1).
        scores: ``"logits"`` or ``"probabilities"`` (softmax of the logits).
        quantize: round every query to 8-bit levels inside the threat model's eps-ball.
        record: keep, per image and query, the margin the attacker observed (``observed``) and, if a
            ``reference`` model is given, that model's margin at the same input (``reference_margin``).
        reference: the undefended model, for analysis only: it is never shown to the attacker. Its forwards run
            fast the same way (chunks, folding; on the thread setting); where it is the defense's own ``base`` and
            the Oracle post-processes the base's logits (``forwards.split``), its margins come from the base logits
            the defended forward computed (equal to the reference's up to float rounding: checked on the probe
            images) instead of a second forward.
        keep_images: also keep every queried image of the first ``keep_images`` images (``kept``: (k, budget, C,
            H, W), NaN where not queried) for replays; needs ``record=True``.
        batch_size, fold, threads: how the forward passes run fast without changing what they compute (chunks,
            batch-norm folding, the thread choice): see ``workbench.speed.forward.Forwards``, which the Oracle holds as
            ``forwards``. Defaults: chunks of 64 images on a CPU for a batch-independent model, the folded copy
            where it is safe, and forwards that move to one thread on a busy machine only where that keeps the
            scores bit for bit.
        probes: what ``probes.probe`` measured of ``model``, where the caller has it (the run path): the forwards
            then decide from it instead of probing the model again.

    A stateful defense (``model`` a ``workbench.stateful.Stateful``: a detector) is served with its memory emptied
    first; each batch reaches it row by row in index order, as a serial attacker sends them. Its settings:

        accounts: ``"image"`` (one account per image, the default) or ``"shared"`` (one account for the run).
        refusal: what a flagged query gets: ``"empty"`` (no scores: a row of NaN, and the flag), ``"closest"``
            (OARS's convention: the answer of the closest past query of the account again, and the flag) or
            ``"silent"`` (the normal answer; the detection is only recorded, as Stateful Detection's deployment
            and OARS's ``rejection_silent``). A refused query counts against the budget all the same.
        ban: after an account's first detection every later query of it is refused (no scores).
        new_accounts: the attacker may open fresh accounts (``handle.new_account``).
        interleave, benign: before each attack query, ``interleave`` benign queries (the images ``benign`` in
            order, cycled) reach the same account: the long-interval attacker (their flags are counted in
            ``benign_flags``; they do not count against the attack's budget, ``benign_queries`` counts them).

    Recorded per image for a stateful defense: ``first_detection`` (the query of the first flag, -1 none),
    ``detections`` (flags) and ``refusals`` (refused queries).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, budget: int,
                 scores: str = "logits", quantize: bool = False, record: bool = False,
                 reference: nn.Module | None = None, batch_size: int | str | None = "auto", keep_images: int = 0,
                 threads: int | str | None = None, fold: bool = True, probes: Probes | None = None,
                 accounts: str = "image", refusal: str = "empty", ban: bool = False, new_accounts: bool = False,
                 interleave: int = 0, benign: torch.Tensor | None = None):
        checks.module("model", model)
        if reference is not None:
            checks.module("reference", reference)
        checks.images("x", x)
        if not len(x):
            raise ValueError("x must hold at least one image, got an empty batch of shape "
                             f"{tuple(x.shape)}")
        keep_images = checks.at_least("keep_images", keep_images, 0)
        quantize, record = checks.flag("quantize", quantize), checks.flag("record", record)
        if keep_images and not record:
            raise ValueError(f"keep_images={keep_images} needs record=True")
        budget = checks.at_least("budget", budget, 1)
        checks.choice("scores", scores, SCORES)
        self.model, self.reference = model, reference
        self.device = model_device(model)
        if record:
            _fits_in_memory(len(x), budget, keep_images, x.shape[1:])
        self.forwards = Forwards(model, x, batch_size=batch_size, fold=fold, threads=threads, probes=probes,
                                 budget=budget)
        self._x = x.to(self.device, torch.float32, copy=True)
        self.y = checks.labels("y", y, len(x)).to(self.device).clone()
        self.budget, self.scores, self.quantize = budget, scores, quantize
        self._queries = torch.zeros(len(x), dtype=torch.long, device=self.device)
        self._threat: Threat | None = None
        self._labels_checked = False
        self.observed = self._trace() if record else None
        self.reference_margin = self._trace() if record and reference is not None else None
        recorded = self.reference_margin is not None
        self._shares_base = recorded and self.forwards.split and reference is getattr(model, "base", None)
        self._reference = (Forwards(reference, x, threads=torch.get_num_threads(), budget=budget)
                           if recorded and not self._shares_base else None)
        k = min(keep_images, len(x))
        self.kept = torch.full((k, budget, *x.shape[1:]), float("nan"), device=self.device) if k else None
        self._serve_state(model, accounts, refusal, ban, new_accounts, interleave, benign)

    def _serve_state(self, model: nn.Module, accounts: str, refusal: str, ban: bool, new_accounts: bool,
                     interleave: int, benign: torch.Tensor | None) -> None:
        """Check and keep the settings of a stateful defense (see the class docstring); empty its memory."""
        checks.choice("accounts", accounts, ACCOUNTS)
        checks.choice("refusal", refusal, REFUSALS)
        self.ban, self.new_accounts = checks.flag("ban", ban), checks.flag("new_accounts", new_accounts)
        self.interleave = checks.at_least("interleave", interleave, 0)
        self.detector = stateful.find(model)
        if self.detector is not None and self.detector is not model:
            raise ValueError(f"model holds a stateful detector ({type(self.detector).__name__}) inside "
                             f"{type(model).__name__}: a detector must be the outermost defense, where the queries "
                             f"arrive")
        if self.detector is None and (accounts != "image" or refusal != "empty" or ban or new_accounts or interleave):
            raise ValueError(f"accounts, refusal, ban, new_accounts and interleave apply to a stateful defense; "
                             f"{type(model).__name__} keeps no state")
        if interleave and benign is None:
            raise ValueError(f"interleave={interleave} needs benign images (benign=)")
        self.accounts, self.refusal = accounts, refusal
        self._benign = None if benign is None else checks.images("benign", benign).to(self.device, torch.float32)
        self._benign_at = 0
        self.benign_queries = self.benign_flags = 0
        n = len(self._x)
        self._account = torch.arange(n) if accounts == "image" else torch.zeros(n, dtype=torch.long)
        self._next_account = int(self._account.max()) + 1
        self.accounts_opened = 0
        self._banned: set[int] = set()
        self._answers: dict[int, torch.Tensor] = {}
        self._last_refused: torch.Tensor | None = None
        stateless = self.detector is None
        self.first_detection = None if stateless else torch.full((n,), -1, dtype=torch.long, device=self.device)
        self.detections = None if stateless else torch.zeros(n, dtype=torch.long, device=self.device)
        self.refusals = None if stateless else torch.zeros(n, dtype=torch.long, device=self.device)
        if self.detector is not None:
            self.detector.reset()

    @property
    def batch_size(self) -> int | None:
        """The most images per forward pass (see ``batch_size``)."""
        return self.forwards.batch_size

    @property
    def forward_seconds(self) -> float:
        """Time spent in the attacker's forward passes so far."""
        return self.forwards.seconds

    def _trace(self) -> torch.Tensor:
        return torch.full((len(self._x), self.budget), float("nan"), device=self.device)

    def __len__(self) -> int:
        return len(self._x)

    @property
    def x(self) -> torch.Tensor:
        """A copy of the clean images."""
        return self._x.clone()

    @property
    def queries(self) -> torch.Tensor:
        """A copy of the queries used per image."""
        return self._queries.clone()

    @property
    def threat(self) -> Threat | None:
        """The threat model (norm, eps) fixed by ``handle``, or None before."""
        return self._threat

    def serve(self, threat: Threat, loop: Callable[[QueryHandle], T]) -> tuple[T, float, dict[str, torch.Tensor | None]]:
        """Run an attacker's ``loop`` on a handle for the threat model ``threat``, on the threads the forwards
        call for (one thread where they adapt to a busy machine), and return what it returns, the seconds it
        spent in forward passes and what the Oracle recorded (``observed``, ``reference_margin``, ``kept``; None
        where not recorded). ``Attack.run`` calls this: an attack never reads the Oracle's state."""
        handle = self.handle(threat)
        before = self.forwards.seconds
        with self.forwards.loop():
            out = loop(handle)
        recorded = {"observed": self.observed, "reference_margin": self.reference_margin, "kept": self.kept,
                    "first_detection": self.first_detection, "detections": self.detections,
                    "refusals": self.refusals}
        return out, self.forwards.seconds - before, recorded

    def handle(self, threat: Threat | str, eps: float | None = None) -> QueryHandle:
        """Fix the threat model (the eps-ball every query must stay in: a ``Threat``, or its norm and eps) and
        return the attacker's handle, which carries it. The threat model of an Oracle is fixed once: another handle
        must name the same one."""
        threat = threat if isinstance(threat, Threat) else Threat(threat, eps)
        if self._threat is not None and self._threat != threat:
            raise ValueError(f"this Oracle's threat model is fixed as {self._threat}; got {threat}: build a fresh "
                             f"Oracle for another threat model")
        self._threat = threat
        return QueryHandle(lambda x, idx: self.query(x, idx), lambda: self._queries, self._x, self.y,
                           budget=self.budget, threat=threat, scores=self.scores, quantize=self.quantize,
                           refused=lambda: None if self._last_refused is None else self._last_refused.clone(),
                           new_account=(lambda idx: self.open_accounts(idx)) if self.new_accounts else None)

    def open_accounts(self, idx: torch.Tensor) -> None:
        """Move the images ``idx`` to fresh accounts (one each; with a shared account, the whole run to one)."""
        if self.detector is None or not self.new_accounts:
            raise ValueError("new accounts need a stateful defense and new_accounts=True")
        idx = torch.as_tensor(idx).long().cpu()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self._x)):
            raise ValueError(f"idx must hold image indices in [0, {len(self._x)})")
        if self.accounts == "shared":
            self._account[:] = self._next_account
            self._next_account += 1
            self.accounts_opened += 1
            return
        for i in idx.unique().tolist():
            self._account[i] = self._next_account
            self._next_account += 1
            self.accounts_opened += 1

    def remaining(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Queries left per image (for the images ``idx``, or all)."""
        left = self.budget - self._queries
        return left if idx is None else left[idx]

    def query(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates ``x`` (B, C, H, W), which belong to the images ``idx`` (B,); an index may
        repeat (several queries for one image). Each row counts as one query of its image."""
        idx = self._indices(idx, x)
        counts = torch.bincount(idx, minlength=len(self._x))
        over = (self._queries + counts > self.budget).nonzero().flatten()
        if len(over):
            raise BudgetExceeded(f"images {over[:5].tolist()} would exceed their budget of {self.budget} queries")
        x = self._admit(x.to(self.device, torch.float32), idx)
        with torch.no_grad():
            logits = self.forwards(x)
            self._check_scores(logits, idx)
            out = logits.softmax(1) if self.scores == "probabilities" else logits
            if self.detector is not None:
                out = self._screen(x, idx, out)
            if self.observed is not None:
                self._record(x, idx, out)
        self._queries += counts
        return out

    def _screen(self, x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The detector's verdict on the batch (with the interleaved benign queries before each row), the
        bookkeeping of detections, bans and refusals, and the answers as the refusal convention gives them."""
        accounts = self._account[idx.cpu()]
        if self.interleave:
            x_all, acc_all, attack_rows = self._interleaved(x, accounts)
        else:
            x_all, acc_all, attack_rows = x, accounts, torch.arange(len(x))
        screening = self.detector.screen(x_all, acc_all)
        flagged_all = screening.flagged
        if self.interleave:
            benign = torch.ones(len(x_all), dtype=torch.bool)
            benign[attack_rows] = False
            self.benign_queries += int(benign.sum())
            self.benign_flags += int((flagged_all & benign).sum())
        flagged = flagged_all[attack_rows]
        refused = flagged.clone() if self.refusal != "silent" else torch.zeros_like(flagged)
        for row, account in enumerate(accounts.tolist()):  # bans act in the order the queries arrive
            if account in self._banned:
                refused[row] = True
            elif self.ban and flagged[row]:
                self._banned.add(account)
                refused[row] = True
        if self.interleave:  # a benign query of a banned account is refused too; it never reaches the attacker
            self._banned.update(acc_all[flagged_all].tolist() if self.ban else [])
        self._note_detections(idx, flagged.to(self.device), refused.to(self.device))
        out = out.clone()
        if self.refusal == "closest":
            self._closest(out, screening, attack_rows, refused)
        if self.refusal != "closest":
            out[refused.to(self.device)] = float("nan")
        self._last_refused = refused.to(self.device)
        return out

    def _interleaved(self, x: torch.Tensor, accounts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row preceded by ``interleave`` benign images from the same account."""
        k, n = self.interleave, len(self._benign)
        picks = (self._benign_at + torch.arange(len(x) * k)) % n
        self._benign_at = int((self._benign_at + len(x) * k) % n)
        benign = self._benign[picks].view(len(x), k, *x.shape[1:])
        x_all = torch.cat([benign, x[:, None]], 1).flatten(0, 1)
        acc_all = accounts.repeat_interleave(k + 1)
        return x_all, acc_all, torch.arange(len(x)) * (k + 1) + k

    def _note_detections(self, idx: torch.Tensor, flagged: torch.Tensor, refused: torch.Tensor) -> None:
        q = self._queries[idx] + rank_within_repeats(idx) + 1
        self.detections += torch.bincount(idx[flagged], minlength=len(self._x))
        self.refusals += torch.bincount(idx[refused], minlength=len(self._x))
        if flagged.any():
            first = torch.full_like(self.first_detection, torch.iinfo(torch.long).max)
            first.scatter_reduce_(0, idx[flagged], q[flagged], reduce="amin")
            new = (self.first_detection < 0) & (first < torch.iinfo(torch.long).max)
            self.first_detection[new] = first[new]

    def _closest(self, out: torch.Tensor, screening: object, rows: torch.Tensor, refused: torch.Tensor) -> None:
        """OARS's convention: a refused row gets the answer of the closest past query (NaN where there is none, a
        banned account's later queries); every answer given is remembered under the row's sequence number."""
        seqs, nearest = screening.seq[rows].tolist(), screening.nearest[rows].tolist()
        for row, (seq, near) in enumerate(zip(seqs, nearest)):
            if refused[row]:
                out[row] = self._answers.get(near, torch.full_like(out[row], float("nan")))
            self._answers[seq] = out[row].clone()

    def _indices(self, idx: object, x: object) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=self.device)
        if idx.is_floating_point() or idx.dtype == torch.bool or idx.ndim != 1:
            raise ValueError(f"idx must be a 1-d integer tensor of image indices, got dtype {idx.dtype}, "
                             f"shape {tuple(idx.shape)}")
        if len(idx):
            low, high = torch.aminmax(idx)
            if low < 0 or high >= len(self._x):
                raise ValueError(f"idx must hold image indices in [0, {len(self._x)}), got range "
                                 f"[{low.item()}, {high.item()}]")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or len(x) != len(idx) or x.shape[1:] != self._x.shape[1:]:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (len(idx), {', '.join(map(str, self._x.shape[1:]))}), "
                             f"got {shape} for {len(idx)} indices")
        return idx.long()

    def _check_scores(self, logits: torch.Tensor, idx: torch.Tensor) -> None:
        if logits.ndim != 2 or len(logits) != len(idx):
            raise ValueError(f"the model {type(self.model).__name__} returned scores of shape {tuple(logits.shape)} "
                             f"for {len(idx)} images; a classifier must return (N, num_classes) logits")
        if not torch.isfinite(logits).all():
            bad = (~torch.isfinite(logits).all(1)).nonzero().flatten()
            raise ValueError(f"the model {type(self.model).__name__} returned non-finite scores (NaN or inf) for "
                             f"images {idx[bad][:5].tolist()}: check the defense's hyperparameters; nothing was "
                             f"counted")
        if not self._labels_checked:  # once: the number of classes is known from the first scores
            checks.labels("y", self.y, len(self.y), logits.shape[1])
            self._labels_checked = True

    def _admit(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self._threat is None:
            return checks.images("x", x)
        norm, eps = self._threat
        x0 = self._x[idx]
        bad = (~inside(x, x0, eps, norm)).nonzero().flatten()
        if len(bad):
            raise ValueError(f"x: candidates {bad[:5].tolist()} leave the {norm} ball of radius {eps} or [0, 1]")
        return quantize8(x, x0, eps, norm) if self.quantize else x

    def _record(self, x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> None:
        pos = self._queries[idx] + rank_within_repeats(idx)
        y = self.y[idx]
        self.observed[idx, pos] = margin(out, y)
        if self.reference_margin is not None:
            reference = self.forwards.base_logits if self._shares_base else self._reference(x)
            self.reference_margin[idx, pos] = margin(reference, y)
        if self.kept is not None:
            keep = idx < len(self.kept)
            self.kept[idx[keep], pos[keep]] = x[keep]


def _fits_in_memory(n: int, budget: int, keep_images: int, shape: torch.Size) -> None:
    """Refuse a recording larger than ``RECORD_LIMIT`` values, naming the arguments."""
    values = n * budget * 2 + min(keep_images, n) * budget * shape.numel()
    if values > RECORD_LIMIT:
        raise ValueError(f"record=True keeps {values:.3g} values for {n} images x budget={budget}"
                         f"{f' (keep_images={keep_images})' if keep_images else ''}: more than {RECORD_LIMIT:.3g} "
                         f"({4 * RECORD_LIMIT / 2 ** 30:.0f} GiB); lower budget, keep_images or the number of "
                         f"images, or pass record=False")


def rank_within_repeats(idx: torch.Tensor) -> torch.Tensor:
    """For each entry, how many earlier entries carry the same index (0 for the first occurrence)."""
    order = torch.sort(idx, stable=True).indices
    sorted_idx = idx[order]
    start = torch.ones_like(sorted_idx, dtype=torch.bool)
    start[1:] = sorted_idx[1:] != sorted_idx[:-1]
    pos = torch.arange(len(idx), device=idx.device)
    first = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - first
    return rank
