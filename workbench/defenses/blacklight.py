"""Blacklight (Li, Shan, Wenger, Zhang, Zheng and Zhao, "Blacklight: Scalable Defense for Neural Networks against
Query-Based Black-Box Attacks", USENIX Security 2022): a query is fingerprinted by hashes of windows of its
quantized pixels, and matched against an account's past fingerprints.

The mechanism, as the OARS code runs it on CIFAR-10 (Feng et al., CCS 2023; nmangaokar/ccs_23_oars_stateful_attacks,
``models/statefuldefense.py``, class ``BlackLight``, and its ``configs/cifar/blacklight`` settings; the authors' own
code is not public):

1. pixels times 255, plus a salt (an integer in 0-254 per value, redrawn at each reset), modulo 255, flattened;
2. rounded to multiples of ``round`` (50 on CIFAR-10: only six levels survive) and cast to int16;
3. the SHA-256 of every window of ``window`` consecutive values (20) with stride ``step`` (1), as hex digests
   reversed as strings; the ``keep`` (50) largest distinct ones are the fingerprint;
4. a query's distance to a past one is the share of its digests the past one lacks; flagged at
   ``<= threshold`` (0.5: half of the 50 digests match) against the closest past query of the account.

Defaults: CIFAR-10's (``round`` 50, ``window`` 20, ``step`` 1, ``keep`` 50, threshold 0.5); ImageNet's setting in
the same code is ``window`` 50, ``step`` 25 (``IMAGENET_ARGS``). The salt is drawn from ``seed``. The hashing is
hashlib's SHA-256 of each distinct window, remembered across queries (``digests``); ``tests/test_detection.py``
checks the fingerprints against a line-by-line transcription of the reference.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from workbench import checks
from workbench.stateful import Stateful

CIFAR10_ARGS = {"round": 50, "window": 20, "step": 1, "keep": 50, "threshold": 0.5}
IMAGENET_ARGS = {"round": 50, "window": 50, "step": 25, "keep": 50, "threshold": 0.5}
MEMO = 500_000  # window digests remembered (about 100 MB at most), forgotten all at once when full


@dataclass
class Fingerprints:
    """One account's memory: digest -> sequence numbers holding it, and the stored fingerprints in order."""

    index: dict[str, list[int]] = field(default_factory=dict)
    order: deque = field(default_factory=deque)


class Blacklight(Stateful):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, round: int = 50, window: int = 20, step: int = 1, keep: int = 50,
                 threshold: float = 0.5, salt: bool = True, memory: int | None = None, seed: int = 0):
        super().__init__(model, checks.non_negative("threshold", threshold), memory=memory)
        self.round = checks.at_least("round", round, 1)
        self.window = checks.at_least("window", window, 1)
        self.step = checks.at_least("step", step, 1)
        self.keep = checks.at_least("keep", keep, 1)
        self.salted, self.seed = checks.flag("salt", salt), checks.at_least("seed", seed, 0)
        self._rng = np.random.default_rng(self.seed)
        self.salt: np.ndarray | None = None
        self._memo: dict[bytes, str] = {}  # window bytes -> reversed hex digest (a pure function: kept across resets)

    def reseed(self, seed: int | None = None) -> Blacklight:
        """Restart the salt's random stream (at ``seed``, or the constructor's); the next reset draws from it."""
        if seed is not None:
            self.seed = checks.at_least("seed", seed, 0)
        self._rng = np.random.default_rng(self.seed)
        self.salt = None
        return self

    def renew(self) -> None:
        self.salt = None  # drawn at the next query, for the query's shape

    def _salt(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.salt is None or self.salt.shape != shape:
            self.salt = (self._rng.random(shape) * 255).astype(np.int16) if self.salted else np.zeros(shape, np.int16)
        return self.salt

    def quantize(self, x: torch.Tensor) -> np.ndarray:
        """Steps 1-2 for a batch (B, C, H, W) -> (B, C*H*W) int16, in float32 as the reference computes them."""
        array = x.detach().cpu().numpy().astype(np.float32) * np.float32(255.0)
        array = (array + self._salt(tuple(x.shape[1:]))) % np.float32(255.0)
        array = array.reshape(len(x), -1)
        return (np.around(array / self.round, decimals=0) * self.round).astype(np.int16)

    def digests(self, values: np.ndarray) -> list[str]:
        """Step 3 for one quantized image: the ``keep`` largest reversed hex digests. The windows are cut as one
        strided view and deduplicated before hashing, and each distinct window's digest is remembered
        (``MEMO`` windows at most): with six levels left, windows repeat within an image, and Square changes one
        square per query, so most of a query's windows were hashed before. The digests are hashlib's either way."""
        width, stride = 2 * self.window, 2 * self.step  # int16: two bytes a value
        count = (len(values) - self.window + 1) // self.step
        raw = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8)
        windows = np.lib.stride_tricks.sliding_window_view(raw, width)[::stride][:count]
        keys = set(np.ascontiguousarray(windows).view(f"V{width}").ravel().tolist())
        memo = self._memo
        missing = keys.difference(memo)  # over the keys, not the memo (CPython checks dict membership)
        if len(memo) + len(missing) > MEMO:
            memo.clear()
            missing = keys
        memo.update((key, hashlib.sha256(key).hexdigest()[::-1]) for key in missing)
        return heapq.nlargest(self.keep, set(map(memo.__getitem__, keys)))  # distinct: as sorted(reverse)[:keep]

    def signature(self, x: torch.Tensor) -> list[list[str]]:
        return [self.digests(row) for row in self.quantize(x)]

    def empty(self) -> Fingerprints:
        return Fingerprints()

    def check(self, memory: Fingerprints, signature: list[str]) -> tuple[float, int]:
        hits = Counter(seq for digest in signature for seq in memory.index.get(digest, ()))
        if not hits:
            return 1.0, -1
        seq, count = max(hits.items(), key=lambda item: (item[1], -item[0]))  # most matches, the earliest on ties
        return (self.keep - count) / self.keep, seq

    def add(self, memory: Fingerprints, signature: list[str], seq: int) -> None:
        for digest in signature:
            memory.index.setdefault(digest, []).append(seq)
        memory.order.append((seq, signature))

    def drop_oldest(self, memory: Fingerprints) -> None:
        seq, signature = memory.order.popleft()
        for digest in signature:
            held = memory.index[digest]
            held.remove(seq)
            if not held:
                del memory.index[digest]

    def footprint(self, signature: list[str]) -> int:
        """A fingerprint's payload: ``keep`` SHA-256 digests of 32 bytes, and one 8-byte reference each in the
        inverse index."""
        return len(signature) * (32 + 8)

    def _extra_state(self) -> object:
        return {"salt": self.salt, "rng": self._rng.bit_generator.state}

    def _restore_extra(self, extra: dict) -> None:
        self.salt = extra["salt"]
        self._rng.bit_generator.state = extra["rng"]
