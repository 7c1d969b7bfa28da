"""A static website of the notebooks for students who read before they run (``make site``).

Every numbered notebook is executed (fast mode by default) and rendered to HTML with nbconvert, figures
embedded, plus an ``index.html`` that lists them with their titles and run times and links the API reference
(``api/``: every module's docstrings, rendered by pdoc) and the recorded worst-case leaderboards
(``leaderboard.html``: the table and its figure, with provenance; nothing is recomputed). Plotly figures carry their
own plotly.js (they work offline); the interactive panels show the picture they opened with and a note that
they need a running kernel; progress bars are left out.

Usage::

    python -m workbench.course.site                    # site/ of the checkout, fast mode
    python -m workbench.course.site --full --out DIR   # full sizes (as make figures; minutes)
    python -m workbench.course.site 00 02              # only the notebooks starting with 00 or 02
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import matplotlib.pyplot as plt

from workbench import leaderboard, paths, plots
from workbench.course import notebooks

WIDGET = "application/vnd.jupyter.widget-view+json"
PANEL_NOTE = ("<p><em>An interactive panel: its controls work in JupyterLab with a running kernel "
              "(open this notebook there). Below: the picture it opens with, if any.</em></p>")


@dataclass
class Page:
    notebook: str
    title: str
    seconds: float


def render(out: Path | str, prefixes: Sequence[str] = ("",), fast: bool = True) -> Path:
    """Execute the notebooks whose names start with any of ``prefixes``, write one HTML page each and
    ``index.html`` into ``out``; return the index's path."""
    out = Path(out)
    chosen = sorted({path for prefix in prefixes for path in notebooks.notebooks(prefix)})
    with _environ(PLOTLY_RENDERER="notebook",  # plotly.js inline in the output: the page works offline
                  MPLBACKEND="module://matplotlib_inline.backend_inline"), \
            tempfile.TemporaryDirectory() as executed:  # figures inline, as in JupyterLab
        pages = [_page(path, fast, Path(executed), out) for path in tqdm(chosen, desc="site", unit="page")]
    api(out / "api")
    boards = boards_page(out / "leaderboard.html")
    submitting_page(out / "submitting.html")
    index = out / "index.html"
    paths.atomic_write(index, lambda tmp: tmp.write_text(_index(pages, fast, boards), encoding="utf-8"))
    return index


BOARD_COLUMNS = ("rank", "defense", "clean acc", "agreement", "ECE", "final", "worst attack", "attacks",
                 "restart seeds", "eot", "kappa", "cost per query", "randomized", "keeps predictions", "current")
SUBMITTING = "submitting.md"  # docs/: how to submit a defense, rendered beside the boards


def boards_page(out: Path | str) -> list[str]:
    """One HTML page with every recorded leaderboard (``workbench.leaderboard.BOARDS``): its figure, its table
    (robust accuracy in percent) and where and when each row was computed; return the boards it shows (none
    recorded: no page)."""
    sections, shown = [], []
    for board in leaderboard.BOARDS:
        try:
            table = leaderboard.recorded(board)
        except FileNotFoundError:
            continue
        shown.append(board)
        sections.append(_board_section(board, table))
    if sections:
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SQA workbench: worst-case leaderboards</title>
<style>body {{font-family: sans-serif; max-width: 70em; margin: 2em auto; line-height: 1.5}}
table {{border-collapse: collapse; font-size: 90%}} td, th {{padding: 2px 8px; border-bottom: 1px solid #ddd}}
</style></head><body><h1>Worst-case leaderboards</h1>
<p>Every registry defense ranked by <code>evaluate()</code>'s per-image worst case over the attacks its probes call
for (the standard SQAs, the adaptive attacks for post-processing, EOT for randomized defenses), most robust first.
Recorded with <code>python -m workbench.leaderboard BOARD --record</code>; see docs/protocol.md.</p>
{"".join(sections)}</body></html>
"""
        paths.atomic_write(Path(out), lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return shown


def _board_section(board: str, table) -> str:
    dataset, n, budgets = leaderboard.BOARDS[board]
    fig = plots.leaderboard(table)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    accuracies = ["clean acc", "agreement", *(f"worst@{b}" for b in budgets), "final"]
    shown = table[[c for c in table.columns if c in BOARD_COLUMNS or any(c.startswith(a) for a in accuracies)]]
    shown = shown[[*BOARD_COLUMNS[:5], *(c for c in shown.columns if c.startswith("worst@")),
                   *(c for c in shown.columns if c.startswith("final")), *BOARD_COLUMNS[6:]]].copy()
    percent = [c for c in shown.columns if any(c.startswith(a) for a in accuracies)]
    shown[percent] = (100 * shown[percent]).round(1)
    ties = shown.groupby("rank")["rank"].transform("size") > 1
    shown["rank"] = [f"{r}=" if t else str(r) for r, t in zip(shown["rank"], ties)]
    shown = plots.with_intervals(shown, digits=1)
    made = ", ".join(sorted({f"{c[:7]} ({d}, torch {t})" for c, d, t in
                             zip(table["git commit"], table["device"], table["torch"])}))
    stale = "" if table["current"].all() else (
        f"<p><strong>{int((~table['current']).sum())} rows were recorded under an earlier protocol</strong> "
        "(column <code>current</code>: False; without restarts, the kappa Square or the present rules): they are "
        "not comparable with the others until recorded again.</p>")
    return (f"<h2 id=\"{html.escape(board)}\">{html.escape(board)}</h2>"
            f"<p>{html.escape(dataset)}, the first {n} test images, l-inf at the dataset's eps, budgets "
            f"{', '.join(map(str, budgets))} queries, seed 0. Accuracies in percent with their 95% Wilson interval "
            f"over the {n} images; defenses whose intervals of <code>final</code> overlap share a rank (=). "
            f"Computed at {html.escape(made)}.</p>{stale}"
            f'<img src="data:image/png;base64,{base64.b64encode(png.getvalue()).decode()}">'
            f"{shown.to_html(index=False, float_format=lambda v: f'{v:.3g}')}"
            '<p>Your defense on this board: <a href="submitting.html">how to submit</a>.</p>')


def submitting_page(out: Path | str) -> Path | None:
    """docs/submitting.md (how to submit a defense to a board) as HTML, where the checkout has it."""
    import mistune  # installed with nbconvert, which renders the notebooks

    source = paths.notebooks_dir().parent / "docs" / SUBMITTING
    if not source.is_file():
        return None
    body = mistune.html(source.read_text(encoding="utf-8"))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SQA workbench: submitting a defense</title>
<style>body {{font-family: sans-serif; max-width: 50em; margin: 2em auto; line-height: 1.5}}
pre {{background: #f6f6f6; padding: 0.5em}}</style></head><body>{body}</body></html>
"""
    return paths.atomic_write(Path(out), lambda tmp: tmp.write_text(page, encoding="utf-8"))


def api(out: Path | str) -> Path:
    """The API reference: every module of the workbench rendered from its docstrings by pdoc into ``out``
    (``workbench.html`` is its entry page)."""
    import pdoc  # documentation only: imported for the site, not by the library

    pdoc.render.configure(docformat="google", show_source=True)
    pdoc.pdoc("workbench", "!workbench.models.__main__", output_directory=Path(out))
    return Path(out) / "workbench.html"


@contextmanager
def _environ(**values: str):
    """Set environment variables (inherited by the kernels started inside) and restore them afterwards."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _page(path: Path, fast: bool, executed: Path, out: Path) -> Page:
    import nbformat  # lazy: nbconvert is heavy and only the site needs it
    from nbconvert import HTMLExporter

    seconds = notebooks.execute(path, fast=fast, save_to=executed)
    nb = nbformat.read(executed / path.name, as_version=4)
    _static(nb)
    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    paths.atomic_write(out / f"{path.stem}.html", lambda tmp: tmp.write_text(body, encoding="utf-8"))
    return Page(path.stem, _title(nb, path.stem), seconds)


def _static(nb) -> None:
    """Widget outputs a static page cannot run: a panel keeps its opening picture (the ``image/png`` in its
    bundle) under a note; progress bars and other widgets are dropped."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET not in data:
                kept.append(output)
            elif str(data.get("text/plain", "")).startswith("Panel("):
                picture = f'<img src="data:image/png;base64,{data["image/png"]}">' if "image/png" in data else ""
                output.data = {"text/html": PANEL_NOTE + picture}
                kept.append(output)
        cell.outputs = kept


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _index(pages: list[Page], fast: bool, boards: Sequence[str] = ()) -> str:
    rows = "\n".join(f'<li><a href="{html.escape(p.notebook)}.html">{html.escape(p.title)}</a> '
                     f'<span class="time">({p.seconds:.0f} s to run)</span></li>' for p in pages)
    mode = "fast mode (fewer images and queries)" if fast else "full mode (the sizes of figures/)"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SQA workbench: the notebooks</title>
<style>body {{font-family: sans-serif; max-width: 50em; margin: 2em auto; line-height: 1.5}}
.time {{color: #666; font-size: 90%}}</style></head>
<body><h1>SQA workbench: the notebooks</h1>
<p>Black-box score-based query attacks and the defenses against them, one notebook per lesson, executed in
{mode}. Read them here; run them in JupyterLab to move the sliders (see docs/teaching.md in the
repository).</p>
<ol>
{rows}
</ol>
<p>The library's reference, from its docstrings: <a href="api/workbench.html">API reference</a>.</p>
{_boards_link(boards)}
</body></html>
"""


def _boards_link(boards: Sequence[str]) -> str:
    if not boards:
        return ""
    links = ", ".join(f'<a href="leaderboard.html#{html.escape(b)}">{html.escape(b)}</a>' for b in boards)
    return (f"<p>The recorded worst-case leaderboards: {links} (<a href=\"submitting.html\">submitting a "
            "defense</a>).</p>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", default=[""], help="only notebooks starting with these")
    parser.add_argument("--out", default=str(paths.notebooks_dir().parent / "site"), help="output folder")
    parser.add_argument("--full", action="store_true", help="full sizes and budgets instead of fast mode")
    args = parser.parse_args(argv)
    index = render(args.out, args.prefixes or [""], fast=not args.full)
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
