"""Figures of tables: heatmaps, budget curves and bars of recorded grids, sweeps, cost against robustness and the
leaderboard."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from workbench.metrics import budget_columns, seed_interval
from workbench.plots.style import _axes, styled


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
    columns = [c for c in budget_columns(table.columns) if table[c].notna().any()]
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
    robust = robust or budget_columns(table.columns)[-1]
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


@styled
def bars(table: pd.DataFrame, x: str, values: Sequence[str], percent: bool = True,
         ax: plt.Axes | None = None) -> plt.Figure:
    """Grouped bars: for each ``x`` (e.g. EOT's M) one bar per column of ``values`` (e.g. observed and
    re-evaluated robust accuracy); repeated rows (seeds) give the mean with its 95% Student-t interval over them
    (``metrics.seed_interval``)."""
    fig, ax = _axes(ax, (6, 4))
    long = table.melt(id_vars=[x], value_vars=list(values), var_name="measure", value_name="value")
    long["value"] *= 100 if percent else 1
    sns.barplot(data=long, x=x, y="value", hue="measure", errorbar=_seed_interval, ax=ax)
    ax.set(ylabel="%" if percent else "")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.0f" if percent else "%.3g", fontsize="small", label_type="center")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title=None, frameon=False)
    return fig


def _seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval over seeds of a bar's values (in display units; NaN for one seed)."""
    _, lo, hi = seed_interval(list(values), clip=False)
    return lo, hi


# -------------------------------------------------------------------------------------------- leaderboard
@styled
def leaderboard(board: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """A worst-case leaderboard (``workbench.leaderboard``), one row per defense in its order (most robust at the
    top): the per-image worst case at each budget as the attackers observed it (dots, lightest first), the final
    re-evaluated worst case (black diamond) with its 95% interval over the images, the clean accuracy (grey bar),
    the tie groups (``rank``: defenses whose intervals overlap share a rank and a band) and, at the right, the
    attack that broke the most images."""
    budgets = sorted(int(c.split("@")[1]) for c in budget_columns(board.columns, "worst@"))
    fig, ax = _axes(ax, (7.5, 0.42 * len(board) + 1.2))
    rows = np.arange(len(board))[::-1]
    for group, (rank, members) in enumerate(board.groupby("rank", sort=False)):
        if group % 2:
            at = rows[members.index.to_numpy()]
            ax.axhspan(at.min() - 0.5, at.max() + 0.5, color="0.95", zorder=0)
    ax.barh(rows, 100 * board["clean acc"], color="0.88", height=0.7, label="clean accuracy")
    for budget, color in zip(budgets, sns.color_palette("Blues", len(budgets) + 1)[1:]):
        ax.scatter(100 * board[f"worst@{budget}"], rows, color=color, s=28, zorder=3, label=f"worst case @{budget}")
    error = [100 * (board["final"] - board["final lo"]), 100 * (board["final hi"] - board["final"])]
    ax.errorbar(100 * board["final"], rows, xerr=error, color="k", fmt="D", ms=5, capsize=3, zorder=4,
                label="final (re-evaluated), 95% interval")
    for row, attack in zip(rows, board["worst attack"]):
        ax.text(101, row, attack, va="center", fontsize="small", color="0.3")
    ties = board.groupby("rank")["rank"].transform("size") > 1
    ax.set_yticks(rows, [f"{r}{'=' if t else ''}  {d}" for r, t, d in zip(board["rank"], ties, board["defense"])])
    ax.set(xlim=(0, 100), xlabel="robust accuracy (%)", ylim=(-0.6, len(board) - 0.4),
           title="rank: defenses whose 95% intervals overlap share one (=)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.16, 1), frameon=False)
    return fig


def with_intervals(table: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """``table`` for display (only ``columns``, in their order, where given): every accuracy column ``c`` that has
    ``"c lo"`` and ``"c hi"`` beside it (``metrics.with_intervals``) as one text column "value [lo, hi]"."""
    if columns is not None:
        table = table[[b for c in columns for b in (c, f"{c} lo", f"{c} hi") if b in table.columns]]
    out = table.copy()
    for c in [c for c in table.columns if f"{c} lo" in table.columns and f"{c} hi" in table.columns]:
        out[c] = [f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if v == v else "nan"
                  for v, lo, hi in zip(table[c], table[f"{c} lo"], table[f"{c} hi"])]
        out = out.drop(columns=[f"{c} lo", f"{c} hi"])
    return out
