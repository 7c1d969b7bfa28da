"""Figures of curves: robust accuracy against queries, margins along an attack, AAA's target curves, the worst case
over attacks, calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from workbench.results import Result
from workbench.metrics import (accepted_points, earliest, ece, interval, reliability, robust_accuracy_curve,
                               robust_by_query)
from workbench.plots.style import _axes, styled


@styled
def robust_accuracy_vs_queries(results: Mapping[str, Result], ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy after every query, one line per run (all read from one run each), with its 95% Wilson
    interval over the images as a band (read at 40 log-spaced budgets)."""
    fig, ax = _axes(ax, (6, 4))
    for label, result in results.items():
        curve = robust_accuracy_curve(result)
        line, = ax.plot(list(curve), [100 * v for v in curve.values()], label=label)
        at = np.unique(np.geomspace(1, result.budget, 40).astype(int))
        bounds = np.array([interval(curve[int(q)], len(result.first_success)) for q in at])
        ax.fill_between(at, 100 * bounds[:, 0], 100 * bounds[:, 1], color=line.get_color(), alpha=0.15, lw=0)
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


# ------------------------------------------------------------------------------------------- generic
@styled
def lines(table: pd.DataFrame, x: str, y: str, hue: str, logx: bool = False, percent: bool = True,
          band: tuple[str, str] | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """``y`` against ``x``, one line per ``hue``; repeated rows (seeds) give the mean and a +-1 std band, or
    ``band``: the columns (low, high) of each point's interval (e.g. ``metrics.interval``'s), drawn around it."""
    fig, ax = _axes(ax, (6, 4))
    scale = 100 if percent else 1
    data = table.assign(**{y: table[y] * scale})
    if band is None:
        sns.lineplot(data=data, x=x, y=y, hue=hue, marker="o", errorbar="sd", ax=ax)
    else:
        levels = list(dict.fromkeys(data[hue]))
        for level, color in zip(levels, sns.color_palette(n_colors=len(levels))):
            part = data[data[hue] == level].sort_values(x)
            ax.plot(part[x], part[y], marker="o", color=color, label=level)
            ax.fill_between(part[x], part[band[0]] * scale, part[band[1]] * scale, color=color, alpha=0.2, lw=0)
        ax.legend(title=hue)
        ax.set(xlabel=x)
    if logx:  # symlog: linear up to the smallest positive value, so that x = 0 (no defense) can be shown
        ax.set_xscale("symlog", linthresh=float(table[x][table[x] > 0].min()))
        if (table[x] >= 0).all():
            ax.set_xlim(left=0, right=float(table[x].max()) * 1.3)
    ax.set(ylabel=f"{y}{' (%)' if percent else ''}")
    return fig


# -------------------------------------------------------------------------------------------- evaluate
@styled
def worst_case(images: pd.DataFrame, labels: Sequence[str], budget: int, final: float,
               interval: tuple[float, float], ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy after every query for the attacks ``labels`` of an evaluation (as the attacker observed it,
    from the per-image table's ``"<attack>: query"`` columns), the per-image worst case over every run of the table
    (black; restarts included), and the final worst case (re-evaluated where the defense needs it) as a point at
    the budget with its 95% ``interval``."""
    fig, ax = _axes(ax, (6.5, 4))
    q = np.arange(1, budget + 1)
    runs = np.stack([images[c].to_numpy() for c in images.columns if c.endswith(": query")])
    firsts = np.stack([images[f"{label}: query"].to_numpy() for label in labels])
    for first, label, color in zip(firsts, labels, sns.color_palette("tab10" if len(labels) <= 10 else "tab20",
                                                                     len(labels))):
        ax.plot(q, 100 * robust_by_query(first, q), color=color, lw=1.2, label=label)
    ax.plot(q, 100 * robust_by_query(earliest(runs), q), color="k", lw=2.2, label="worst case (per image)")
    ax.errorbar([budget], [100 * final], yerr=[[100 * (final - interval[0])], [100 * (interval[1] - final)]],
                color="k", marker="D", capsize=4, zorder=5,
                label=f"final worst case {100 * final:.1f}% [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]")
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    return fig
