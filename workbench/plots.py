"""Every figure as a function (data in, matplotlib figure out) and the one helper that saves figures.

``savefig(fig, "01_robust_accuracy")`` writes ``figures/01_robust_accuracy.png`` (or under ``$WORKBENCH_FIGURES``)
atomically and deterministically: fixed DPI, no timestamp or software tag in the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from workbench import paths
from workbench.attacks.base import AttackResult
from workbench.defenses.aaa import CURVES, target_margin
from workbench.metrics import robust_accuracy_curve

sns.set_theme(style="whitegrid", context="notebook")


def savefig(fig: plt.Figure, name: str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` (name: notebook number first, e.g. ``01_robust_accuracy``)."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"name must be a bare figure name like '01_robust_accuracy', got {name!r}")
    target = paths.figures_dir() / f"{name}.png"
    paths.atomic_write(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                                                       metadata={"Software": None}))
    return target


def robust_accuracy_vs_queries(results: Mapping[str, AttackResult], ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy after every query, one line per run (all read from one run each)."""
    fig, ax = _axes(ax, (6, 4))
    for label, result in results.items():
        curve = robust_accuracy_curve(result)
        ax.plot(list(curve), [100 * v for v in curve.values()], label=label)
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102))
    ax.legend()
    return fig


def margin_trajectory(observed: torch.Tensor, reference: torch.Tensor | None = None, title: str = "",
                      start: int = 1, ax: plt.Axes | None = None) -> plt.Figure:
    """AAA Fig. 2 for one image: the margin at the attacker's accepted point after every query (the running
    minimum of what it observed, from query ``start`` on; Square accepts its initialization, query 2,
    unconditionally), and, for analysis, the undefended model's margin at that same point. Every observed query
    is drawn faintly behind."""
    fig, ax = _axes(ax, (7, 3.5))
    seen = observed.cpu().numpy()
    n = int((~np.isnan(seen)).sum())
    q = np.arange(1, n + 1)
    ax.plot(q, seen[:n], color="tab:blue", lw=0.5, alpha=0.25, label="every query (observed)")
    best = np.arange(n)
    for i in range(start, n):  # index of the accepted point after query i + 1
        best[i] = i if i == start or seen[i] < seen[best[i - 1]] else best[i - 1]
    ax.plot(q, seen[best], color="tab:blue", lw=1.5, label="accepted, as the attacker sees it")
    if reference is not None:
        ax.plot(q, reference.cpu().numpy()[best], color="tab:orange", lw=1.5, label="accepted, undefended margin")
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set(xlabel="query", ylabel="margin loss", title=title)
    ax.legend(fontsize=8)
    return fig


def aaa_target_curves(tau: float = 6.0, alphas: Mapping[str, float] | None = None, m_max: float = 24.0,
                      ax: plt.Axes | None = None) -> plt.Figure:
    """AAA Fig. 1b: the original margin and AAA's linear and sine target margins as the attack lowers it."""
    fig, ax = _axes(ax, (6, 4))
    m = torch.linspace(1e-3, m_max, 2000)
    ax.plot(m, m, label="original", color="tab:blue")
    for curve, color in zip(CURVES, ("tab:orange", "tab:green")):
        alpha = (alphas or {}).get(curve)
        ax.plot(m, target_margin(m, curve, tau, alpha), label=f"AAA-{curve}", color=color)
    ax.set(xlabel="original margin (decreases as the attack goes on)", ylabel="margin shown to the attacker")
    ax.invert_xaxis()
    ax.legend()
    return fig


def _axes(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def adversarial_examples(x: torch.Tensor, x_adv: torch.Tensor, titles: list[str] | None = None) -> plt.Figure:
    """Clean images, adversarial images and their perturbations (scaled to the largest one), one column each."""
    n = len(x)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5), squeeze=False)
    delta = (x_adv - x).cpu()
    scale = delta.abs().max().clamp_min(1e-12)
    rows = (x.cpu(), x_adv.cpu(), 0.5 + 0.5 * delta / scale)
    for r, (images, label) in enumerate(zip(rows, ("clean", "adversarial", "perturbation"))):
        for i in range(n):
            img = images[i].permute(1, 2, 0).squeeze(-1).numpy()
            axes[r, i].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            axes[r, i].set_xticks([]), axes[r, i].set_yticks([])
        axes[r, 0].set_ylabel(label)
    for i, title in enumerate(titles or []):
        axes[0, i].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ grid results
def robustness_heatmap(table: pd.DataFrame, value: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Defense x attack heatmap of ``value`` (a robust-accuracy column of an experiment table; the mean over
    seeds where there are several), in percent."""
    fig, ax = _axes(ax, (1.2 * table["attack"].nunique() + 2.5, 0.45 * table["defense"].nunique() + 1.5))
    pivot = table.pivot_table(index="defense", columns="attack", values=value, aggfunc="mean", sort=False)
    sns.heatmap(100 * pivot, annot=True, fmt=".0f", cmap="rocket_r", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": f"{value} (%)"})
    ax.set(xlabel="attack", ylabel="defense")
    return fig


def robustness_vs_budget(table: pd.DataFrame, attack: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Robust accuracy at each budget of the table (the ``robust@b`` columns), one line per defense."""
    fig, ax = _axes(ax, (6, 4))
    columns = [c for c in table.columns if c.startswith("robust@") and table[c].notna().any()]
    budgets = [int(c.split("@")[1]) for c in columns]
    rows = table[table["attack"] == attack].groupby("defense", sort=False)[columns].mean()
    for defense, row in rows.iterrows():
        ax.plot(budgets, 100 * row.to_numpy(), marker="o", label=defense)
    ax.set(xscale="log", xlabel="queries per image", ylabel="robust accuracy (%)", ylim=(-2, 102),
           title=f"{attack}")
    ax.legend(fontsize="small", ncol=2)
    return fig


def cost_vs_robustness(table: pd.DataFrame, cost: str = "logit diff", robust: str | None = None,
                       ax: plt.Axes | None = None) -> plt.Figure:
    """The trade-off of UniG Fig. 1b: each defense's clean-side cost (``"logit diff"`` or ``"ECE"``) against
    its robust accuracy (default: the last ``robust@`` column), averaged over the table's attacks and seeds."""
    fig, ax = _axes(ax, (6, 4))
    robust = robust or [c for c in table.columns if c.startswith("robust@")][-1]
    points = table.groupby("defense", sort=False)[[cost, robust]].mean()
    ax.scatter(points[cost], 100 * points[robust])
    for defense, (x, y) in points.iterrows():
        ax.annotate(defense, (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set(xlabel=cost, ylabel=f"{robust} (%)")
    return fig
