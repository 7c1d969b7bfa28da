"""The black box an attack sees.

An :class:`Oracle` wraps a classifier (defended or not) and a fixed set of images with their labels. Attacks call
``query(x, idx)`` with candidate images for the images ``idx`` and get scores back, never gradients or the model.
It counts every query per image, refuses queries beyond an image's budget, refuses candidates outside the
threat model's eps-ball, optionally quantizes queries to 8 bits (staying in the ball), and can record for every
image and query the margin the attacker observed and, for analysis only, the undefended model's margin at the same
input (the data behind AAA's Fig. 2).

Example::

    oracle = Oracle(defended, x, y, budget=1000, record=True, reference=undefended)
    scores = oracle.query(x[:3], torch.arange(3))      # three queries, one per image
    oracle.queries[:3]                                   # tensor([1, 1, 1])
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from workbench import checks
from workbench.attacks.project import inside
from workbench.data import quantize8
from workbench.losses import margin

SCORES = ("logits", "probabilities")


class BudgetExceeded(RuntimeError):
    """A query would take an image past its budget."""


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Oracle:
    """Score-only access to ``model`` for the images ``x`` with labels ``y``.

    Args:
        model: any classifier mapping images in [0, 1] to logits, defended or not.
        x: images (N, C, H, W) in [0, 1]; y: labels (N,).
        budget: queries allowed per image (>= 1).
        scores: ``"logits"`` or ``"probabilities"`` (softmax of the logits).
        quantize: round every query to 8-bit levels inside the threat model's eps-ball.
        record: keep, per image and query, the margin the attacker observed (``observed``) and, if a
            ``reference`` model is given, that model's margin at the same input (``reference_margin``).
        reference: the undefended model, for analysis only: it is never shown to the attacker.
        keep_images: also keep every queried image of the first ``keep_images`` images (``kept``: (k, budget, C,
            H, W), NaN where not queried) for replays; needs ``record=True``.
        batch_size: largest batch sent through the model at once (None: everything at once).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, budget: int,
                 scores: str = "logits", quantize: bool = False, record: bool = False,
                 reference: nn.Module | None = None, batch_size: int | None = None, keep_images: int = 0):
        checks.images("x", x)
        checks.at_least("keep_images", keep_images, 0)
        if keep_images and not record:
            raise ValueError(f"keep_images={keep_images} needs record=True")
        checks.at_least("budget", budget, 1)
        checks.choice("scores", scores, SCORES)
        if batch_size is not None:
            checks.at_least("batch_size", batch_size, 1)
        self.model, self.reference = model, reference
        self.device = model_device(model)
        self.x = x.to(self.device)
        self.y = checks.labels("y", y, len(x)).to(self.device)
        self.budget, self.scores, self.quantize, self.batch_size = budget, scores, quantize, batch_size
        self.queries = torch.zeros(len(x), dtype=torch.long, device=self.device)
        self.threat: tuple[str, float] | None = None
        self._labels_checked = False
        self.forward_seconds = 0.0
        self.observed = self._trace() if record else None
        self.reference_margin = self._trace() if record and reference is not None else None
        k = min(keep_images, len(x))
        self.kept = torch.full((k, budget, *x.shape[1:]), float("nan"), device=self.device) if k else None

    def _trace(self) -> torch.Tensor:
        return torch.full((len(self.x), self.budget), float("nan"), device=self.device)

    def __len__(self) -> int:
        return len(self.x)

    def set_threat(self, norm: str, eps: float) -> None:
        """Declare the eps-ball the queries must stay in (the attack calls this before its first query)."""
        checks.choice("norm", norm, checks.NORMS)
        checks.positive("eps", eps)
        self.threat = (norm, float(eps))

    def remaining(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Queries left per image (for the images ``idx``, or all)."""
        left = self.budget - self.queries
        return left if idx is None else left[idx]

    def query(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates ``x`` (B, C, H, W), which belong to the images ``idx`` (B,); an index may
        repeat (several queries for one image). Each row counts as one query of its image."""
        idx = torch.as_tensor(idx, device=self.device).long()
        if x.ndim != 4 or len(x) != len(idx) or x.shape[1:] != self.x.shape[1:]:
            raise ValueError(f"x must have shape (len(idx), {', '.join(map(str, self.x.shape[1:]))}), "
                             f"got {tuple(x.shape)} for {len(idx)} indices")
        counts = torch.bincount(idx, minlength=len(self.x))
        over = (self.queries + counts > self.budget).nonzero().flatten()
        if len(over):
            raise BudgetExceeded(f"images {over[:5].tolist()} would exceed their budget of {self.budget} queries")
        x = self._admit(x.to(self.device), idx)
        with torch.no_grad():
            logits = self._forward(self.model, x, timed=True)
            if not self._labels_checked:  # once: the number of classes is known from the first scores
                checks.labels("y", self.y, len(self.y), logits.shape[1])
                self._labels_checked = True
            out = logits.softmax(1) if self.scores == "probabilities" else logits
            if self.observed is not None:
                self._record(x, idx, out)
        self.queries += counts
        return out

    def _admit(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.threat is None:
            return checks.images("x", x)
        norm, eps = self.threat
        x0 = self.x[idx]
        bad = (~inside(x, x0, eps, norm)).nonzero().flatten()
        if len(bad):
            raise ValueError(f"x: candidates {bad[:5].tolist()} leave the {norm} ball of radius {eps} or [0, 1]")
        return quantize8(x, x0, eps, norm) if self.quantize else x

    def _forward(self, model: nn.Module, x: torch.Tensor, timed: bool = False) -> torch.Tensor:
        sync = self.device.type == "cuda" and timed
        if sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        step = self.batch_size or len(x)
        out = torch.cat([model(x[i:i + step]) for i in range(0, len(x), step)]) if len(x) else model(x)
        if sync:
            torch.cuda.synchronize(self.device)
        if timed:
            self.forward_seconds += time.perf_counter() - start
        return out.float()

    def _record(self, x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> None:
        pos = self.queries[idx] + rank_within_repeats(idx)
        y = self.y[idx]
        self.observed[idx, pos] = margin(out, y)
        if self.reference_margin is not None:
            self.reference_margin[idx, pos] = margin(self._forward(self.reference, x), y)
        if self.kept is not None:
            keep = idx < len(self.kept)
            self.kept[idx[keep], pos[keep]] = x[keep]


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

