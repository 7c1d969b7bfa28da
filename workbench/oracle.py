"""The black box an attack sees.

An :class:`Oracle` is the experimenter's side: it wraps a classifier (defended or not) and a fixed set of images
with their labels (a copy: editing the caller's tensor afterwards changes nothing), counts every query per image,
refuses queries beyond an image's budget, refuses candidates outside the threat model's eps-ball, refuses
non-finite scores, optionally quantizes queries to 8 bits (staying in the ball), and can record for every image
and query the margin the attacker observed and, for analysis only, the undefended model's margin at the same
input (the data behind AAA's Fig. 2).

An attack never holds the Oracle. ``oracle.handle(norm, eps)`` fixes the threat model (once) and returns a
:class:`QueryHandle`: it can query, read the budget, the queries used and left, the clean images and labels
(copies) and the threat model, and nothing else: no model, reference model, counters to reset or recorded traces.
(Python cannot stop deliberate introspection of a closure; the handle closes every attribute path.)

Example::

    oracle = Oracle(defended, x, y, budget=1000, record=True, reference=undefended)
    handle = oracle.handle("linf", 0.3)                 # what the attack gets
    scores = handle.query(x[:3], torch.arange(3))       # three queries, one per image
    oracle.queries[:3]                                   # tensor([1, 1, 1]) on the experimenter's side
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import torch
import torch.nn as nn

from workbench import checks
from workbench.inference import agrees, fold_batchnorm, foldable
from workbench.losses import margin
from workbench.probes import IMAGES, Probes, probe, seeded
from workbench.threads import Adaptive
from workbench.threads import threads as intra_op_threads
from workbench.threat import inside, model_device, quantize8

SCORES = ("logits", "probabilities")
# Images per forward pass on a CPU (Oracle(batch_size="auto")). Measured on this project's 2-core CPU, the zoo CNN
# in channels_last, images per second at 16 / 32 / 64 / 128 / 256 / 512 per batch: 23.9k / 25.6k / 23.2k / 22.5k /
# 12.7k / 9.4k with 2 threads, 15.2k / 15.9k / 15.5k / 12.5k / 6.7k / 6.7k with one (benchmarks/square_peers.py
# prints the same sweep on your machine): small batches keep the activations in cache.
CPU_BATCH = 64


class BudgetExceeded(RuntimeError):
    """A query would take an image past its budget."""


class QueryHandle:
    """What an attack holds: score queries under a fixed threat model and a per-image budget.

    Attributes (read-only): ``x`` and ``y`` (copies of the clean images and labels), ``budget``, ``norm``,
    ``eps``, ``threat`` (norm, eps), ``scores`` ("logits" or "probabilities"), ``quantize``, ``device``;
    ``queries`` (a copy of the per-image counts), ``remaining(idx)``, ``query(x, idx)``, ``len(handle)``.
    """

    __slots__ = ("_query", "_used", "_x", "_y", "_info")

    def __init__(self, query: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], used: Callable[[], torch.Tensor],
                 x: torch.Tensor, y: torch.Tensor, *, budget: int, norm: str, eps: float, scores: str,
                 quantize: bool):
        for name, value in (("_query", query), ("_used", used), ("_x", x.clone()), ("_y", y.clone()),
                            ("_info", (budget, norm, eps, scores, quantize))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a query handle is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"QueryHandle({len(self)} images, budget={self.budget}, {self.norm} eps={self.eps:g})"

    def __len__(self) -> int:
        return len(self._x)

    budget = property(lambda self: self._info[0], doc="queries allowed per image")
    norm = property(lambda self: self._info[1], doc="the threat model's norm")
    eps = property(lambda self: self._info[2], doc="the threat model's radius")
    threat = property(lambda self: (self._info[1], self._info[2]), doc="(norm, eps)")
    scores = property(lambda self: self._info[3], doc='"logits" or "probabilities"')
    quantize = property(lambda self: self._info[4], doc="whether queries are rounded to 8 bits")
    device = property(lambda self: self._x.device, doc="where the images and scores live")
    x = property(lambda self: self._x.clone(), doc="a copy of the clean images (N, C, H, W)")
    y = property(lambda self: self._y.clone(), doc="a copy of the labels (N,)")
    queries = property(lambda self: self._used().clone(), doc="a copy of the queries used per image")

    def remaining(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Queries left per image (for the images ``idx``, or all)."""
        left = self.budget - self._used()
        return left if idx is None else left[idx]

    def query(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates ``x`` (B, C, H, W) of the images ``idx`` (B,); an index may repeat."""
        return self._query(x, idx)


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
        reference: the undefended model, for analysis only: it is never shown to the attacker.
        keep_images: also keep every queried image of the first ``keep_images`` images (``kept``: (k, budget, C,
            H, W), NaN where not queried) for replays; needs ``record=True``.
        batch_size: largest batch sent through the model at once. ``"auto"`` (default): on a CPU, chunks of
            ``CPU_BATCH`` images, the measured sweet spot, unless the probes find the model batch-dependent (then
            the attacker's batch reaches it whole, as it must); on other devices everything at once. None:
            everything at once. Chunking changes scores only at float-rounding level.
        fold: forward through a copy of the model with every batch norm folded into the convolution before it and
            ReLUs in place (``inference.fold_batchnorm``; 1.39x faster forwards of 64 images on the zoo CNN) where that
            is safe: the Oracle holds more than ``CPU_BATCH`` images, the model has no seeded random parts, the probes
            find it deterministic (a defense that adapts its batch norms, like DENT, is batch-dependent: never folded)
            and the copy's scores equal the model's up to float rounding on the probe images (``folded`` says whether it
            is in use). The copy is made when the Oracle is built. False: always the model itself.
        threads: intra-op threads of the model's CPU forwards. None (default): the process's setting when the
            Oracle is built; where the Oracle holds more than ``CPU_BATCH`` images, the probes find the model not
            random and one thread gives its scores bit for bit on the probe images, the attack's own loop runs on
            one thread and each forward moves to one thread when that has been faster per image lately (another
            process keeps a core busy), but only for batch sizes where one thread has been seen to give the
            setting's scores exactly (``threads.Adaptive(verified=True)``; what was found is kept for the model
            object, so later Oracles on it need not check again): results never depend on timing.
            ``adaptive`` says whether that is in use. Measured (benchmarks/contention.py): Square against AAA with
            a busy core 1.0-1.6x its quiet time instead of 1.9-3.1x with the setting fixed; quiet, watching costs 0-10%
            (Square, 500 undefended images). An int: that many, fixed.
            ``"auto"``: adapt without the check, for any model (DENT's adaptation never matches across thread
            counts): faster on a busy machine, but results then depend on timing.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, budget: int,
                 scores: str = "logits", quantize: bool = False, record: bool = False,
                 reference: nn.Module | None = None, batch_size: int | str | None = "auto", keep_images: int = 0,
                 threads: int | str | None = None, fold: bool = True):
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
        if batch_size not in (None, "auto"):
            batch_size = checks.at_least("batch_size", batch_size, 1)
        if threads is not None and threads != "auto":
            try:
                threads = checks.at_least("threads", threads, 1)
            except ValueError:
                raise ValueError(f"threads must be None, 'auto' or an integer >= 1, got {threads!r}") from None
        batch_size, self._net, found = self._inference(x, batch_size, checks.flag("fold", fold),
                                                        adapt=threads is None and torch.get_num_threads() > 1)
        self._x = x.to(self.device, torch.float32, copy=True)
        self.y = checks.labels("y", y, len(x)).to(self.device).clone()
        self.budget, self.scores, self.quantize, self.batch_size = budget, scores, quantize, batch_size
        self.threads = self._threads(threads, found)
        self._queries = torch.zeros(len(x), dtype=torch.long, device=self.device)
        self._threat: tuple[str, float] | None = None
        self._labels_checked = False
        self.forward_seconds = 0.0
        self.observed = self._trace() if record else None
        self.reference_margin = self._trace() if record and reference is not None else None
        k = min(keep_images, len(x))
        self.kept = torch.full((k, budget, *x.shape[1:]), float("nan"), device=self.device) if k else None

    def _inference(self, x: torch.Tensor, batch_size: int | str | None, fold: bool,
                   adapt: bool) -> tuple[int | None, nn.Module, Probes | None]:
        """The batch size and the module the forwards go through (the model or its folded copy), from one probe
        of the model (returned too) where the Oracle holds more than ``CPU_BATCH`` images and the batch size, the
        fold or (``adapt``) the thread choice needs it."""
        cpu, many = self.device.type == "cpu", len(x) > CPU_BATCH
        fold = fold and many and not seeded(self.model) and bool(foldable(self.model))
        wanted = fold or (cpu and (batch_size == "auto" or adapt))
        found = probe(self.model, x[:IMAGES]) if many and wanted else None
        if batch_size == "auto":
            batch_size = CPU_BATCH if cpu and found is not None and not found.batch_dependent else None
        twin = fold_batchnorm(self.model) if fold and found.deterministic else None  # copied only when usable
        if twin is not None and agrees(self.model, twin, x[:IMAGES].to(self.device)):
            return batch_size, twin, found
        return batch_size, self.model, found

    def _threads(self, threads: int | str | None, found: Probes | None) -> Adaptive:
        """The thread choice of the forwards (see ``threads``): adaptive and checked by default where the probes
        found the model not random and one thread gives the setting's scores on the probe images."""
        cpu = self.device.type == "cpu"
        if isinstance(threads, int):
            return Adaptive(threads, probe=0)
        setting = torch.get_num_threads()
        if threads == "auto":
            return Adaptive(setting) if cpu else Adaptive(setting, probe=0)
        if not cpu or setting == 1 or found is None or found.randomized:
            return Adaptive(setting, probe=0)
        known = _known_sizes(self.model, self.folded, setting)
        x = self._x[:self.batch_size or CPU_BATCH]  # a full chunk: the most common batch size
        if len(x) not in known:
            with torch.no_grad():
                with intra_op_threads(1):
                    alone = self._net(x)
                known[len(x)] = torch.equal(alone, self._net(x))
        return Adaptive(setting, verified=True, same=known) if known[len(x)] else Adaptive(setting, probe=0)

    @property
    def adaptive(self) -> bool:
        """Whether the forwards adapt to a busy machine (and the attack's loop runs on one thread): see
        ``threads``."""
        return len(self.threads.options) > 1

    @property
    def folded(self) -> bool:
        """Whether the forwards go through a copy of the model with its batch norms folded (see ``fold``)."""
        return self._net is not self.model

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
    def threat(self) -> tuple[str, float] | None:
        """The threat model (norm, eps) fixed by ``handle``, or None before."""
        return self._threat

    def handle(self, norm: str, eps: float) -> QueryHandle:
        """Fix the threat model (the eps-ball every query must stay in) and return the attacker's handle. The
        threat model of an Oracle is fixed once: another handle must name the same one."""
        checks.choice("norm", norm, checks.NORMS)
        eps = checks.positive("eps", eps)
        if self._threat is not None and self._threat != (norm, eps):
            raise ValueError(f"this Oracle's threat model is fixed as {self._threat}; got ({norm!r}, {eps}): build "
                             f"a fresh Oracle for another threat model")
        self._threat = (norm, eps)
        return QueryHandle(lambda x, idx: self.query(x, idx), lambda: self._queries, self._x, self.y,
                           budget=self.budget, norm=norm,
                           eps=eps, scores=self.scores, quantize=self.quantize)

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
            logits = self._forward(self._net, x, timed=True)
            self._check_scores(logits, idx)
            out = logits.softmax(1) if self.scores == "probabilities" else logits
            if self.observed is not None:
                self._record(x, idx, out)
        self._queries += counts
        return out

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

    def _forward(self, model: nn.Module, x: torch.Tensor, timed: bool = False) -> torch.Tensor:
        """Scores of ``x`` in chunks of ``batch_size``: the attacker's forwards (``timed``) on the adaptive thread
        choice, the reference model's on the setting."""
        step = self.batch_size or len(x)
        chunks = [x[i:i + step] for i in range(0, len(x), step)] or [x]
        if not timed:
            with intra_op_threads(self.threads.setting):
                return torch.cat([model(chunk) for chunk in chunks]).float()
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = torch.cat([self._chunk(model, chunk) for chunk in chunks])
        if sync:
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        return out.float()

    def _chunk(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One chunk's scores on the thread count the choice picks for its size; where the choice has to see first
        whether one thread changes the scores of this size, on both, keeping the setting's."""
        n = self.threads.pick(len(x))
        if n is not None:
            return self._timed(model, x, n)
        kept, alone = self._timed(model, x, self.threads.setting), self._timed(model, x, 1)
        self.threads.found(len(x), torch.equal(kept, alone))
        return kept

    def _timed(self, model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
        start = time.perf_counter()
        with intra_op_threads(n):
            out = model(x)
        self.threads.record(n, time.perf_counter() - start, len(x))
        return out

    def _record(self, x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> None:
        pos = self._queries[idx] + rank_within_repeats(idx)
        y = self.y[idx]
        self.observed[idx, pos] = margin(out, y)
        if self.reference_margin is not None:
            self.reference_margin[idx, pos] = margin(self._forward(self.reference, x), y)
        if self.kept is not None:
            keep = idx < len(self.kept)
            self.kept[idx[keep], pos[keep]] = x[keep]


# model -> {(folded, threads, layer shapes): {batch size: one thread gives the setting's scores bit for bit}}, for
# the life of the model object: whether one thread rounds differently depends on the layers' shapes and the
# kernels chosen for them, not on the weights' values, so a model trained further keeps what was found for it.
_KNOWN: weakref.WeakKeyDictionary[nn.Module, dict[tuple, dict[int, bool]]] = weakref.WeakKeyDictionary()


def _known_sizes(model: nn.Module, folded: bool, setting: int) -> dict[int, bool]:
    """The batch sizes checked so far (by any Oracle of this process) for ``model`` on ``setting`` threads."""
    shapes = tuple((name, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
                   for name, m in model.named_modules())
    return _KNOWN.setdefault(model, {}).setdefault((folded, setting, shapes), {})


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
