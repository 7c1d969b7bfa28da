"""Intra-op threads for CPU work: loops of small operations on one thread; forwards that adapt to a busy machine.

With several threads every small operation waits for all of them, and when another process keeps a core busy
that wait becomes the run time (docs/performance.md: ``python -m benchmarks.contention``).

One thread does not always give the same scores bit for bit: a linear layer may round differently on one thread
than on several at some batch sizes (the zoo CNN's does at 5-7 and 9-11 images on this project's CPU), enough to
send a rounding-sensitive attack (NES's finite differences) down another path. So the Oracle's default
(``Adaptive(n, verified=True)``) moves a forward to one thread only for batch sizes where it has seen both settings
give identical scores (the first time a size is wanted on one thread, it is run on both and compared): results
never depend on timing. ``Oracle(threads="auto")`` skips that check (for models that never match, like DENT).

    fit()           at import: no more threads than the cores this process may use (affinity, CPU quota)
    threads(n)      context: run a block on n intra-op threads, then restore the setting
    one_thread()    context: run a block (AAA's solver, UniG's step, an attack's loop) on one thread
    Adaptive(n)     picks n threads or 1 for each forward from the measured time per image
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

CGROUP = Path("/sys/fs/cgroup")


def allowed_cores(cgroup: Path = CGROUP) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota (cgroup v2
    ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def _quota(cgroup: Path) -> float | None:
    """A CPU quota in cores, or None where there is none (or it cannot be read)."""
    try:
        v2 = cgroup / "cpu.max"
        if v2.is_file():
            limit, period = v2.read_text().split()[:2]
            return None if limit == "max" else int(limit) / int(period)
        v1 = cgroup / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            limit = int(v1.read_text())
            return None if limit <= 0 else limit / int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def fit(cgroup: Path = CGROUP) -> int:
    """Lower PyTorch's intra-op threads to ``allowed_cores`` where the user set none (``OMP_NUM_THREADS``) and
    PyTorch's default asks for more (its default counts the machine's cores, not a container's quota: a kernel
    limited to 2 CPUs on a 64-core server would start 64 threads on them); return the threads in use. It never
    raises the count, and never changes a count the user set: the count can change results in the last bit (a
    forward's reductions split differently), so only the user's setting or the machine's limit decides it. Load
    is left to the waiting policy (``OMP_WAIT_POLICY=PASSIVE``, set when the workbench is imported), which keeps
    every number as it is."""
    if "OMP_NUM_THREADS" not in os.environ:
        cores = allowed_cores(cgroup)
        if torch.get_num_threads() > cores:
            torch.set_num_threads(cores)
    return torch.get_num_threads()


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
    """Chooses between ``n`` threads (the user's setting) and one thread for each CPU forward of a batch: one thread
    where its time per image, the median of the last ``window`` forwards of batches of about that size (sizes 1,
    2-3, 4-7, 8-15, ...: the cost per image falls with the batch size, so only like is compared with like), is
    below ``margin`` times the setting's; else the setting. The median and the margin keep one slow forward (a
    hiccup of the machine) from moving a size class to the slower choice; a core taken by another process makes
    one thread 2-10x cheaper per image, far beyond the margin. The other setting is re-measured every
    ``probe``-th forward of a size class, so a core taken (or freed) is noticed within a few hundred forwards.
    With n = 1 (or ``probe=0``) it always answers n.

    ``verified``: one thread only for batch sizes known to give the setting's scores bit for bit. Where that is not
    known yet, ``pick`` answers None when one thread is wanted (measured for the first time in a size class, or
    the faster choice): the caller runs both settings, keeps the setting's scores and reports with ``found``. A
    periodic re-measurement on a size not known stays on the setting, so a quiet machine pays only for the
    re-measurements on known sizes and one extra forward per size class. Measured (zoo CNN, 2-core CPU, quiet):
    chunks of 64 take 1.9x as long per image on one thread (about 1.4% more with ``probe=64``), batches of 1-3
    images 0.55-0.6x (one thread is the faster choice there even on a quiet machine). A core taken by another
    process is noticed within 64 forwards of a size class (a Square step of 500 images is 8 chunks of 64).
    """

    def __init__(self, n: int, probe: int = 64, window: int = 3, margin: float = 0.8, verified: bool = False,
                 same: dict[int, bool] | None = None):
        self.options = (n, 1) if n > 1 and probe else (n,)  # probe=0: always n
        self.probe, self.margin, self.verified = probe, margin, verified
        self.cost: dict[tuple[int, int], float] = {}  # (threads, size class) -> seconds per image (the median)
        self.recent: defaultdict[tuple[int, int], deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.calls: Counter[int] = Counter()  # forwards per size class
        # batch size -> one thread gives the setting's scores bit for bit (a dict shared with earlier choices for
        # the same model, where the caller keeps one: what they found need not be checked again)
        self.same: dict[int, bool] = {} if same is None else same

    @property
    def setting(self) -> int:
        """The user's setting."""
        return self.options[0]

    @staticmethod
    def size_class(size: int) -> int:
        """Batches of 1, 2-3, 4-7, 8-15, ... images share a class."""
        return size.bit_length()

    def pick(self, size: int) -> int | None:
        """The thread count for the next forward of ``size`` images; None (verified mode): run both and report."""
        if len(self.options) == 1:
            return self.setting
        k = self.size_class(size)
        self.calls[k] += 1
        known = {n: self.cost[n, k] for n in self.options if (n, k) in self.cost}
        untried = [n for n in self.options if n not in known]
        if untried:
            return self._settle(untried[0], size, exploring=False)
        best = 1 if known[1] < self.margin * known[self.setting] else self.setting
        if self.calls[k] % self.probe == 0:
            return self._settle(next(n for n in self.options if n != best), size, exploring=True)
        return self._settle(best, size, exploring=False)

    def _settle(self, n: int, size: int, exploring: bool) -> int | None:
        if n == self.setting or not self.verified:
            return n
        same = self.same.get(size)
        if same is None:
            return self.setting if exploring else None
        return n if same else self.setting

    def found(self, size: int, same: bool) -> None:
        """Note whether one thread gave the setting's scores bit for bit for a forward of ``size`` images."""
        self.same[size] = same

    def record(self, n: int, seconds: float, images: int) -> None:
        """Note that a forward of ``images`` images on ``n`` threads took ``seconds`` (nothing to note where there is
        no choice)."""
        if images > 0 and len(self.options) > 1:
            key = (n, self.size_class(images))
            self.recent[key].append(seconds / images)
            self.cost[key] = statistics.median(self.recent[key])
