"""The speed machinery, fenced: everything that makes a computation faster without changing what it computes.

The rest of the workbench calls only this interface:

- ``Forwards``: how the Oracle's forward passes run (chunks, batch-norm folding, post-processing split, the thread
  choice and its timing; ``forward.py``, with ``inference.py``'s folded copy and ``threads.py``'s contexts);
- ``one_thread`` / ``threads``: thread contexts for loops of tiny operations (AAA's eager solver, UniG's steps,
  training); ``fit`` / ``allowed_cores``: PyTorch's threads capped at a container's CPU quota (at import);
- ``solve_aaa`` with ``AAA_METHODS`` and ``default_aaa_method``: AAA's Adam steps on its eager, compiled (numba)
  or CUDA-graph backend (``aaa_solver.py``, which also holds AAA's objective, written once).

The rule every piece keeps: a faster path is used only where it gives the same numbers, measured (folding where
the copy agrees on the probe images, one thread where it has been seen to give the same scores bit for bit, the
solver in float64 so that every backend and CPU kernel level agrees). docs/performance.md has the measurements.
"""

from workbench.speed.aaa_solver import METHODS as AAA_METHODS
from workbench.speed.aaa_solver import default_method as default_aaa_method
from workbench.speed.aaa_solver import solve as solve_aaa
from workbench.speed.forward import Forwards
from workbench.speed.threads import allowed_cores, fit, one_thread, threads

__all__ = ["AAA_METHODS", "Forwards", "allowed_cores", "default_aaa_method", "fit", "one_thread", "solve_aaa", "threads"]
