"""The pieces behind the notebooks' figures: kept queries, accepted points, similarity and calibration bins,
and the figure helper's deterministic, atomic output."""

from __future__ import annotations

import subprocess
import sys

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from workbench import metrics, plots
from workbench.attacks.square import Square
from workbench.attacks.whitebox import input_gradient
from workbench.defenses.aaa import target_curves
from workbench.oracle import Oracle
from tests.toy import Recorder, linear_model


def test_the_oracle_keeps_exactly_the_queried_images_of_the_first_k():
    model = Recorder(linear_model(side=4))
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(5, dtype=torch.long)
    oracle = Oracle(model, x, y, budget=20, record=True, keep_images=2)
    Square(eps=0.1, seed=0, progress=False).run(oracle)
    sent = torch.cat(model.calls)
    for i in range(2):
        n = int(oracle.queries[i])
        assert torch.isnan(oracle.kept[i, n:]).all()
        for q in range(n):  # every kept query is one of the batches the model really saw
            assert (sent == oracle.kept[i, q]).flatten(1).all(1).any()
    assert oracle.kept.shape == (2, 20, 1, 4, 4)
    with pytest.raises(ValueError, match="keep_images=2 needs record=True"):
        Oracle(model, x, y, budget=5, keep_images=2)


def test_accepted_points_are_the_running_minimum_from_start():
    seen = torch.tensor([5.0, 6.0, 4.0, 4.5, 3.0, float("nan")])
    assert metrics.accepted_points(seen, start=1).tolist() == [0, 1, 2, 2, 4]
    assert metrics.accepted_points(seen, start=0).tolist() == [0, 0, 2, 2, 4]
    assert metrics.accepted_points(seen, start=2).tolist() == [0, 1, 2, 2, 4]
    assert metrics.accepted_points(torch.tensor([5.0, 6.0, 7.0, 6.5]), start=2).tolist() == [0, 1, 2, 3]


def test_mean_pairwise_cosine():
    v = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert metrics.mean_pairwise_cosine(torch.stack([v[0], 2 * v[0], 0.5 * v[0]])) == pytest.approx(1.0)
    assert metrics.mean_pairwise_cosine(torch.stack([v[0], -v[0]])) == pytest.approx(-1.0)
    assert metrics.mean_pairwise_cosine(torch.eye(4)) == pytest.approx(0.0)
    manual = np.mean([torch.nn.functional.cosine_similarity(v[i].flatten(), v[j].flatten(), dim=0).item()
                      for i in range(3) for j in range(3) if i != j])
    assert metrics.mean_pairwise_cosine(v) == pytest.approx(manual, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mean_pairwise_cosine(v[:1])


def test_confidence_by_rank_sorts_then_bins():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 0, 0, 1])
    order = probs[torch.arange(4), y]  # true-class probability: 0.9, 0.2, 0.6, 0.7
    frame = metrics.confidence_by_rank(probs, y, order, bins=2)
    # sorted: rows 1 (0.8 conf, wrong), 2 (0.6, right) | 3 (0.7, right), 0 (0.9, right)
    assert frame["confidence"].tolist() == pytest.approx([0.7, 0.8])
    assert frame["accuracy"].tolist() == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="bins=5"):
        metrics.confidence_by_rank(probs, y, order, bins=5)


def test_changed_box_and_square_snapshots():
    a = torch.zeros(1, 8, 8)
    b = a.clone()
    b[:, 2:5, 3:7] = 0.3
    assert metrics.changed_box(a, b) == (2, 3, 3, 4)
    assert metrics.changed_box(a, a) is None
    kept = torch.stack([a, a + 0.1, b + 0.1])  # query 2 changes everything (no box), query 3 one square
    boxes = metrics.accepted_boxes(kept, np.array([0, 1, 2]))
    assert boxes == [(2, (2, 3, 3, 4))]
    fig = plots.query_snapshots(kept, torch.tensor([3.0, 2.0, 1.0]), [1, 3], eps=0.3)
    assert len(fig.axes) == 4 and len(fig.axes[3].patches) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="queries must hold values in 1..3"):
        plots.query_snapshots(kept, torch.tensor([3.0, 2.0, 1.0]), [7], eps=0.3)


def test_input_gradient_matches_autograd_and_bpda_restores_it():
    from workbench.defenses.gcm import GCM

    model = linear_model(side=4)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    y = torch.tensor([0, 1, 2])
    g = input_gradient(model, x, y)
    xr = x.clone().requires_grad_(True)
    expected, = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y, reduction="sum"), xr)
    assert torch.allclose(g, expected)
    gcm = GCM(model)
    assert not torch.allclose(input_gradient(gcm, x, y), expected, rtol=1e-2)
    assert torch.allclose(input_gradient(gcm, x, y, bpda=gcm.concealment_name), expected, atol=1e-6)


def test_savefig_is_deterministic_and_rejects_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FIGURES", str(tmp_path))
    fig = plots.aaa_target_curves(*target_curves())
    first = plots.savefig(fig, "99_check").read_bytes()
    second = plots.savefig(fig, "99_check").read_bytes()
    assert first == second and first[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
    for bad in ["", "a/b", "x.png"]:
        with pytest.raises(ValueError, match="name must be"):
            plots.savefig(fig, bad)
    plt.close(fig)


def test_figures_readme_lists_exactly_the_committed_figures():
    from pathlib import Path
    import re

    folder = Path(__file__).resolve().parents[1] / "figures"
    listed = set(re.findall(r"^\| `([0-9]{2}_[a-z0-9_]+\.png)` \|", (folder / "README.md").read_text(), re.M))
    committed = {p.name for p in folder.glob("[0-9][0-9]_*.png")}
    assert listed == committed, f"only listed: {sorted(listed - committed)}; only on disk: {sorted(committed - listed)}"
    notebooks = {p.name[:2] for p in (folder.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert {name[:2] for name in committed} == notebooks  # every notebook has its figures committed


def test_fast_mode_never_writes_the_committed_figures(monkeypatch):
    """Whatever starts the kernel (JupyterLab with WORKBENCH_FAST=1 included), fast-mode figures go to _fast/."""
    from workbench import paths

    monkeypatch.delenv("WORKBENCH_FIGURES", raising=False)
    monkeypatch.setenv("WORKBENCH_FAST", "1")
    assert paths.figures_dir().name == "_fast"
    monkeypatch.setenv("WORKBENCH_FAST", "0")
    assert paths.figures_dir().name == "figures"


def test_target_curves_draw_only_the_curves_asked_for():
    fig = plots.aaa_target_curves(*target_curves(curves=("linear",)))
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["original", "AAA-linear"]
    plt.close(fig)
    with pytest.raises(ValueError, match="curves"):
        target_curves(curves=("cosine",))


def test_plotly_hover_labels_keep_the_whole_trace_name():
    observed = torch.linspace(5, 0, 20).repeat(2, 1)
    fig = plots.trajectories_plotly(observed, observed - 1, [0, 1], start=2)
    names = [trace.name for trace in fig.data]
    assert names == ["image 0: observed", "image 0: undefended", "image 1: observed", "image 1: undefended"]
    assert fig.layout.hoverlabel.namelength == -1  # plotly's default (15) cuts "image 0: undefended"


def test_margins_vs_tau_draws_one_panel_per_model_with_the_intervals():
    margins = {"a": torch.tensor([0.5, 2.0, 4.0, 5.0]), "b": torch.tensor([1.0, 13.0, 20.0])}
    fig = plots.margins_vs_tau(margins, tau=6.0)
    assert len(fig.axes) == 2
    edges = [line.get_xdata()[0] for line in fig.axes[1].lines if line.get_linestyle() == "-"]
    attractors = [line.get_xdata()[0] for line in fig.axes[1].lines if line.get_linestyle() == "--"]
    assert edges[:4] == [0, 6, 12, 18] and attractors[:3] == [3, 9, 15]
    assert fig.axes[0].get_title() == "a: median 3.0"


def test_figures_draw_in_the_workbench_style_and_leave_the_caller_s_settings_alone():
    """Importing ``plots`` and drawing a figure change no global matplotlib setting; inside the figure the
    workbench's style holds (seaborn's whitegrid: white axes with a grid)."""
    code = ("import matplotlib as mpl; mpl.use('Agg'); before = dict(mpl.rcParams); import torch; "
            "from workbench import plots; fig = plots.margin_trajectory(torch.arange(5.0)); "
            "ax = fig.axes[0]; changed = [k for k in before if before[k] != mpl.rcParams[k]]; "
            "print(changed, ax.xaxis._major_tick_kw.get('gridOn'), mpl.colors.to_hex(ax.get_facecolor()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "[]", f"global settings changed: {out}"
    assert out[-2:] == ["True", "#ffffff"]


def test_the_style_keeps_interactive_mode_a_backend_turned_on_inside_it():
    """In a fresh Jupyter kernel the first figure resolves the backend, and the inline backend turns interactive
    mode on; if that happens inside ``plots.style()`` (a widget's first picture), leaving the block must not turn
    it off again, or no later figure of the notebook is shown (the site's pages lost their figures that way).
    The style itself is still undone."""
    before_grid, before = mpl.rcParams["axes.grid"], plt.isinteractive()
    try:
        plt.interactive(False)
        with plots.style():
            assert mpl.rcParams["axes.grid"] is True
            plt.interactive(True)  # what the inline backend does when it is resolved
        assert plt.isinteractive() and mpl.rcParams["axes.grid"] == before_grid
    finally:
        plt.interactive(before)


def test_a_saved_figure_is_drawn_in_the_style_it_was_made_in(tmp_path):
    """Tick locators and layout run when the figure is drawn, i.e. at ``savefig``: a saved figure is byte for byte
    the one a caller with the workbench style set globally gets (the committed figures were made that way before
    the style became a context; drawn outside it, the ticks of 02_margins_linear changed)."""
    code = ("import sys, matplotlib; matplotlib.use('Agg'); import os, torch, seaborn as sns; "
            "os.environ['WORKBENCH_FIGURES'] = sys.argv[2]; from workbench import plots; "
            "sys.argv[1] == 'global' and sns.set_theme(**plots.STYLE); g = torch.Generator().manual_seed(0); "
            "obs, ref = torch.rand(2, 300, generator=g) * 17 + 1, torch.rand(2, 300, generator=g) * 12; "
            "plots.savefig(plots.margin_trajectories(obs, ref, [0, 1], start=2, titles=['a', 'b']), '02_x')")
    for mode in ("global", "context"):
        subprocess.run([sys.executable, "-c", code, mode, str(tmp_path / mode)], check=True)
    assert (tmp_path / "global" / "02_x.png").read_bytes() == (tmp_path / "context" / "02_x.png").read_bytes()
