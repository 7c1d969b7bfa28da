"""AAA's logit solver: ``steps`` Adam steps (torch.optim.Adam's update, bias correction included) on AAA's
objective ``|m(z) - m_trg| + beta * |softmax(z)[c] - p_trg|``, summed over rows, from the original logits.

The objective is summed, so every row is solved independently of the others. Three ways to run the same steps:

- ``eager``: PyTorch operations with the gradient in closed form (what autograd gives, without a graph): the
  reference, about 30 small operations per step.
- ``compiled`` (CPU, where numba is installed): the whole loop compiled to machine code, row by row (numba, cached
  on disk after the first compilation): no per-operation overhead, which dominates for AAA's tiny tensors (a
  query batch of 1-64 images is 10-640 logits). The same float32 arithmetic in the same order, except that
  libm's ``exp`` and the compiler's rounding of a few products may differ from PyTorch's vectorized kernels by
  an ulp: outputs agree with ``eager`` to about 1e-6 of the logits' scale (tested at 1e-5).
- ``graph`` (CUDA): the eager steps captured once per (device, rows rounded up to a power of two,
  hyperparameters) in a CUDA graph and replayed: one launch instead of ~3,000. Rows are padded, and padding is
  harmless because rows are independent.

``solve`` picks ``graph`` on CUDA, ``compiled`` on a CPU with numba and ``eager`` otherwise; none synchronizes with
the host inside the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

try:  # optional: compiles the CPU loop; without it the eager loop runs
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None

BETAS = (0.9, 0.999)
EPS = 1e-8
METHODS = ("eager", "compiled", "graph")


def gradient(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor,
             beta: float) -> torch.Tensor:
    """The gradient of the objective in closed form: the margin term pushes the top-1 and top-2 logits apart or
    together, the confidence term moves ``p_c * (onehot(c) - p)``."""
    top = z.topk(2, dim=1)
    s = torch.sign(top.values[:, 0] - top.values[:, 1] - m_trg)[:, None]
    p = F.softmax(z, dim=1)
    p_c = p.gather(1, pred[:, None])
    g = p.mul_(-beta * torch.sign(p_c - p_trg[:, None]) * p_c)
    g.scatter_add_(1, pred[:, None], beta * torch.sign(p_c - p_trg[:, None]) * p_c)
    g.scatter_add_(1, top.indices[:, :1], s)
    return g.scatter_add_(1, top.indices[:, 1:], -s)


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


def eager(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor, beta: float, steps: int,
          lr: float) -> torch.Tensor:
    """The reference loop in PyTorch operations."""
    return adam(z, lambda v: gradient(v, pred, m_trg, p_trg, beta), steps, lr)


def _schedule(steps: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step t = 1..steps, as PyTorch sees them (double scalars cast to float32): Adam's second-moment bias
    correction and the signed step size -lr / (first-moment bias correction)."""
    t = np.arange(1, steps + 1, dtype=np.float64)
    return (1 - BETAS[1] ** t).astype(np.float32), (-lr / (1 - BETAS[0] ** t)).astype(np.float32)


def _rows(z, pred, m_trg, p_trg, beta, c2, step, b1, a1, b2, a2, eps):  # pragma: no cover - compiled by numba
    """The compiled loop over rows and steps (float32 in, float32 arithmetic; ``z`` is updated in place)."""
    n, k = z.shape
    m = np.zeros(k, np.float32)
    v = np.zeros(k, np.float32)
    g = np.zeros(k, np.float32)
    p = np.zeros(k, np.float32)
    one = np.float32(1.0)
    for i in range(n):
        m[:] = 0
        v[:] = 0
        c = pred[i]
        for t in range(len(step)):
            first = 0
            for j in range(1, k):
                if z[i, j] > z[i, first]:
                    first = j
            second = 1 if first == 0 else 0
            for j in range(k):
                if j != first and z[i, j] > z[i, second]:
                    second = j
            s = np.float32(np.sign(z[i, first] - z[i, second] - m_trg[i]))
            total = np.float32(0.0)
            for j in range(k):
                p[j] = np.float32(math.exp(z[i, j] - z[i, first]))
                total += p[j]
            inverse = one / total
            for j in range(k):
                p[j] = p[j] * inverse
            pc = p[c]
            push = np.float32(beta * np.float32(np.sign(pc - p_trg[i]))) * pc
            for j in range(k):
                g[j] = p[j] * -push
            g[c] += push
            g[first] += s
            g[second] -= s
            for j in range(k):
                m[j] = m[j] * b1 + a1 * g[j]
                v[j] = v[j] * b2 + a2 * g[j] * g[j]
                denom = np.float32(math.sqrt(v[j] / c2[t])) + eps
                z[i, j] = z[i, j] + step[t] * (m[j] / denom)
    return z


_compiled = numba.njit(cache=True, nogil=True)(_rows) if numba is not None else None


def compiled(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor, beta: float,
             steps: int, lr: float) -> torch.Tensor:
    """The loop compiled by numba (CPU tensors; raises where numba is not installed)."""
    if _compiled is None:
        raise ValueError("method='compiled' needs numba (pip install numba); use method='eager'")
    c2, step = _schedule(steps, lr)
    f32 = np.float32
    out = _compiled(z.detach().float().numpy().copy(), pred.numpy().astype(np.int64), m_trg.float().numpy(),
                    p_trg.float().numpy(), f32(beta), c2, step, f32(BETAS[0]), f32(1 - BETAS[0]), f32(BETAS[1]),
                    f32(1 - BETAS[1]), f32(EPS))
    return torch.from_numpy(out)


class _Graph:
    """One captured CUDA graph of the eager loop for ``rows`` rows: static inputs are copied in, the graph is
    replayed, the static output is read."""

    def __init__(self, rows: int, k: int, device: torch.device, beta: float, steps: int, lr: float):
        self.z = torch.zeros(rows, k, device=device)
        self.pred = torch.zeros(rows, dtype=torch.long, device=device)
        self.m_trg = torch.zeros(rows, device=device)
        self.p_trg = torch.zeros(rows, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm up (allocations, kernels) outside the capture
            eager(self.z, self.pred, self.m_trg, self.p_trg, beta, steps, lr)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = eager(self.z, self.pred, self.m_trg, self.p_trg, beta, steps, lr)

    def __call__(self, z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor) -> torch.Tensor:
        n = len(z)
        for static, value in ((self.z, z), (self.pred, pred), (self.m_trg, m_trg), (self.p_trg, p_trg)):
            static.zero_()
            static[:n].copy_(value)
        self.graph.replay()
        return self.out[:n].clone()


_GRAPHS: dict[tuple, _Graph] = {}


def bucket(n: int) -> int:
    """Rows rounded up to a power of two: one graph serves every batch size up to it."""
    return 1 << max(0, n - 1).bit_length()


def graph(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor, beta: float, steps: int,
          lr: float) -> torch.Tensor:
    """The eager loop captured in a CUDA graph per (device, bucket of rows, classes, hyperparameters), replayed."""
    key = (z.device, bucket(len(z)), z.shape[1], float(beta), int(steps), float(lr))
    if key not in _GRAPHS:
        _GRAPHS[key] = _Graph(key[1], key[2], z.device, beta, steps, lr)
    return _GRAPHS[key](z.float(), pred, m_trg.float(), p_trg.float())


def default_method(device: torch.device) -> str:
    """``graph`` on CUDA, ``compiled`` on a CPU with numba, else ``eager``."""
    if device.type == "cuda":
        return "graph"
    return "compiled" if _compiled is not None and device.type == "cpu" else "eager"


def solve(z: torch.Tensor, pred: torch.Tensor, m_trg: torch.Tensor, p_trg: torch.Tensor, beta: float, steps: int,
          lr: float, method: str | None = None) -> torch.Tensor:
    """AAA's logits after ``steps`` Adam steps from ``z`` (N, K) float32 (see the module docstring); ``method``:
    one of ``METHODS`` (default: ``default_method`` of z's device)."""
    method = method or default_method(z.device)
    if not len(z) or steps == 0:
        return z.clone()
    run = {"eager": eager, "compiled": compiled, "graph": graph}[method]
    return run(z, pred, m_trg, p_trg, beta, steps, lr).to(z.device)
