"""The figures' style (``style()``, a context; ``styled`` draws a figure function inside it) and the one helper that
saves figures (``savefig``)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import seaborn as sns

from workbench import paths


STYLE = {"style": "whitegrid", "context": "notebook"}  # seaborn's theme, as sns.set_theme takes it


F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The workbench's figure style (``STYLE``) for the figures drawn inside the block; the previous settings
    come back after it."""
    interactive = None
    try:
        with plt.rc_context():
            sns.set_theme(**STYLE)
            try:
                yield
            finally:
                interactive = plt.isinteractive()
    finally:
        # Interactive mode is state, not style: the first figure of a Jupyter kernel may resolve the backend
        # inside this block, whose inline backend then turns interactive mode on; restoring it with the style
        # would hide every later figure of the notebook.
        if interactive is not None:
            plt.interactive(interactive)


def styled(draw: F) -> F:
    """``draw`` run inside ``style()``."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def savefig(fig: plt.Figure, name: str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` (name: notebook number first, e.g. ``01_robust_accuracy``)."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"name must be a bare figure name like '01_robust_accuracy', got {name!r}")
    target = paths.figures_dir() / f"{name}.png"
    with style():  # tick locators and layout run at draw time: draw in the style the figure was made in
        paths.atomic_write(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                                                           metadata={"Software": None}))
    return target


def _axes(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax
