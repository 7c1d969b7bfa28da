"""The workbench in a classroom JupyterLab: the tracked notebooks stay as committed, whatever a student runs.

JupyterLab saves (and autosaves every two minutes) the outputs, execution counts and kernel metadata of every
notebook a student runs into the file. For the workbench's own notebooks (``notebooks/NN_*.ipynb`` and
``notebooks/solutions/`` and ``notebooks/exercises/`` of this checkout) that would turn ``git status`` red and make the next
``git pull`` conflict. This module keeps them stripped on save with nbstripout's ``strip_output`` (the same
settings as ``make strip``), as a Jupyter server extension. ``make install`` switches it on for its
environment with ``python -m workbench.course.classroom enable`` (run that once in a conda environment made from
environment.yml; it writes ``<env>/etc/jupyter/jupyter_server_config.d/workbench.course.classroom.json``):

- the student keeps every output on screen for the session; only the file on disk is stripped;
- any other notebook (a copy saved elsewhere, ``notebooks/mine/``, a student's own) is saved untouched;
- every kernel the server starts gets ``OMP_WAIT_POLICY=PASSIVE`` unless one is set: idle OpenMP threads sleep
  instead of spinning, so a kernel beside a busy core or beside other kernels does not collapse (numbers are the
  same bit for bit; docs/performance.md has what it saves under load and costs on a quiet machine);
- ``python -m workbench.course.classroom disable`` switches it off;
- ``python -m workbench.course.classroom strip FILE...`` strips files the same way (``make strip``);
  ``python -m workbench.course.classroom check FILE...`` exits 1 if any is not stored stripped.

Check that a server loaded it: ``jupyter server extension list`` shows ``workbench.course.classroom``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from workbench import paths

# nbstripout's command-line defaults plus the kernel's language_info (its Python version differs per machine).
EXTRA_KEYS = ["metadata.signature", "metadata.widgets", "metadata.language_info", "cell.metadata.collapsed",
              "cell.metadata.ExecuteTime", "cell.metadata.execution", "cell.metadata.heading_collapsed",
              "cell.metadata.hidden", "cell.metadata.scrolled"]
NOTEBOOKS = paths.notebooks_dir()
_TRACKED = re.compile(r"\d\d_[^/]+\.ipynb")
FOLDERS = ("solutions", "exercises")  # beside the lessons: the worked solutions and the student sheets


def tracked(path: Path) -> bool:
    """True for the workbench's own notebooks: ``notebooks/NN_*.ipynb`` and the same names in
    ``notebooks/solutions/`` and ``notebooks/exercises/``."""
    path = Path(path).resolve()
    return bool(_TRACKED.fullmatch(path.name)) and path.parent in (NOTEBOOKS, *(NOTEBOOKS / f for f in FOLDERS))


def stripped(content: dict[str, Any]) -> dict[str, Any]:
    """The notebook ``content`` (nbformat JSON as a dict) without outputs, counts, volatile metadata; cell ids
    renumbered 0, 1, ... (nbstripout's defaults, plus ``metadata.language_info``)."""
    import nbformat  # lazy: the notebook tooling loads only when notebooks are stripped
    from nbstripout import strip_output

    nb = nbformat.from_dict(content)
    return strip_output(nb, keep_output=False, keep_count=False, keep_id=False, extra_keys=EXTRA_KEYS)


def strip_on_save(model: dict[str, Any], path: str, contents_manager: Any, **kwargs: Any) -> None:
    """Jupyter ``pre_save_hook``: strip a tracked notebook's model in place before the server writes it."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    root = Path(getattr(contents_manager, "root_dir", "."))
    if tracked(root / path.lstrip("/")):
        model["content"] = stripped(model["content"])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench.course.classroom"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    server_app.contents_manager.register_pre_save_hook(strip_on_save)
    server_app.log.info("workbench.course.classroom: the workbench's notebooks are saved without outputs")
    # every kernel this server starts inherits it (OpenMP reads it once, when a kernel first imports torch)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    server_app.log.info(f"workbench.course.classroom: kernels start with OMP_WAIT_POLICY="
                        f"{os.environ['OMP_WAIT_POLICY']} (idle threads sleep: docs/performance.md)")


def _text(path: Path) -> tuple[str, str]:
    import nbformat

    before = Path(path).read_text(encoding="utf-8")
    after = nbformat.writes(stripped(nbformat.reads(before, as_version=nbformat.NO_CONVERT)))
    return before, after if after.endswith("\n") else after + "\n"


def strip(files: list[Path], write: bool = True) -> list[Path]:
    """Strip ``files`` in place (atomically) as the save hook does; return the ones that changed (``write=False``:
    only return the ones that are not stored stripped)."""
    changed = []
    for path in files:
        before, after = _text(path)
        if after != before:
            if write:
                paths.atomic_write(Path(path), lambda tmp: tmp.write_text(after, encoding="utf-8"))
            changed.append(Path(path))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["enable", "disable", "strip", "check"])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.action in ("enable", "disable"):
        # lazy: the Jupyter server is heavy and only enabling the extension needs it
        from jupyter_server.extension.serverextension import toggle_server_extension_python

        toggle_server_extension_python("workbench.course.classroom", enabled=args.action == "enable", sys_prefix=True)
        print(f"workbench.course.classroom {args.action}d for the Jupyter servers of {sys.prefix}")
        return 0
    if args.action == "strip":
        for path in strip(args.files):
            print(f"stripped {path}")
        return 0
    dirty = strip(args.files, write=False)
    for path in dirty:
        print(f"{path} is not stored stripped: run make strip")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
