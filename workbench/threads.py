"""Intra-op threads for CPU work: loops of small operations run on one thread, model forwards on the user's setting.

With several threads every small operation waits for all of them, and when another process keeps a core busy
that wait becomes the run time. Measured on a 2-core CPU, torch's default 2 threads, interleaved runs of Square
(l-inf 0.3; benchmarks/contention.py and benchmarks/square_peers.py): the attack's own loop (candidates,
bookkeeping, the Oracle's checks) on one thread with the forwards on two costs ~5% quiet and turns a busy core's
collapse (500 images x 1000 queries: 1.43 s quiet -> 4.20 s; against AAA, 100 x 100: 2.10 -> 3.03 s) into
2.46 s and 2.37 s. Forwards give bit-identical scores on any number of threads (the batch and the output
channels are split, never a reduction).

    threads(n)      context: run a block on n intra-op threads, then restore the setting
    one_thread()    context: run a block (AAA's solver, UniG's step, an attack's loop) on one thread
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


SMALL = 2 ** 17  # elements: an attack step on fewer runs on one thread (MNIST: up to 167 images)
_user = [torch.get_num_threads()]


def user_threads() -> int:
    """The intra-op threads outside every ``threads`` block (the user's setting, even inside ``one_thread``)."""
    return torch.get_num_threads() if _depth[0] == 0 else _user[0]


_depth = [0]


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    if _depth[0] == 0:
        _user[0] = before
    _depth[0] += 1
    try:
        if n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    finally:
        _depth[0] -= 1


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the setting. For loops of tiny tensor operations
    (AAA's logit solver, UniG's step on the features, an attack's bookkeeping): their work is too small to split,
    and with several threads every operation waits for all of them, which collapses when another process loads
    a core."""
    with threads(1):
        yield


class Adaptive:
    """Chooses between ``n`` threads (the user's setting) and one thread for each CPU forward: whichever took less
    time per image, as a running average of the recent forwards on each; the other setting is re-measured every
    ``probe``-th forward, so a core taken (or freed) by another process is noticed within a few dozen forwards.
    With n = 1 (or ``probe=0``) it always answers n."""

    def __init__(self, n: int, probe: int = 16, weight: float = 0.3):
        self.options = (n, 1) if n > 1 and probe else (n,)  # probe=0: always n
        self.probe, self.weight = probe, weight
        self.cost: dict[int, float] = {}
        self.calls = 0

    def pick(self) -> int:
        """The thread count for the next forward."""
        self.calls += 1
        untried = [n for n in self.options if n not in self.cost]
        if untried:
            return untried[0]
        best = min(self.options, key=self.cost.__getitem__)
        if len(self.options) > 1 and self.calls % self.probe == 0:
            return next(n for n in self.options if n != best)
        return best

    def record(self, n: int, seconds: float, images: int) -> None:
        """Note that a forward of ``images`` images on ``n`` threads took ``seconds``."""
        if images > 0:
            per = seconds / images
            self.cost[n] = per if n not in self.cost else (1 - self.weight) * self.cost[n] + self.weight * per
