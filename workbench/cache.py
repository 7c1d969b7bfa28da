"""Cache records on disk: one JSON file per computed unit (a grid cell, an evaluation's attack run), written
atomically with a digest of its content, and validated when read; anything unusable is recomputed with a
warning, never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench import paths


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The installed workbench version (cache keys and rows carry it: an upgrade never reuses old results)."""
    try:
        return importlib.metadata.version("workbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def key(config: dict[str, Any]) -> str:
    """The cache key of what ``config`` (JSON-able) describes: a hash of its canonical JSON, 20 hex digits."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def digest(row: dict[str, Any]) -> str:
    """SHA-256 of a row's canonical JSON."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=float).encode()).hexdigest()


def store(path: Path, row: dict[str, Any]) -> None:
    """Write ``{"row": row, "digest": ...}`` to ``path`` atomically."""
    record = {"row": row, "digest": digest(row)}
    paths.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, default=float)))


def load(path: Path, problem: Callable[[dict[str, Any]], str | None]) -> dict[str, Any] | None:
    """The row stored at ``path`` if it is a record whose digest matches and ``problem(row)`` finds nothing
    wrong; else None, with a warning when a file exists but cannot be used (the caller recomputes it)."""
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        why = f"unreadable ({type(err).__name__})"
    else:
        if not isinstance(stored, dict) or not isinstance(stored.get("row"), dict):
            why = "not a cache record"
        elif stored.get("digest") != digest(stored["row"]):
            why = "its digest does not match its row (edited or damaged)"
        else:
            why = problem(stored["row"])
            if why is None:
                return stored["row"]
    warnings.warn(f"cache file {path} is not used ({why}): it is recomputed", stacklevel=3)
    return None


def writable(folder: Path, name: str = "cache_dir") -> Path:
    """Create ``folder`` if needed and check a file can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe."):
            pass
    except OSError as err:
        raise ValueError(f"{name}={str(folder)!r} is not a writable folder ({err.strerror or err})") from None
    return folder
