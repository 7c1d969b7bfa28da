"""Intra-op threads for CPU work: loops of small operations on one thread; optionally, forwards that adapt.

With several threads every small operation waits for all of them, and when another process keeps a core busy
that wait becomes the run time. Measured on a 2-core CPU, torch's default 2 threads, interleaved runs of Square
(l-inf 0.3): 500 images x 1000 queries, 1.45 s quiet -> 4.43 s with a busy core; against AAA, 100 x 100 queries,
1.82 -> 4.70 s. With the attack's loop on one thread and forwards that pick 2 threads or 1 by their measured
speed (``Oracle(threads="auto")``): 2.22 s and 2.16 s, for a few percent more quiet. Which setting a forward gets
then depends on timing, and not every model is bit-identical across thread counts (DENT's adaptation is not;
Bandits' steps are not), so the default stays fixed: reproducible results first.

    threads(n)      context: run a block on n intra-op threads, then restore the setting
    one_thread()    context: run a block (AAA's solver, UniG's step, an attack's loop) on one thread
    Adaptive(n)     picks n threads or 1 for each forward from the measured time per image
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
