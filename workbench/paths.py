"""Where the workbench keeps its caches and figures, and how it writes files atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _in_checkout() -> bool:
    return (_REPO / "pyproject.toml").is_file()


def notebooks_dir() -> Path:
    """The checkout's ``notebooks/`` folder (the numbered notebooks and their ``solutions/``)."""
    return _REPO / "notebooks"


def data_dir() -> Path:
    """Cache folder for trained weights and datasets: ``$WORKBENCH_DATA``, else ``data/`` of the checkout,
    else ``~/.cache/workbench``."""
    env = os.environ.get("WORKBENCH_DATA")
    path = Path(env) if env else (_REPO / "data" if _in_checkout() else Path.home() / ".cache" / "workbench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    """Folder the figures are written to: ``$WORKBENCH_FIGURES``, else ``figures/`` of the checkout, and in fast
    mode its ``_fast/`` subfolder (git-ignored): a fast run, whatever started the kernel (JupyterLab with
    ``WORKBENCH_FAST=1``, the tests), never writes over the committed full-run figures."""
    env = os.environ.get("WORKBENCH_FIGURES")
    if env:
        path = Path(env)
    else:
        path = _REPO / "figures" if _in_checkout() else Path.cwd() / "figures"
        path = path / "_fast" if fast_mode() else path
    path.mkdir(parents=True, exist_ok=True)
    return path


def tables_dir() -> Path:
    """Where recorded grid tables live: ``data/tables/`` of the checkout (committed: the measured tables the
    notebooks show), else ``<data_dir>/tables``."""
    return _REPO / "data" / "tables" if _in_checkout() else data_dir() / "tables"


def fast_mode() -> bool:
    """True when ``WORKBENCH_FAST`` is set to a non-empty value other than 0: notebooks shrink sizes and budgets."""
    return os.environ.get("WORKBENCH_FAST", "0") not in ("", "0")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one step (no half-written
    file is ever visible under the final name); on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)
