"""Execute the numbered notebooks: in full mode to regenerate ``figures/`` (``make figures``), or in fast mode
(``WORKBENCH_FAST=1``: smaller sizes and budgets) inside the test suite.

Usage::

    python -m workbench.course.notebooks --full --jobs 2   # every notebooks/NN_*.ipynb, figures into figures/
    python -m workbench.course.notebooks --fast 01         # one notebook in fast mode (figures into figures/_fast/)
    python -m workbench.course.notebooks --fast --solutions  # the exercises' solutions (notebooks/solutions/)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from workbench import checks, paths

NOTEBOOKS = paths.notebooks_dir()


def notebooks(prefix: str = "", solutions: bool = False) -> list[Path]:
    """The numbered notebooks (``NN_slug.ipynb``) in order, optionally only those whose name starts with prefix;
    ``solutions``: their exercises' solutions instead (``notebooks/solutions/NN_slug.ipynb``, same names)."""
    folder = NOTEBOOKS / "solutions" if solutions else NOTEBOOKS
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.name.startswith(prefix))
    if not found:
        raise ValueError(f"prefix={prefix!r} matches no notebook in {folder}")
    return found


def execute(path: Path, fast: bool, timeout: int = 1800, save_to: Path | None = None,
            threads: int | None = None) -> float:
    """Run a notebook top to bottom in its own folder and return the seconds taken. Outputs are never written
    back into ``notebooks/`` (stored stripped); ``save_to``: a folder to write the executed copy into;
    ``threads``: the kernel's ``OMP_NUM_THREADS`` (default: the environment's)."""
    import nbformat  # lazy: nbformat and nbclient load only when notebooks run
    from nbclient import NotebookClient

    os.environ["WORKBENCH_FAST"] = "1" if fast else "0"  # fast mode: paths.figures_dir() is figures/_fast
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    seconds = time.perf_counter() - start
    if save_to is not None:
        paths.atomic_write(Path(save_to) / path.name, lambda tmp: nbformat.write(nb, str(tmp)))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--full", action="store_true", help="full sizes and budgets (make figures)")
    mode.add_argument("--fast", action="store_true", help="fast mode (tests)")
    parser.add_argument("prefix", nargs="?", default="", help="only notebooks whose name starts with this")
    parser.add_argument("--solutions", action="store_true", help="run the solutions of the exercises instead")
    parser.add_argument("--save-executed", default=None, metavar="DIR",
                        help="also write each executed notebook (with its outputs) into DIR")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once, one kernel each (default 1); with more than one, each kernel "
                             "runs PyTorch on one thread unless OMP_NUM_THREADS is set")
    args = parser.parse_args(argv)
    jobs = checks.at_least("jobs", args.jobs, 1)
    threads = 1 if jobs > 1 and not os.environ.get("OMP_NUM_THREADS") else None
    found, total, start = notebooks(args.prefix, args.solutions), 0.0, time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        running = {pool.submit(execute, path, args.fast, save_to=args.save_executed, threads=threads): path
                   for path in found}
        for done in tqdm(as_completed(running), total=len(found), desc="notebooks", unit="notebook"):
            seconds = done.result()
            total += seconds
            print(f"{running[done].name}: {seconds:.1f} s", flush=True)
    print(f"all notebooks: {total:.1f} s of kernel time, {time.perf_counter() - start:.1f} s of wall time "
          f"({jobs} at once)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
