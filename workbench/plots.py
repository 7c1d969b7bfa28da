"""Every figure as a function (data in, matplotlib figure out) and the one helper that saves figures.

``savefig(fig, "01_robust_accuracy")`` writes ``figures/01_robust_accuracy.png`` (or under ``$WORKBENCH_FIGURES``)
atomically and deterministically: fixed DPI, no timestamp or software tag in the PNG metadata.

Importing this module changes no global style. Every figure function draws inside ``style()`` (seaborn's
whitegrid theme at notebook scale, as a context), so a figure looks the same whoever calls it, and the caller's
own matplotlib settings are left as they were; ``with plots.style():`` gives your own figures the same look.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from workbench import paths
from workbench.results import Result
from workbench.metrics import (accepted_points, earliest, ece, reliability, robust_accuracy_curve,
                               robust_by_query)

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


@styled
def robust_accuracy_vs_queries(results: Mapping[str, Result], ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy after every query, one line per run (all read from one run each)."""
    fig, ax = _axes(ax, (6, 4))
    for label, result in results.items():
        curve = robust_accuracy_curve(result)
        ax.plot(list(curve), [100 * v for v in curve.values()], label=label)
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102))
    ax.legend()
    return fig


@styled
def margin_trajectory(observed: torch.Tensor, reference: torch.Tensor | None = None, title: str = "",
                      start: int = 1, ax: plt.Axes | None = None, greedy: bool = True) -> plt.Figure:
    """AAA Fig. 2 for one image: the margin at the attacker's accepted point after every query (the running
    minimum of what it observed, from query ``start`` on; Square accepts its initialization, query 2,
    unconditionally), and, for analysis, the undefended model's margin at that same point. Every observed query
    is drawn faintly behind. ``greedy=False`` (attacks that do not keep the running minimum, e.g. op/bi-Square,
    NES): every query's observed and undefended margin instead."""
    fig, ax = _axes(ax, (7, 3.5))
    seen = observed.cpu().numpy()
    best = accepted_points(observed, start)
    q = np.arange(1, len(best) + 1)
    ax.plot(q, seen[:len(best)], color="tab:blue", lw=0.5 if greedy else 1.0, alpha=0.25 if greedy else 0.8,
            label="every query (observed)")
    if greedy:
        ax.plot(q, seen[best], color="tab:blue", lw=1.5, label="accepted, as the attacker sees it")
    else:
        best = q - 1
    if reference is not None:
        ax.plot(q, reference.cpu().numpy()[best], color="tab:orange", lw=1.5 if greedy else 1.0,
                label="accepted, undefended margin" if greedy else "every query (undefended margin)")
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set(xlabel="query", ylabel="margin loss", title=title)
    ax.legend(fontsize=8)
    return fig


@styled
def aaa_target_curves(m: torch.Tensor, targets: Mapping[str, torch.Tensor], ax: plt.Axes | None = None) -> plt.Figure:
    """AAA Fig. 1b: the original margins ``m`` and AAA's target margin of each curve at them (``targets``: curve
    -> values, as ``defenses.aaa.target_curves`` gives them) as the attack lowers the margin."""
    fig, ax = _axes(ax, (6, 4))
    ax.plot(m, m, label="original", color="tab:blue")
    colors = {"linear": "tab:orange", "sine": "tab:green"}
    for curve, target in targets.items():
        ax.plot(m, target, label=f"AAA-{curve}", color=colors.get(curve))
    ax.set(xlabel="original margin (decreases as the attack goes on)", ylabel="margin shown to the attacker")
    ax.invert_xaxis()
    ax.legend()
    return fig


@styled
def margins_vs_tau(margins: Mapping[str, torch.Tensor], tau: float) -> plt.Figure:
    """The clean top-1 minus top-2 logit margins of each model (``margins``: label -> one margin per image), one
    panel each, against AAA's intervals: solid lines at the multiples of ``tau`` (interval edges), dashed at the
    attractors between them. AAA moves each margin toward its interval's attractor, so ``tau`` is in the model's
    logit units: a model whose margins all lie in the first interval has every image pulled to ``tau / 2``."""
    fig, axes = plt.subplots(1, len(margins), figsize=(5.5 * len(margins), 3.6), squeeze=False)
    for ax, (label, m) in zip(axes[0], margins.items()):
        m = m.detach().cpu().numpy()
        top = max(float(np.quantile(m, 0.99)), tau) * 1.05
        ax.hist(m[m <= top], bins=40, color="tab:blue", alpha=0.8)
        for k in range(int(top // tau) + 1):
            ax.axvline(k * tau, color="k", lw=1.0)
            ax.axvline((k + 0.5) * tau, color="tab:orange", lw=1.0, ls="--")
        ax.set(xlabel="clean margin (top-1 minus top-2 logit)", ylabel="images", xlim=(0, top),
               title=f"{label}: median {np.median(m):.1f}")
    axes[0][0].plot([], [], color="k", label=f"interval edges (multiples of tau = {tau:g})")
    axes[0][0].plot([], [], color="tab:orange", ls="--", label="attractors")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _axes(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


@styled
def adversarial_examples(x: torch.Tensor, x_adv: torch.Tensor, titles: list[str] | None = None) -> plt.Figure:
    """Clean images, adversarial images and their perturbations (scaled to the largest one), one column each."""
    delta = (x_adv - x).cpu()
    scale = delta.abs().max().clamp_min(1e-12)
    fig, axes = image_rows({"clean": x.cpu(), "adversarial": x_adv.cpu(), "perturbation": 0.5 + 0.5 * delta / scale},
                           cell=(1.6, 5 / 3))
    for i, title in enumerate(titles or []):
        axes[0, i].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


@styled
def image_rows(rows: Mapping[str, torch.Tensor], cmap: str = "gray", cell: tuple[float, float] = (1.5, 1.6),
               fontsize: float | None = None) -> tuple[plt.Figure, np.ndarray]:
    """A grid of images in [0, 1], one labelled row per entry of ``rows`` (each (n, C, H, W), the same n), no
    ticks; ``cell`` is the size of one image in inches. Returns the figure and its (rows, n) axes."""
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(cell[0] * n, cell[1] * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for i in range(n):
            axes[r, i].imshow(to_image(images[i].cpu()), cmap=cmap, vmin=0, vmax=1)  # cmap is ignored for RGB
            axes[r, i].set_xticks([]), axes[r, i].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=fontsize)
    return fig, axes


# ------------------------------------------------------------------------------------------ grid results
@styled
def robustness_heatmap(table: pd.DataFrame, value: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Defense x attack heatmap of ``value`` (a robust-accuracy column of an experiment table; the mean over
    seeds where there are several), in percent."""
    fig, ax = _axes(ax, (1.2 * table["attack"].nunique() + 2.5, 0.45 * table["defense"].nunique() + 1.5))
    pivot = table.pivot_table(index="defense", columns="attack", values=value, aggfunc="mean", sort=False)
    sns.heatmap(100 * pivot, annot=True, fmt=".0f", cmap="rocket_r", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": f"{value} (%)"})
    ax.set(xlabel="attack", ylabel="defense")
    return fig


@styled
def robustness_vs_budget(table: pd.DataFrame, attack: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy at each budget of the table (the ``robust@b`` columns), one line per defense."""
    fig, ax = _axes(ax, (6, 4))
    columns = [c for c in table.columns if c.startswith("robust@") and table[c].notna().any()]
    budgets = [int(c.split("@")[1]) for c in columns]
    rows = table[table["attack"] == attack].groupby("defense", sort=False)[columns].mean()
    colors = sns.color_palette("tab10" if len(rows) <= 10 else "tab20", len(rows))
    for (defense, row), color, marker in zip(rows.iterrows(), colors, "osD^v<>ph*XP" * 2):
        ax.plot(budgets, 100 * row.to_numpy(), marker=marker, color=color, label=defense)
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102),
           title=f"{attack}")
    ax.legend(fontsize="small", ncol=2)
    return fig


@styled
def budget_curves(table: pd.DataFrame, attacks: Sequence[str] | None = None) -> plt.Figure:
    """``robustness_vs_budget`` for every attack of the table (or ``attacks``), one panel each, one legend."""
    attacks = list(attacks or table["attack"].unique())
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.6 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        robustness_vs_budget(table, attack, ax=ax)
        ax.get_legend().remove()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize="small",
               bbox_to_anchor=(0.5, 1.0))
    return fig


@styled
def cost_vs_robustness(table: pd.DataFrame, cost: str = "logit diff", robust: str | None = None,
                       ax: plt.Axes | None = None) -> plt.Figure:
    """The trade-off of UniG Fig. 1b: each defense's clean-side cost (``"logit diff"`` or ``"ECE"``) against
    its robust accuracy (default: the last ``robust@`` column), averaged over the table's attacks and seeds."""
    fig, ax = _axes(ax, (6, 4))
    robust = robust or [c for c in table.columns if c.startswith("robust@")][-1]
    points = table.groupby("defense", sort=False)[[cost, robust]].mean()
    ax.scatter(points[cost], 100 * points[robust])
    for names, (x, y) in _label_groups(points[cost], 100 * points[robust]):
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set(xlabel=cost, ylabel=f"{robust} (%)")
    return fig


def _label_groups(x: pd.Series, y: pd.Series, near: tuple[float, float] = (0.15, 0.04)
                  ) -> list[tuple[list[str], tuple[float, float]]]:
    """Points whose labels would overlap (closer than ``near`` of the axes' ranges, horizontally about a name's
    width, vertically a line) share one label, placed at the group's leftmost top point."""
    scale = [max(float(v.max() - v.min()), 1e-12) for v in (x, y)]
    groups: list[list[str]] = []
    for name in x.index:
        for group in groups:
            if all(abs(float(v[name] - v[group[0]])) / s < d for v, s, d in zip((x, y), scale, near)):
                group.append(name)
                break
        else:
            groups.append([name])
    return [(g, (float(x[g].min()), float(y[g].max()))) for g in groups]


# ------------------------------------------------------------------------------------- attack replays
def changed_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box (row, col, height, width) of the pixels that differ between two images (C, H, W), or None
    where nothing changed."""
    rows, cols = ((after - before).abs().amax(0) > 0).nonzero(as_tuple=True)
    if not len(rows):
        return None
    r0, c0 = int(rows.min()), int(cols.min())
    return r0, c0, int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1


@styled
def query_snapshots(kept: torch.Tensor, observed: torch.Tensor, queries: Sequence[int], eps: float,
                    start: int = 2) -> plt.Figure:
    """One image under a greedy attack (Square): the image the attacker holds after each of ``queries`` (top),
    its perturbation (bottom) with the squares accepted since the previous snapshot outlined. ``kept`` and
    ``observed`` are one image's ``Oracle.kept`` and ``Oracle.observed`` rows."""
    best = accepted_points(observed, start)
    queries = [q for q in queries if 1 <= q <= len(best)]
    if not queries:
        raise ValueError(f"queries must hold values in 1..{len(best)} (the queries recorded), got none")
    fig, axes = plt.subplots(2, len(queries), figsize=(1.9 * len(queries), 4.2), squeeze=False)
    x0, seen = kept[0].cpu(), observed.cpu().numpy()
    boxes = _accepted_boxes(kept.cpu(), best)
    for col, q in enumerate(queries):
        image = kept[best[q - 1]].cpu()
        axes[0, col].imshow(to_image(image), cmap="gray", vmin=0, vmax=1)
        axes[0, col].set_title(f"query {q}\nmargin {seen[best[q - 1]]:.2f}", fontsize=9)
        axes[1, col].imshow(to_image(0.5 + 0.5 * (image - x0) / eps), cmap="coolwarm", vmin=0, vmax=1)
        since = queries[col - 1] if col else 0
        for _, (r, c, h, w) in [(i, box) for i, box in boxes if since <= i < q]:
            axes[1, col].add_patch(plt.Rectangle((c - 0.5, r - 0.5), w, h, fill=False, lw=1.2, edgecolor="k"))
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("accepted image"), axes[1, 0].set_ylabel("perturbation")
    fig.tight_layout()
    return fig


def _accepted_boxes(kept: torch.Tensor, best: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(query index, box) of every accepted change smaller than the whole image (Square's squares)."""
    boxes, size = [], kept.shape[-2:]
    for i in range(1, len(best)):
        if best[i] != best[i - 1]:
            box = changed_box(kept[best[i - 1]], kept[best[i]])
            if box is not None and (box[2], box[3]) != tuple(size):
                boxes.append((i, box))
    return boxes


def to_image(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor as an array imshow takes: (H, W) for one channel, (H, W, C) otherwise, in [0, 1]."""
    return image.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()


@styled
def margin_trajectories(observed: torch.Tensor, reference: torch.Tensor | None, indices: Sequence[int],
                        start: int = 1, titles: Sequence[str] | None = None) -> plt.Figure:
    """AAA Fig. 2 / 6: ``margin_trajectory`` for several images side by side (rows of an Oracle's records)."""
    fig, axes = plt.subplots(1, len(indices), figsize=(4.2 * len(indices), 3.4), squeeze=False)
    for k, (ax, i) in enumerate(zip(axes[0], indices)):
        margin_trajectory(observed[i], None if reference is None else reference[i], start=start, ax=ax,
                          title=titles[k] if titles else f"image {i}")
        if k:
            ax.get_legend().remove()
            ax.set_ylabel("")
    fig.tight_layout()
    return fig


def trajectories_plotly(observed: torch.Tensor, reference: torch.Tensor | None, indices: Sequence[int],
                        start: int = 1):
    """Hover-able plotly version of ``margin_trajectories`` (one line per image and view) for notebooks."""
    import plotly.graph_objects as go  # lazy: plotly loads only for the interactive figures

    fig = go.Figure()
    for i in indices:
        best = accepted_points(observed[i], start)
        q = np.arange(1, len(best) + 1)
        fig.add_trace(go.Scatter(x=q, y=observed[i].cpu().numpy()[best], name=f"image {i}: observed",
                                 mode="lines"))
        if reference is not None:
            fig.add_trace(go.Scatter(x=q, y=reference[i].cpu().numpy()[best], name=f"image {i}: undefended",
                                     mode="lines", line={"dash": "dot"}))
    fig.update_layout(xaxis_title="query", yaxis_title="margin at the accepted point", height=380,
                      margin={"t": 30, "b": 40, "l": 50, "r": 10},
                      hoverlabel={"namelength": -1})  # plotly cuts trace names at 15 characters by default
    return fig


# --------------------------------------------------------------------------------------- calibration
@styled
def confidence_by_rank(frames: Mapping[str, pd.DataFrame], ax: plt.Axes | None = None) -> plt.Figure:
    """AAA Fig. 3 (left): per bin of samples (sorted by the undefended true-class probability), confidence
    (solid) and accuracy (dotted) of each model; ``frames`` from ``metrics.confidence_by_rank``."""
    fig, ax = _axes(ax, (7, 4))
    for (label, frame), color in zip(frames.items(), sns.color_palette()):
        ax.plot(frame["bin"], frame["confidence"], color=color, lw=1.4, label=f"{label} confidence")
        ax.plot(frame["bin"], frame["accuracy"], color=color, lw=1.2, ls=":", label=f"{label} accuracy")
    ax.set(xlabel="bin (samples sorted by the undefended true-class probability)", ylabel="confidence / accuracy")
    ax.legend(fontsize="x-small", ncol=2)
    return fig


@styled
def reliability_diagram(logits: Mapping[str, torch.Tensor], y: torch.Tensor, bins: int = 15,
                        ax: plt.Axes | None = None) -> plt.Figure:
    """Accuracy against mean confidence per confidence bin (15 equal-width bins), one line per model, with each
    model's ECE in the legend; the diagonal is perfect calibration."""
    fig, ax = _axes(ax, (4.8, 4.5))
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
    for label, z in logits.items():
        r = reliability(z, y, bins)
        full = r["count"] > 0
        ax.plot(r["confidence"][full], r["accuracy"][full], marker="o", ms=3,
                label=f"{label} (ECE {100 * ece(z, y, bins):.2f}%)")
    ax.set(xlabel="mean confidence in bin", ylabel="accuracy in bin", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize="small")
    return fig


# ----------------------------------------------------------------------------------- parameter sweeps
@styled
def sweep_panels(table: pd.DataFrame, left: Sequence[str], right: Sequence[str] = (), by: str = "parameter",
                 x: str = "value", logx: bool | Sequence[str] = False) -> plt.Figure:
    """One panel per value of ``by`` (e.g. AAA Fig. 4: tau, alpha, beta): the ``left`` columns against ``x`` on
    the left axis, the ``right`` columns on a second axis (dashed). ``logx``: all panels, or those named."""
    groups = list(table.groupby(by, sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.3 * len(groups), 3.5), squeeze=False)
    colors = sns.color_palette(n_colors=len(left) + len(right))
    for ax, (name, rows) in zip(axes[0], groups):
        rows = rows.sort_values(x)
        for col, color in zip(left, colors):
            ax.plot(rows[x], rows[col], marker="o", color=color, label=col)
        twin = ax.twinx() if right else None
        for col, color in zip(right, colors[len(left):]):
            twin.plot(rows[x], rows[col], marker="s", ls="--", color=color, label=col)
        if logx is True or (not isinstance(logx, bool) and name in logx):
            ax.set_xscale("log")
            ax.set_xticks(rows[x].to_numpy(), [_tick(v) for v in rows[x]])
            ax.minorticks_off()
        ax.set(xlabel=str(name), ylabel=left[0] if len(left) == 1 else "")
        if twin is not None:
            twin.set_ylabel(right[0] if len(right) == 1 else "")
            twin.grid(False)
    handles = {h.get_label(): h for a in fig.axes for h in a.get_lines() if not h.get_label().startswith("_")}
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize="small",
               bbox_to_anchor=(0.5, 1.0))
    return fig


def _tick(v: float) -> str:
    """A short tick label: powers of ten far from 1 as 10^k, anything else as %g."""
    k = np.log10(v) if v > 0 else 0.5
    return f"$10^{{{int(round(k))}}}$" if abs(k - round(k)) < 1e-9 and abs(k) >= 3 else f"{v:g}"


@styled
def value_heatmap(table: pd.DataFrame, index: str, columns: str, value: str, fmt: str = ".0f",
                  percent: bool = True, ax: plt.Axes | None = None) -> plt.Figure:
    """A heatmap of ``value`` over two swept parameters (e.g. RND's attack failure rate over the defender's nu
    and the attacker's mu)."""
    pivot = table.pivot_table(index=index, columns=columns, values=value, aggfunc="mean")
    fig, ax = _axes(ax, (1.1 * pivot.shape[1] + 2.5, 0.6 * pivot.shape[0] + 1.5))
    scale = 100 if percent else 1
    sns.heatmap(scale * pivot, annot=True, fmt=fmt, cmap="rocket_r", ax=ax,
                cbar_kws={"label": f"{value}{' (%)' if percent else ''}"}, vmin=0, vmax=scale if percent else None)
    ax.invert_yaxis()
    return fig


# ------------------------------------------------------------------------------------------------ UniG
@styled
def unification_loss_curve(losses: Mapping[str, Sequence[float]], ax: plt.Axes | None = None) -> plt.Figure:
    """UniG Fig. 2a: the unification loss (eq. 4) before each optimization step of A and after the last."""
    fig, ax = _axes(ax, (5.5, 3.6))
    for label, values in losses.items():
        ax.plot(range(len(values)), values, marker="o", ms=3, label=label)
    ax.set(xlabel="optimization step of A", ylabel="unification loss")
    ax.legend(fontsize="small")
    return fig


@styled
def perturbation_rows(deltas: Mapping[str, torch.Tensor], eps: float,
                      notes: Mapping[str, str] | None = None) -> plt.Figure:
    """UniG Fig. 3a: one row of perturbations per model (the same images in every row), scaled by eps."""
    n = len(next(iter(deltas.values())))
    fig, axes = image_rows({label: 0.5 + 0.5 * delta / eps for label, delta in deltas.items()}, cmap="coolwarm",
                           cell=(1.3, 1.5 + 0.3 / len(deltas)), fontsize=9)
    for r, label in enumerate(deltas):
        if notes and label in notes:
            axes[r, n - 1].yaxis.set_label_position("right")
            axes[r, n - 1].set_ylabel(notes[label], fontsize=8, rotation=0, ha="left", va="center")
    fig.tight_layout()
    return fig


@styled
def matrix_values(a: torch.Tensor, features: int = 64, ax: plt.Axes | None = None) -> plt.Figure:
    """UniG Fig. 3b: the first ``features`` entries of A, one row per input of a query batch."""
    fig, ax = _axes(ax, (8, 0.35 * len(a) + 1.2))
    sns.heatmap(a[:, :features].cpu().numpy(), cmap="vlag", center=1.0, ax=ax, cbar_kws={"label": "A"},
                xticklabels=8, yticklabels=True)
    ax.set(xlabel="feature", ylabel="input in the batch")
    return fig


# ------------------------------------------------------------------------------------------------- GCM
@styled
def gradient_signs(grads: Mapping[str, torch.Tensor]) -> plt.Figure:
    """GCM Fig. 4: the sign of the input gradient (white +, black -, gray 0), one row per model."""
    fig, _ = image_rows({label: 0.5 + 0.5 * torch.sign(g) for label, g in grads.items()}, fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- generic
@styled
def lines(table: pd.DataFrame, x: str, y: str, hue: str, logx: bool = False, percent: bool = True,
          ax: plt.Axes | None = None) -> plt.Figure:
    """``y`` against ``x``, one line per ``hue``; repeated rows (seeds) give the mean and a +-1 std band."""
    fig, ax = _axes(ax, (6, 4))
    data = table.assign(**{y: table[y] * (100 if percent else 1)})
    sns.lineplot(data=data, x=x, y=y, hue=hue, marker="o", errorbar="sd", ax=ax)
    if logx:  # symlog: linear up to the smallest positive value, so that x = 0 (no defense) can be shown
        ax.set_xscale("symlog", linthresh=float(table[x][table[x] > 0].min()))
        if (table[x] >= 0).all():
            ax.set_xlim(left=0, right=float(table[x].max()) * 1.3)
    ax.set(ylabel=f"{y}{' (%)' if percent else ''}")
    return fig


@styled
def bars(table: pd.DataFrame, x: str, values: Sequence[str], percent: bool = True,
         ax: plt.Axes | None = None) -> plt.Figure:
    """Grouped bars: for each ``x`` (e.g. EOT's M) one bar per column of ``values`` (e.g. observed and
    re-evaluated robust accuracy); repeated rows (seeds) give the mean with a +-1 std error bar."""
    fig, ax = _axes(ax, (6, 4))
    long = table.melt(id_vars=[x], value_vars=list(values), var_name="measure", value_name="value")
    long["value"] *= 100 if percent else 1
    sns.barplot(data=long, x=x, y="value", hue="measure", errorbar="sd", ax=ax)
    ax.set(ylabel="%" if percent else "")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.0f" if percent else "%.3g", fontsize="small", label_type="center")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title=None, frameon=False)
    return fig


# -------------------------------------------------------------------------------------------- evaluate
@styled
def worst_case(images: pd.DataFrame, labels: Sequence[str], budget: int, final: float,
               ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy after every query for each attack of an evaluation (as the attacker observed it, from
    the per-image table's ``"<attack>: query"`` columns), the per-image worst case over all of them (black), and
    the final worst case (re-evaluated where the defense needs it) as a point at the budget."""
    fig, ax = _axes(ax, (6.5, 4))
    q = np.arange(1, budget + 1)
    firsts = np.stack([images[f"{label}: query"].to_numpy() for label in labels])
    for first, label, color in zip(firsts, labels, sns.color_palette("tab10" if len(labels) <= 10 else "tab20",
                                                                     len(labels))):
        ax.plot(q, 100 * robust_by_query(first, q), color=color, lw=1.2, label=label)
    ax.plot(q, 100 * robust_by_query(earliest(firsts), q), color="k", lw=2.2, label="worst case (per image)")
    ax.scatter([budget], [100 * final], color="k", marker="D", zorder=5, label=f"final worst case {100 * final:.1f}%")
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    return fig



# -------------------------------------------------------------------------------------------- leaderboard
@styled
def leaderboard(board: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """A worst-case leaderboard (``workbench.leaderboard``), one row per defense in its order (most robust at the
    top): the per-image worst case at each budget as the attackers observed it (dots, lightest first), the final
    re-evaluated worst case (black diamond), the clean accuracy (grey bar) and, at the right, the attack that
    broke the most images."""
    budgets = sorted(int(c.split("@")[1]) for c in board.columns if c.startswith("worst@"))
    fig, ax = _axes(ax, (7.5, 0.42 * len(board) + 1.2))
    rows = np.arange(len(board))[::-1]
    ax.barh(rows, 100 * board["clean acc"], color="0.88", height=0.7, label="clean accuracy")
    for budget, color in zip(budgets, sns.color_palette("Blues", len(budgets) + 1)[1:]):
        ax.scatter(100 * board[f"worst@{budget}"], rows, color=color, s=28, zorder=3, label=f"worst case @{budget}")
    ax.scatter(100 * board["final"], rows, color="k", marker="D", s=30, zorder=4, label="final (re-evaluated)")
    for row, attack in zip(rows, board["worst attack"]):
        ax.text(101, row, attack, va="center", fontsize="small", color="0.3")
    ax.set_yticks(rows, board["defense"])
    ax.set(xlim=(0, 100), xlabel="robust accuracy (%)", ylim=(-0.6, len(board) - 0.4))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.16, 1), frameon=False)
    return fig
