"""AAA's logit solver: ``steps`` Adam steps (torch.optim.Adam's update, bias correction included) on AAA's
objective ``|m(z) - m_trg| + beta * |softmax(z)[c] - p_trg|``, summed over rows, from the original logits, with
the confidence target ``p_trg = softmax(z_org / T)[c]``.

The objective is written here once (``objective``, eq. 6); everything else is derived from it and tied to it by a
test: ``gradient`` is its derivative in closed form (equal to autograd's of ``objective``), and the compiled
loop ``_rows`` is ``gradient`` and Adam transcribed for numba, which cannot compile PyTorch operations (equal to
the eager loop bit for bit, ``tests/test_aaa.py``).

The objective is summed, so every row is solved independently of the others. Three ways to run the same steps:

- ``eager``: PyTorch operations with the gradient in closed form (what autograd gives, without a graph): the
  reference, about 30 small operations per step.
- ``compiled`` (CPU, where numba is installed): the whole loop compiled to machine code (numba, cached on disk
  after the first compilation): no per-operation overhead, which dominates for AAA's tiny tensors (a query batch
  of 1-64 images is 10-640 logits). From ``LANES_FROM`` rows it runs in lanes: blocks of rows transposed so that
  each operation runs across rows in SIMD lanes, with an ``exp`` written out so that it vectorizes (``_exp``);
  fewer rows run row by row. Both layouts give the same bits (a test), about 2x apart at 64 rows and more.
  ``post_process`` runs AAA's whole post-processing around the loop (margins, targets, arg-max, rounding, repair)
  in the same compiled call, bit for bit the defense's PyTorch steps (a test): at a few rows those ~20 small
  operations cost more than the loop.
- ``graph`` (CUDA): the eager steps captured once per (device, rows rounded up to a power of two,
  hyperparameters) in a CUDA graph and replayed: one launch instead of ~3,000. Rows are padded, and padding is
  harmless because rows are independent.

**One output on every machine.** The objective is a sum of absolute values, so each step follows the *signs* of
``m(z) - m_trg`` and ``softmax(z)[c] - p_trg``, and Adam's first steps move every logit by about ``lr`` whatever
the gradient's size: a sign decided by rounding changes the output by a visible amount. Two choices keep rounding
out of those decisions:

- Every backend runs in float64 and the caller rounds once at the end. In float32 the eager loop followed ATen's
  kernel level (its vectorized ``exp`` and sums differ by an ulp between ``default``, ``avx2`` and ``avx512``) and
  disagreed with the compiled loop on 22-476 rows of 1000 beyond 1e-5 of the logits' scale (largest 0.24); in
  float64 the two loops, at all three kernel levels, give the same float32 output bit for bit on the MNIST CNN's
  1000 test logits (T in 0.5, 1, 1.15, 2, 3; both curves; docs/performance.md has the table).
- Each backend computes ``p_trg`` with the softmax its own steps use. At T = 1 the calibration term then starts
  at exactly zero, as it does in exact arithmetic (``|softmax(z_org)[c] - p_trg| = 0``, a zero subgradient);
  a ``p_trg`` from another softmax made its first sign, and so Adam's whole first step, a coin toss per row.

``solve`` picks ``graph`` on CUDA, ``compiled`` on a CPU with numba and ``eager`` otherwise; none synchronizes with
the host inside the loop.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from workbench import checks
from workbench.losses import top2_margin
from workbench.speed.threads import allowed_cores

try:  # optional: compiles the CPU loop; without it the eager loop runs
    import numba
    import numba.extending
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None

BETAS = (0.9, 0.999)
EPS = 1e-8
METHODS = ("eager", "compiled", "graph")


def objective(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor,
              beta: float) -> torch.Tensor:
    """AAA's objective (eq. 6), summed over rows: ``|m(z) - m_trg| + beta * |softmax(z)[pred] - p_trg|``, with
    ``m(z)`` the top-1 minus top-2 logit."""
    conf = F.softmax(z, dim=1).gather(1, pred[:, None]).squeeze(1)
    return (top2_margin(z) - m_trg).abs().sum() + beta * (conf - p_trg).abs().sum()


def gradient(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor,
             beta: float) -> torch.Tensor:
    """The gradient of ``objective`` in closed form: the margin term pushes the top-1 and top-2 logits apart or
    together, the confidence term moves ``p_c * (onehot(c) - p)``."""
    top = z.topk(2, dim=1)
    s = torch.sign(top.values[:, 0] - top.values[:, 1] - m_trg)[:, None]
    p = F.softmax(z, dim=1)
    p_c = p.gather(1, pred[:, None])
    g = p.mul_(-beta * torch.sign(p_c - p_trg[:, None]) * p_c)
    g.scatter_add_(1, pred[:, None], beta * torch.sign(p_c - p_trg[:, None]) * p_c)
    g.scatter_add_(1, top.indices[:, :1], s)
    return g.scatter_add_(1, top.indices[:, 1:], -s)


def confidence_target(z: torch.Tensor, pred: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """``p_trg = softmax(z / T)[c]`` with the softmax ``gradient`` uses (at T = 1 exactly its first ``p_c``)."""
    return F.softmax(z / temperature, dim=1).gather(1, pred[:, None]).squeeze(1)


def adam(z: torch.Tensor, grad: Callable[[torch.Tensor], torch.Tensor], steps: int, lr: float) -> torch.Tensor:
    """``steps`` steps of Adam from ``z`` (a copy is updated) with the gradient ``grad(z)``."""
    z = z.clone()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    for t in range(1, steps + 1):
        g = grad(z)
        m.mul_(BETAS[0]).add_(g, alpha=1 - BETAS[0])
        v.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
        denom = (v / (1 - BETAS[1] ** t)).sqrt_().add_(EPS)
        z.addcdiv_(m, denom, value=-lr / (1 - BETAS[0] ** t))
    return z


def eager(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, temperature: float | torch.Tensor, beta: float,
          steps: int, lr: float) -> torch.Tensor:
    """The reference loop in PyTorch operations, in z's dtype (``solve`` gives it float64)."""
    p_trg = confidence_target(z, pred, temperature)
    return adam(z, lambda v: gradient(v, pred, m_trg, p_trg, beta), steps, lr)


@functools.lru_cache(maxsize=16)
def _schedule(steps: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step t = 1..steps, the double scalars PyTorch's loop uses: Adam's second-moment bias correction and the
    signed step size -lr / (first-moment bias correction). Cached (read-only arrays)."""
    t = np.arange(1, steps + 1, dtype=np.float64)
    c2, step = 1 - BETAS[1] ** t, -lr / (1 - BETAS[0] ** t)
    c2.flags.writeable = step.flags.writeable = False
    return c2, step


# exp(x) for x <= 0, written out so that it vectorizes (libm's exp is a call the compiler cannot vectorize; numba
# vectorizes it only with Intel's SVML): x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, Cody and Waite),
# exp(r) by its Taylor polynomial of degree 13 (remainder below 1e-17 of exp(r)), times 2^n as two exact powers
# of two (so that results below 2^-1022 round as libm's do), each built from its bits (``_as_double``: a table
# lookup was a gather that cost 7% of the loop). Within 1 ulp of libm (tests/test_aaa.py), as ATen's vectorized
# exp is: in float64 that never reaches AAA's float32 output (the same test).
_LN2_HI, _LN2_LO, _INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(14))


def _exp(x):  # pragma: no cover - compiled by numba
    """exp(x) for x <= 0 (float64; 0 below -745.2, as libm)."""
    x = max(x, -746.0)
    n = math.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = _TAYLOR[13]
    for i in range(12, -1, -1):
        q = q * r + _TAYLOR[i]
    whole = min(max(np.int64(n), -1076), 0)  # -1076..0 for every x above (and for a NaN's conversion)
    half = whole >> 1  # 2^half and 2^(whole - half): exponents in -538..0, normal numbers
    return q * _as_double((half + 1023) << 52) * _as_double((whole - half + 1023) << 52)


def _softmax(z, temperature, p):  # pragma: no cover - compiled by numba
    """``p = softmax(z / temperature)`` of one row (float64, as PyTorch: the maximum subtracted after the division;
    at temperature 1 the division, exact, is skipped); returns the index of the largest logit."""
    first = 0
    for j in range(1, len(z)):
        if z[j] > z[first]:
            first = j
    for j in range(len(z)):  # a loop of its own: it vectorizes
        p[j] = _exp_compiled(z[j] - z[first] if temperature == 1.0 else z[j] / temperature - z[first] / temperature)
    total = 0.0
    for j in range(len(z)):
        total += p[j]
    inverse = 1.0 / total
    for j in range(len(z)):
        p[j] = p[j] * inverse
    return first


def _rows(z, pred, m_trg, temperature, beta, c2, step, b1, a1, b2, a2, eps):  # pragma: no cover - compiled by numba
    """The compiled loop, row by row (float64; ``z`` is updated in place): for a few rows."""
    n, k = z.shape
    m = np.zeros(k)
    v = np.zeros(k)
    g = np.zeros(k)
    p = np.zeros(k)
    for i in range(n):
        m[:] = 0
        v[:] = 0
        c = pred[i]
        _softmax_compiled(z[i], temperature, p)
        p_trg = p[c]
        for t in range(len(step)):
            first = _softmax_compiled(z[i], 1.0, p)
            second = 1 if first == 0 else 0
            for j in range(k):
                if j != first and z[i, j] > z[i, second]:
                    second = j
            s = np.sign(z[i, first] - z[i, second] - m_trg[i])
            pc = p[c]
            push = beta * np.sign(pc - p_trg) * pc
            for j in range(k):
                g[j] = p[j] * -push
            g[c] += push
            g[first] += s
            g[second] -= s
            c2_t, step_t = c2[t], step[t]  # read once: the loop then vectorizes
            for j in range(k):
                m[j] = m[j] * b1 + a1 * g[j]
                v[j] = v[j] * b2 + a2 * g[j] * g[j]
                z[i, j] = z[i, j] + step_t * (m[j] / (math.sqrt(v[j] / c2_t) + eps))
    return z


def _lanes(z, pred, m_trg, temperature, beta, c2, step, b1, a1, b2, a2, eps):  # pragma: no cover - numba
    """The same loop over blocks of ``LANES`` rows at once: each block transposed to (classes, rows), so that every
    operation runs across rows in SIMD lanes. Each row's arithmetic is ``_rows``' in the same order (a test checks
    the two bit for bit in float64)."""
    n, k = z.shape
    width = min(LANES, n)
    zt, m, v, p = np.empty((k, width)), np.empty((k, width)), np.empty((k, width)), np.empty((k, width))
    c, target, p_trg = np.empty(width, np.int64), np.empty(width), np.empty(width)
    first, second = np.empty(width, np.int64), np.empty(width, np.int64)
    top, runner, total, s, push = np.empty(width), np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for start in range(0, n, width):
        w = min(width, n - start)
        for j in range(k):
            for i in range(w):
                zt[j, i] = z[start + i, j]
                m[j, i] = 0.0
                v[j, i] = 0.0
        for i in range(w):
            c[i] = pred[start + i]
            target[i] = m_trg[start + i]
        for t in range(-1, len(step)):  # t = -1: the confidence target's softmax, at the temperature
            temp = temperature if t < 0 else 1.0
            for i in range(w):
                top[i] = zt[0, i]
                first[i] = 0
            for j in range(1, k):
                for i in range(w):
                    up = zt[j, i] > top[i]
                    top[i] = zt[j, i] if up else top[i]
                    first[i] = j if up else first[i]
            for i in range(w):
                total[i] = 0.0
            for j in range(k):
                for i in range(w):
                    p[j, i] = _exp_compiled(zt[j, i] - top[i] if temp == 1.0 else zt[j, i] / temp - top[i] / temp)
                    total[i] += p[j, i]
            for i in range(w):
                total[i] = 1.0 / total[i]
            for j in range(k):
                for i in range(w):
                    p[j, i] = p[j, i] * total[i]
            if t < 0:
                for j in range(k):
                    for i in range(w):
                        p_trg[i] = p[j, i] if c[i] == j else p_trg[i]
                continue
            for i in range(w):
                second[i] = 1 if first[i] == 0 else 0
                runner[i] = zt[1, i] if first[i] == 0 else zt[0, i]
            for j in range(k):
                for i in range(w):
                    up = j != first[i] and zt[j, i] > runner[i]
                    runner[i] = zt[j, i] if up else runner[i]
                    second[i] = j if up else second[i]
            for j in range(k):
                for i in range(w):
                    push[i] = p[j, i] if c[i] == j else push[i]  # p_c, for now
            for i in range(w):
                s[i] = np.sign(top[i] - runner[i] - target[i])
                push[i] = beta * np.sign(push[i] - p_trg[i]) * push[i]
            c2_t, step_t = c2[t], step[t]
            for j in range(k):
                for i in range(w):
                    g = p[j, i] * -push[i]
                    g = g + push[i] if c[i] == j else g
                    g = g + s[i] if first[i] == j else g
                    g = g - s[i] if second[i] == j else g
                    m[j, i] = m[j, i] * b1 + a1 * g
                    v[j, i] = v[j, i] * b2 + a2 * g * g
                    zt[j, i] = zt[j, i] + step_t * (m[j, i] / (math.sqrt(v[j, i] / c2_t) + eps))
        for j in range(k):
            for i in range(w):
                z[start + i, j] = zt[j, i]
    return z


def _target(m, sine, tau, alpha):  # pragma: no cover - compiled by numba
    """``defenses.aaa.target_margin`` of one margin (eq. 5), its operations in the same order (a test ties the two)."""
    atr = (np.ceil(m / tau) - 0.5) * tau
    if sine:
        return m - alpha * tau * math.sin(math.pi * (1 - 2 * (m - atr) / tau))
    return atr - alpha * (m - atr)


def _repair(z, pred, lift):  # pragma: no cover - compiled by numba
    """``AAA._repair`` in place: where a row's arg-max (its first largest logit) is no longer ``pred``, the logit
    of ``pred`` is raised to the largest other plus ``lift[0]`` (in z's dtype), if below it. Returns how many rows."""
    n, k = z.shape
    moved = 0
    for i in range(n):
        first = 0
        for j in range(1, k):
            if z[i, j] > z[i, first]:
                first = j
        if first == pred[i]:
            continue
        moved += 1
        others = -np.inf
        for j in range(k):
            if j != pred[i] and z[i, j] > others:
                others = z[i, j]
        raised = others + lift[0]
        z[i, pred[i]] = max(z[i, pred[i]], raised)
    return moved


def _post(logits, sine, tau, alpha, temperature, beta, c2, step, b1, a1, b2, a2, eps, out):  # pragma: no cover
    """AAA's whole post-processing in one compiled call (``AAA.post_process``'s steps, each transcribed): the
    float64 logits, their top-2 margins and targets, the arg-max, the Adam steps (row by row or in lanes), the
    rounding into ``out`` (the logits' dtype) and the repair. Returns the repaired rows' count."""
    n, k = logits.shape
    z, pred, m_trg = np.empty((n, k)), np.empty(n, np.int64), np.empty(n)
    for i in range(n):
        first = 0
        for j in range(k):
            z[i, j] = logits[i, j]
            if z[i, j] > z[i, first]:
                first = j
        second = -np.inf
        for j in range(k):
            if j != first and z[i, j] > second:
                second = z[i, j]
        pred[i] = first
        m_trg[i] = _target_compiled(z[i, first] - second, sine, tau, alpha)
    if n >= LANES_FROM:
        _compiled_lanes(z, pred, m_trg, temperature, beta, c2, step, b1, a1, b2, a2, eps)
    else:
        _compiled(z, pred, m_trg, temperature, beta, c2, step, b1, a1, b2, a2, eps)
    for i in range(n):
        for j in range(k):
            out[i, j] = z[i, j]
    lift = np.empty(1, out.dtype)
    lift[0] = 1e-4
    return _repair_compiled(out, pred, lift)


LANES = 64  # rows per block of the lane loop (its arrays stay in the L1 cache at 10 classes)
LANES_FROM = 4  # rows from which the lane loop is as fast as the row loop or faster (about 2x at 64 rows and more)

if numba is not None:
    @numba.extending.intrinsic
    def _as_double(typingctx, bits):  # pragma: no cover - compiled by numba
        """The float64 whose IEEE-754 bits are the int64 ``bits`` (a bit cast, no conversion)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(numba.types.float64))
        return numba.types.float64(numba.types.int64), codegen

    _jit = numba.njit(cache=True, nogil=True, error_model="numpy")  # numpy's errors: no zero-division branches
    _exp_compiled = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(_exp)
    _softmax_compiled = _jit(_softmax)
    _compiled, _compiled_lanes = _jit(_rows), _jit(_lanes)
    _target_compiled, _repair_compiled = _jit(_target), _jit(_repair)
    _post_compiled = _jit(_post)
else:  # pragma: no cover - exercised where numba is missing
    _exp_compiled = _softmax_compiled = _compiled = _compiled_lanes = None
    _target_compiled = _repair_compiled = _post_compiled = None


def _require_numba() -> None:
    if numba is None:
        raise ValueError("method='compiled' needs numba (pip install numba); use method='eager'")


def compiled(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, temperature: float, beta: float,
             steps: int, lr: float, layout: str | None = None) -> torch.Tensor:
    """The loop compiled by numba (CPU tensors, float64; raises where numba is not installed), row by row below
    ``LANES_FROM`` rows and in lanes from there (``layout``: ``"rows"`` or ``"lanes"`` forces one; both give the
    same bits)."""
    _require_numba()
    layout = layout or ("lanes" if len(z) >= LANES_FROM else "rows")
    run = {"rows": _compiled, "lanes": _compiled_lanes}[layout]
    c2, step = _schedule(int(steps), float(lr))
    out = run(z.detach().double().numpy().copy(), pred.numpy().astype(np.int64), m_trg.double().numpy(),
              float(temperature), float(beta), c2, step, BETAS[0], 1 - BETAS[0], BETAS[1], 1 - BETAS[1], EPS)
    return torch.from_numpy(out)


def post_process(logits: torch.Tensor, sine: bool, tau: float, alpha: float, temperature: float, beta: float,
                 steps: int, lr: float, workers: int | None = None) -> tuple[torch.Tensor, int]:
    """AAA's output for CPU logits (N, K) in one compiled call, and the count of repaired rows: what
    ``defenses.aaa.AAA.post_process`` computes with the compiled loop, bit for bit (a test), without its ~20 small
    PyTorch operations, which cost more than the loop itself at a few rows. Raises where numba is not installed.

    Rows are independent, so from ``ROWS_PER_WORKER`` rows per worker the rows are split into contiguous parts
    solved at once on ``workers`` threads (the compiled call releases the GIL); default: PyTorch's intra-op thread
    count, as a PyTorch operation would use. Every split gives the same bits (a test)."""
    _require_numba()
    z = logits.detach().numpy()
    out = np.empty(z.shape, z.dtype)
    c2, step = _schedule(int(steps), float(lr))
    constants = (bool(sine), float(tau), float(alpha), float(temperature), float(beta), c2, step,
                 BETAS[0], 1 - BETAS[0], BETAS[1], 1 - BETAS[1], EPS)
    workers = torch.get_num_threads() if workers is None else checks.at_least("workers", workers, 1)
    parts = max(1, min(workers, len(z) // ROWS_PER_WORKER))
    bounds = [len(z) * i // parts for i in range(parts + 1)]
    rest = [_pool().submit(_post_compiled, z[a:b], *constants, out[a:b]) for a, b in zip(bounds[1:-1], bounds[2:])]
    moved = _post_compiled(z[:bounds[1]], *constants, out[:bounds[1]])  # the first part on this thread
    return torch.from_numpy(out), int(moved + sum(part.result() for part in rest))


# rows per thread from which a split pays: below, a second thread's wake-up (0.15-0.2 ms on this project's CPU)
# costs about what it saves (docs/performance.md)
ROWS_PER_WORKER = 64


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Threads for ``post_process``'s parts beyond the first (as many as this process may use cores)."""
    return ThreadPoolExecutor(max(1, allowed_cores() - 1), thread_name_prefix="aaa-solver")


# a forked child has none of the parent's threads, while the parent's pool would count its idle ones as there and
# wait for them: the child starts a pool of its own (Windows has no fork, and no register_at_fork)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)


class _Graph:
    """One captured CUDA graph of the eager loop for ``rows`` rows: static inputs are copied in, the graph is
    replayed, the static output is read."""

    def __init__(self, rows: int, k: int, device: torch.device, beta: float, steps: int, lr: float):
        self.z = torch.zeros(rows, k, device=device, dtype=torch.float64)
        self.pred = torch.zeros(rows, dtype=torch.long, device=device)
        self.m_trg = torch.zeros(rows, device=device, dtype=torch.float64)
        self.temperature = torch.ones((), device=device, dtype=torch.float64)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm up (allocations, kernels) outside the capture
            eager(self.z, self.pred, self.m_trg, self.temperature, beta, steps, lr)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = eager(self.z, self.pred, self.m_trg, self.temperature, beta, steps, lr)

    def __call__(self, z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, temperature: float) -> torch.Tensor:
        n = len(z)
        for static, value in ((self.z, z), (self.pred, pred), (self.m_trg, m_trg)):
            static.zero_()
            static[:n].copy_(value)
        self.temperature.fill_(temperature)
        self.graph.replay()
        return self.out[:n].clone()


_GRAPHS: dict[tuple, _Graph] = {}


def bucket(n: int) -> int:
    """Rows rounded up to a power of two: one graph serves every batch size up to it."""
    return 1 << max(0, n - 1).bit_length()


def graph(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, temperature: float, beta: float, steps: int,
          lr: float) -> torch.Tensor:
    """The eager loop captured in a CUDA graph per (device, bucket of rows, classes, hyperparameters), replayed."""
    key = (z.device, bucket(len(z)), z.shape[1], float(beta), int(steps), float(lr))
    if key not in _GRAPHS:
        _GRAPHS[key] = _Graph(key[1], key[2], z.device, beta, steps, lr)
    return _GRAPHS[key](z, pred, m_trg, temperature)


def default_method(device: torch.device) -> str:
    """``graph`` on CUDA, ``compiled`` on a CPU with numba, else ``eager``."""
    if device.type == "cuda":
        return "graph"
    return "compiled" if _compiled is not None and device.type == "cpu" else "eager"


def solve(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, temperature: float, beta: float, steps: int,
          lr: float, method: str | None = None) -> torch.Tensor:
    """AAA's logits after ``steps`` Adam steps from the original logits ``z`` (N, K), in float64 (the caller rounds
    once; see the module docstring), with the confidence target ``softmax(z / temperature)[pred]``; ``method``:
    one of ``METHODS`` (default: ``default_method`` of z's device)."""
    method = method or default_method(z.device)
    z, m_trg = z.double(), m_trg.double()
    if not len(z) or steps == 0:
        return z.clone()
    run = {"eager": eager, "compiled": compiled, "graph": graph}[method]
    return run(z, pred, m_trg, temperature, beta, steps, lr).to(z.device)
