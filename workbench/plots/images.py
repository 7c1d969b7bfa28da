"""Figures of images: clean and adversarial images, perturbations, an attack's accepted squares, matrices and
gradient signs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from workbench.metrics import accepted_boxes, accepted_points
from workbench.plots.style import _axes, styled


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
    boxes = accepted_boxes(kept.cpu(), best)
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


def to_image(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor as an array imshow takes: (H, W) for one channel, (H, W, C) otherwise, in [0, 1]."""
    return image.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()


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
