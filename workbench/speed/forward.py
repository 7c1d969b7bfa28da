"""How the Oracle's forward passes run fast, without changing what they compute: chunking, batch-norm folding,
the thread choice and its timing, and what is known per model. The Oracle (the black box) holds one
:class:`Forwards` and calls it; an attack never sees it.

- Chunks: on a CPU, queries go through the model ``CPU_BATCH`` images at a time (``batch_size="auto"``) unless the
  probes find the model batch-dependent (UniG, DENT: then the attacker's batch reaches it whole, as it must).
- Folding: where the probes find the model deterministic and it has no seeded random parts, forwards go through a
  copy with its batch norms folded into the convolutions and its ReLUs in place (``workbench.speed.inference``), used
  only where the copy agrees with the model on the probe images; a post-processing defense (below) is folded by
  its base, and the agreement asked is the base's.
- Post-processing: a defense that post-processes the logits of a classifier says so with ``base`` (the
  classifier) and ``post_process(logits)`` (AAA, temperature scaling). Where its output on the probe images is
  ``post_process(base(x))`` up to float rounding, the base's forward runs in chunks and the post-processing once
  over the whole query batch (AAA's solver then runs once per query batch, not once per chunk).
- Threads: with the default ``threads=None`` and a model the probes find not random, each chunk runs on the
  user's setting or on one thread, whichever has lately been cheaper per image (``threads.Adaptive``), but on one
  thread only at batch sizes where one thread has been seen to give the setting's scores bit for bit: results
  never depend on timing. The attack's own loop then runs on one thread too (``loop``).

The timings behind these defaults are in docs/performance.md, each with the benchmark that prints it.

Example::

    forwards = Forwards(model, x)          # probes the model on x's first images where a choice needs it
    scores = forwards(x[:100])             # chunked, maybe folded, on the chosen threads; timed
    forwards.batch_size, forwards.folded, forwards.split, forwards.adaptive, forwards.seconds
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable

import torch
import torch.nn as nn

from workbench import checks
from workbench.probes import IMAGES, PROBE_MIN, Probes, probe, seeded
from workbench.speed.inference import agrees, fold_batchnorm, foldable
from workbench.speed.threads import Adaptive, one_thread
from workbench.speed.threads import threads as intra_op_threads
from workbench.threat import model_device

# Images per forward pass on a CPU (batch_size="auto"): small batches keep the activations in cache. The sweep
# behind it: python -m benchmarks.square_peers (docs/performance.md).
CPU_BATCH = 64
# Queries (images x budget) from which the fast path is worth its set-up (a probe of the model, a folded copy and
# its agreement check, the thread check: a few hundred image forwards, under 2% of this) whatever the image count:
# 16 or 44 images attacked for 1000 queries get it too (python -m benchmarks.fast_path).
FAST_PATH_WORK = 10_000
# Rows (query batch images) from which the post-processing runs on a thread count chosen by its own measurements:
# below, the choice (about 5 us) costs more than it can win, and AAA's solver splits its rows only from 2 x 64.
POST_CHOICE_FROM = 128


class Forwards:
    """The forward passes of ``model`` for an Oracle holding the images ``x`` (see the module docstring).

    Args:
        model: the classifier the Oracle wraps.
        x: the Oracle's images; the first ``probes.IMAGES`` probe the model where a choice needs it (only where
            the work ahead pays for it: see ``budget``).
        batch_size: the most images per forward: ``"auto"`` (``CPU_BATCH`` on a CPU for a batch-independent model,
            else everything at once), None (everything at once) or an int.
        fold: use the folded copy where that is safe (``folded`` says whether it is in use).
        threads: None (the setting, adapting to a busy machine where that keeps the scores), ``"auto"`` (adapt
            without the check: results may then depend on timing) or an int (fixed).
        probes: what ``probes.probe`` measured of the model, where the caller has it: the model is then not
            probed again.
        budget: the queries per image ahead (the Oracle's budget): with the image count, whether the fast path
            pays (``FAST_PATH_WORK``).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, *, batch_size: int | str | None = "auto",
                 fold: bool = True, threads: int | str | None = None, probes: Probes | None = None,
                 budget: int = 1):
        if batch_size not in (None, "auto"):
            batch_size = checks.at_least("batch_size", batch_size, 1)
        if threads is not None and threads != "auto":
            try:
                threads = checks.at_least("threads", threads, 1)
            except ValueError:
                raise ValueError(f"threads must be None, 'auto' or an integer >= 1, got {threads!r}") from None
        self.model, self.device = model, model_device(model)
        self.seconds = 0.0  # spent in the timed forwards
        self.base_logits: torch.Tensor | None = None
        adapt, fold = threads is None and torch.get_num_threads() > 1, checks.flag("fold", fold)
        self.budget = checks.at_least("budget", budget, 1)
        self.batch_size, found = self._plan(x, batch_size, fold, adapt, probes)
        self.post = self._post_processing(x) if found is not None and found.deterministic else None
        plain = self.model.base if self.post is not None else self.model  # what each chunk computes
        self.chunked = self._fold(plain, x, found) if fold else plain  # and what runs it
        self.folded = self.chunked is not plain  # whether the chunks go through a copy with its batch norms folded
        self.choice = self._choice(threads, found, x)
        # the post-processing's threads (AAA's solver splits its rows over them): adapting wherever the user fixed
        # none, timed apart from the chunks, with no check and no margin, since its output does not depend on them
        # (a test). A split pays where the forwards' idle threads sleep (OMP_WAIT_POLICY=PASSIVE); where they spin
        # after each forward (OpenMP's default), they hold the other cores and one thread is as fast or faster.
        fixed = isinstance(threads, int) or self.device.type != "cpu"
        self.post_choice = Adaptive(self.choice.setting, probe=0 if fixed else 64, margin=1.0)

    def _plan(self, x: torch.Tensor, batch_size: int | str | None, fold: bool, adapt: bool,
              known: Probes | None) -> tuple[int | None, Probes | None]:
        """The batch size, and one probe of the model (None where not needed) where the work ahead is worth it
        (more than ``CPU_BATCH`` images, or at least ``FAST_PATH_WORK`` queries of at least ``PROBE_MIN`` images) and
        the batch size, the fold, the split or (``adapt``) the thread choice needs it."""
        cpu = self.device.type == "cpu"
        many = len(x) > CPU_BATCH or (len(x) >= PROBE_MIN and len(x) * self.budget >= FAST_PATH_WORK)
        wanted = fold and not seeded(self.model) and bool(foldable(self.model))
        wanted = wanted or (cpu and (batch_size == "auto" or adapt))
        found = (known or probe(self.model, x[:IMAGES])) if many and wanted else None
        if batch_size == "auto":
            batch_size = CPU_BATCH if cpu and found is not None and not found.batch_dependent else None
        return batch_size, found

    def _fold(self, net: nn.Module, x: torch.Tensor, found: Probes | None) -> nn.Module:
        """``net``'s folded copy where the model is deterministic, has no seeded random parts and the copy agrees
        with ``net`` on the probe images; else ``net``. A post-processing defense is folded by its base (``net`` is
        then the base): the agreement is the base's, and the post-processing, which may amplify rounding (AAA's
        solver does in its ill-conditioned rows), still runs on the base's logits as the defense's own."""
        if found is None or not found.deterministic or seeded(self.model) or not foldable(net):
            return net
        twin = fold_batchnorm(net)  # copied only when usable
        return twin if twin is not None and agrees(net, twin, x[:IMAGES].to(self.device)) else net

    def _post_processing(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The model's ``post_process`` where it declares one over a ``base`` and ``post_process(base(x))`` agrees
        with its output on the probe images; else None (the model runs whole in every chunk)."""
        if not _declares_post_processing(self.model):
            return None
        post = self.model.post_process
        return post if agrees(self.model, _Split(self.model.base, post), x[:IMAGES].to(self.device)) else None

    @property
    def split(self) -> bool:
        """Whether the base's forwards run in chunks and the post-processing once per query batch."""
        return self.post is not None

    def _choice(self, threads: int | str | None, found: Probes | None, x: torch.Tensor) -> Adaptive:
        """The thread choice (see ``threads``): adaptive and checked by default where the probes found the model
        not random and one thread gives the setting's scores on a full chunk of ``x``."""
        cpu = self.device.type == "cpu"
        if isinstance(threads, int):
            return Adaptive(threads, probe=0)
        setting = torch.get_num_threads()
        if threads == "auto":
            return Adaptive(setting) if cpu else Adaptive(setting, probe=0)
        if not cpu or setting == 1 or found is None or found.randomized:
            return Adaptive(setting, probe=0)
        known = _known_sizes(self.model, self.folded, setting)
        chunk = x[:self.batch_size or CPU_BATCH].to(self.device, torch.float32)  # the most common batch size
        if len(chunk) not in known:
            with torch.no_grad():
                with intra_op_threads(1):
                    alone = self.chunked(chunk)
                known[len(chunk)] = torch.equal(alone, self.chunked(chunk))
        return Adaptive(setting, verified=True, same=known) if known[len(chunk)] else Adaptive(setting, probe=0)

    @property
    def adaptive(self) -> bool:
        """Whether the forwards adapt to a busy machine (and the attack's loop runs on one thread)."""
        return len(self.choice.options) > 1

    def loop(self) -> contextlib.AbstractContextManager:
        """Where the attacker's own loop runs: on one thread where the forwards adapt, else on the setting."""
        return one_thread() if self.adaptive else contextlib.nullcontext()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The model's scores of ``x`` (float32), chunked, on the thread count chosen per chunk, timed."""
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = torch.cat([self._chunk(chunk) for chunk in self._chunks(x)])
        if self.post is not None:
            self.base_logits = out  # the base classifier's logits of this batch (the Oracle's reference may reuse them)
            out = self._post(out)
        if sync:
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return out.float()

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        step = self.batch_size or len(x)
        return [x[i:i + step] for i in range(0, len(x), step)] or [x]

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        """One chunk's scores on the thread count the choice picks for its size; where the choice has to see first
        whether one thread changes the scores of this size, on both, keeping the setting's."""
        n = self.choice.pick(len(x))
        if n is not None:
            return _timed(self.chunked, x, n, self.choice)
        kept, alone = _timed(self.chunked, x, self.choice.setting, self.choice), _timed(self.chunked, x, 1, self.choice)
        self.choice.found(len(x), torch.equal(kept, alone))
        return kept

    def _post(self, logits: torch.Tensor) -> torch.Tensor:
        """The post-processing of one query batch's logits: from ``POST_CHOICE_FROM`` rows on the thread count its
        own choice picks, below on the caller's."""
        if len(logits) < POST_CHOICE_FROM:
            return self.post(logits)
        return _timed(self.post, logits, self.post_choice.pick(len(logits)), self.post_choice)


def _timed(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int, choice: Adaptive) -> torch.Tensor:
    """``run(x)`` on ``n`` intra-op threads, its time noted in ``choice``."""
    start = time.perf_counter()
    with intra_op_threads(n):
        out = run(x)
    choice.record(n, time.perf_counter() - start, len(x))
    return out


def _declares_post_processing(model: nn.Module) -> bool:
    """Whether ``model`` says it post-processes a classifier's logits: a ``base`` module and a ``post_process``."""
    return isinstance(getattr(model, "base", None), nn.Module) and callable(getattr(model, "post_process", None))


class _Split(nn.Module):
    """``post(base(x))``: what a post-processing defense computes, in its two parts."""

    def __init__(self, base: nn.Module, post: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.base, self.post = base, post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.base(x))


# model -> {(folded, threads, layer shapes): {batch size: one thread gives the setting's scores bit for bit}}, for
# the life of the model object: whether one thread rounds differently depends on the layers' shapes and the
# kernels chosen for them, not on the weights' values, so a model trained further keeps what was found for it.
_KNOWN: weakref.WeakKeyDictionary[nn.Module, dict[tuple, dict[int, bool]]] = weakref.WeakKeyDictionary()


def _known_sizes(model: nn.Module, folded: bool, setting: int) -> dict[int, bool]:
    """The batch sizes checked so far (by any Oracle of this process) for ``model`` on ``setting`` threads."""
    shapes = tuple((name, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
                   for name, m in model.named_modules())
    return _KNOWN.setdefault(model, {}).setdefault((folded, setting, shapes), {})
