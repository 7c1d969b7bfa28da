"""Execute the numbered notebooks: in full mode to regenerate ``figures/`` (``make figures``), or in fast mode
(``WORKBENCH_FAST=1``: smaller sizes and budgets) inside the test suite.

Usage::

    python -m workbench.course.notebooks --full            # every notebooks/NN_*.ipynb, figures into figures/
    python -m workbench.course.notebooks --fast 01         # one notebook in fast mode (figures into figures/_fast/)
    python -m workbench.course.notebooks --fast --solutions  # the exercises' solutions (notebooks/solutions/)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from workbench import paths

NOTEBOOKS = paths.notebooks_dir()


def notebooks(prefix: str = "", solutions: bool = False) -> list[Path]:
    """The numbered notebooks (``NN_slug.ipynb``) in order, optionally only those whose name starts with prefix;
    ``solutions``: their exercises' solutions instead (``notebooks/solutions/NN_slug.ipynb``, same names)."""
    folder = NOTEBOOKS / "solutions" if solutions else NOTEBOOKS
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.name.startswith(prefix))
    if not found:
        raise ValueError(f"prefix={prefix!r} matches no notebook in {folder}")
    return found


def execute(path: Path, fast: bool, timeout: int = 1800, save_to: Path | None = None) -> float:
    """Run a notebook top to bottom in its own folder and return the seconds taken. Outputs are never written
    back into ``notebooks/`` (stored stripped); ``save_to``: a folder to write the executed copy into."""
    import nbformat  # lazy: nbformat and nbclient load only when notebooks run
    from nbclient import NotebookClient

    os.environ["WORKBENCH_FAST"] = "1" if fast else "0"  # fast mode: paths.figures_dir() is figures/_fast
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
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
    args = parser.parse_args(argv)
    total = 0.0
    for path in tqdm(notebooks(args.prefix, args.solutions), desc="notebooks", unit="notebook"):
        seconds = execute(path, fast=args.fast, save_to=args.save_executed)
        total += seconds
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    print(f"all notebooks: {total:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
