"""Defenses that keep state: the base class every detector builds on, and what the Oracle needs to serve one.

A stateful defense (Chen, Carlini and Wagner 2020, "Stateful Detection of Black-Box Adversarial Attacks"; Li et
al. 2022, Blacklight; Choi et al. 2023, PIHA) sees the queries in the order an attacker sends them, per account,
and remembers them: a query too close to the account's past ones is *flagged*. What a flag costs the attacker (a
refusal, the closest past answer again, a ban, nothing) is the Oracle's setting, not the detector's
(``workbench.oracle``): the detector only screens.

:class:`Stateful` is an ``nn.Module`` whose ``forward`` is the stateless classifier (what a benign user, the probes
and the re-evaluation of a final image get) and whose ``screen(x, accounts)`` judges a batch row by row, in index
order: each row is compared with its account's memory (``check``), then stored (``add``), flags included (as the
OARS code stores cache hits, ``add_cache_hit``). A subclass gives ``signature`` (batched, no state), ``check``,
``add``, ``drop_oldest`` and ``empty``; memory may be bounded (``memory``: the last so many queries per account,
oldest out first) for the long-interval experiments, and may be cleared on a detection (Stateful Detection's
rule). Every stored query carries a sequence number (the order the detector saw it), which the Oracle uses to
answer a flagged query with the closest past answer.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from workbench import checks


@dataclass(frozen=True)
class Screening:
    """A detector's verdict on a batch, row by row: ``flagged`` (B,) bool, ``distance`` (B,) the detector's
    distance to the account's memory (inf where it had nothing to compare with), ``nearest`` (B,) the sequence
    number of the closest past query (-1 where none), ``seq`` (B,) each row's own sequence number."""

    flagged: torch.Tensor
    distance: torch.Tensor
    nearest: torch.Tensor
    seq: torch.Tensor


class Stateful(nn.Module):
    """Base of a stateful detector around the classifier ``model``.

    Args:
        model: the classifier whose answers the detector guards (its ``forward`` is this module's).
        threshold: a query is flagged at a distance ``<= threshold`` (``strict``: ``< threshold``).
        memory: queries kept per account (the oldest dropped first); None keeps all (the published settings).
        clear_on_detection: empty the account's memory after a flag (Stateful Detection's rule).
        strict: compare with ``<`` instead of ``<=``.
    """

    memoryless = False  # True: every query is judged alone (a stateless detector), even an account's first

    def __init__(self, model: nn.Module, threshold: float, *, memory: int | None = None,
                 clear_on_detection: bool = False, strict: bool = False):
        super().__init__()
        self.model = model
        self.threshold = float(threshold)
        self.memory = None if memory is None else checks.at_least("memory", memory, 1)
        self.clear_on_detection = checks.flag("clear_on_detection", clear_on_detection)
        self.strict = strict
        self._accounts: dict[int, Any] = {}
        self._sizes: dict[int, int] = {}
        self._seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stateless answer: the classifier's logits (nothing is screened or remembered)."""
        return self.model(x)

    # ------------------------------------------------------------------------------------- what a detector gives
    @abstractmethod
    def signature(self, x: torch.Tensor) -> Any:
        """What the detector remembers of each image of the batch ``x`` (indexable by row); no state is read."""

    @abstractmethod
    def empty(self) -> Any:
        """A fresh account's memory."""

    @abstractmethod
    def check(self, memory: Any, signature: Any) -> tuple[float, int]:
        """The distance of one signature to the memory and the sequence number of the closest past query (inf
        and -1 where the memory cannot judge yet)."""

    @abstractmethod
    def add(self, memory: Any, signature: Any, seq: int) -> None:
        """Store one signature with its sequence number."""

    @abstractmethod
    def drop_oldest(self, memory: Any) -> None:
        """Forget the oldest stored query."""

    def is_flagged(self, distance: float) -> bool:
        """Whether a distance is a detection: ``<= threshold`` (``< threshold`` where ``strict``)."""
        return distance < self.threshold if self.strict else distance <= self.threshold

    def footprint(self, signature: Any) -> int:
        """Bytes one stored query takes (its payload: digests, codes, encodings)."""
        return int(signature.numel() * signature.element_size()) if isinstance(signature, torch.Tensor) else 0

    def renew(self) -> None:
        """Redraw whatever a reset redraws (Blacklight's salt); nothing by default."""

    # ------------------------------------------------------------------------------------------ the machinery
    def reset(self) -> Stateful:
        """Forget every account (the Oracle does this before each attack run) and redraw what a reset redraws."""
        self._accounts, self._sizes, self._seen = {}, {}, 0
        self.renew()
        return self

    @property
    def stored(self) -> int:
        """Queries held in memory over all accounts."""
        return sum(self._sizes.values())

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state (``restore`` puts it back): the probes screen without leaving a trace."""
        return copy.deepcopy({"accounts": self._accounts, "sizes": self._sizes, "seen": self._seen,
                              "extra": self._extra_state()})

    def restore(self, state: dict[str, Any]) -> None:
        state = copy.deepcopy(state)
        self._accounts, self._sizes, self._seen = state["accounts"], state["sizes"], state["seen"]
        self._restore_extra(state["extra"])

    def _extra_state(self) -> Any:
        return None

    def _restore_extra(self, extra: Any) -> None:
        pass

    def screen(self, x: torch.Tensor, accounts: torch.Tensor) -> Screening:
        """Judge the rows of ``x`` (B, C, H, W) from the accounts ``accounts`` (B,) in index order, storing each."""
        if len(accounts) != len(x):
            raise ValueError(f"accounts must have one entry per image, got {len(accounts)} for {len(x)}")
        with torch.no_grad():
            signatures = self.signature(x)
        b = len(x)
        flagged = torch.zeros(b, dtype=torch.bool)
        distance = torch.full((b,), float("inf"), dtype=torch.float64)
        nearest = torch.full((b,), -1, dtype=torch.long)
        seq = torch.arange(self._seen, self._seen + b)
        for i, account in enumerate(accounts.tolist()):
            memory = self._accounts.get(account)
            if memory is None:
                memory = self._accounts[account] = self.empty()
                self._sizes[account] = 0
            judged = self._sizes[account] or self.memoryless
            d, near = self.check(memory, signatures[i]) if judged else (float("inf"), -1)
            distance[i], nearest[i] = d, near
            flagged[i] = self.is_flagged(d)
            self.add(memory, signatures[i], self._seen)
            self._seen += 1
            self._sizes[account] += 1
            if self.memory is not None and self._sizes[account] > self.memory:
                self.drop_oldest(memory)
                self._sizes[account] -= 1
            if flagged[i] and self.clear_on_detection:
                self._accounts[account] = self.empty()
                self._sizes[account] = 0
        return Screening(flagged, distance, nearest, seq)


class Codes:
    """One account's stored signatures as rows of one growing tensor (``codes``: the live rows, oldest first, a
    view) with their sequence numbers (``seqs``). Storing or forgetting one is amortized O(1): the buffer doubles
    when full and the oldest rows are dropped by moving its start, so a detector's check reads the memory without
    stacking it again at every query."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._start = self._end = 0
        self.seqs: list[int] = []

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def codes(self) -> torch.Tensor:
        if self._buffer is None:
            raise ValueError("no code is stored yet")
        return self._buffer[self._start:self._end]

    def append(self, code: torch.Tensor, seq: int) -> None:
        if self._buffer is None:
            self._buffer = torch.empty(16, *code.shape, dtype=code.dtype, device=code.device)
        if self._end == len(self._buffer):  # full: move the live rows to the front, doubling where they fill half
            live = self._buffer[self._start:self._end].clone()
            if 2 * len(live) >= len(self._buffer):
                self._buffer = torch.empty(2 * len(self._buffer), *code.shape, dtype=code.dtype, device=code.device)
            self._buffer[:len(live)] = live
            self._start, self._end = 0, len(live)
        self._buffer[self._end] = code
        self._end += 1
        self.seqs.append(seq)

    def pop_oldest(self) -> None:
        self._start += 1
        self.seqs.pop(0)


class CodeMemory(Stateful):
    """A detector whose account memory is its stored signatures (one tensor per query, e.g. PIHA's hash codes or a
    k-NN detector's encodings) with their sequence numbers, oldest first (``Codes``)."""

    def empty(self) -> Codes:
        return Codes()

    def add(self, memory: Codes, signature: torch.Tensor, seq: int) -> None:
        memory.append(signature, seq)  # copied into the buffer: not a view of the batch

    def drop_oldest(self, memory: Codes) -> None:
        memory.pop_oldest()


def find(model: nn.Module) -> Stateful | None:
    """The stateful part of ``model`` (itself or a submodule), or None for a stateless defense."""
    return next((m for m in model.modules() if isinstance(m, Stateful)), None)
