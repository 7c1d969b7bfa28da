"""The README's first attack, timed: the code block under "A first attack" in README.md, run as it stands (Square
against the undefended CNN on 100 test images for 500 queries, then AAA-linear calibrated on the held-out images
and attacked with ``record=True`` and the undefended model as the reference) in a fresh Python process at the
default threads, so that its imports count. Prints what it prints and its time from its first import to its last
line (goal: at most 10 s on the project's 2-core CPU), and the whole process's time with Python's start and exit.

    python -m benchmarks.first_attack
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    """The first Python block after the README's "A first attack" heading."""
    text = README.read_text()
    found = re.search(r"^## A first attack\n.*?```python\n(.*?)```", text, re.S | re.M)
    if found is None:
        raise SystemExit("README.md has no Python block under '## A first attack'")
    return found.group(1)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    code = example()
    timed = f"import time as _t\n_start = _t.perf_counter()\n{code}\nprint(f'\\n{{_t.perf_counter() - _start:.1f}}')"
    start = time.perf_counter()
    shown = subprocess.run([sys.executable, "-c", timed], check=True, cwd=README.parent, capture_output=True,
                           text=True).stdout
    process = time.perf_counter() - start
    *printed, seconds = shown.rstrip().splitlines()
    print("\n".join(printed))
    print(f"\nthe example, from its first import to its last line: {seconds} s (the whole process, with Python's start "
          f"and exit: {process:.1f} s)")


if __name__ == "__main__":
    main()
