"""Every figure as a function (data in, matplotlib figure out) and the one helper that saves figures, by what
they draw: ``curves``, ``images`` and ``tables`` (of recorded grids), with the style and ``savefig`` in ``style``.

``savefig(fig, "01_robust_accuracy")`` writes ``figures/01_robust_accuracy.png`` (or under ``$WORKBENCH_FIGURES``)
atomically and deterministically: fixed DPI, no timestamp or software tag in the PNG metadata.

Importing this module changes no global style. Every figure function draws inside ``style()`` (seaborn's
whitegrid theme at notebook scale, as a context), so a figure looks the same whoever calls it, and the caller's
own matplotlib settings are left as they were; ``with plots.style():`` gives your own figures the same look.
"""

from workbench.plots.curves import (aaa_target_curves, confidence_by_rank, lines, margin_trajectories,
                                    margin_trajectory, margins_vs_tau, reliability_diagram, robust_accuracy_vs_queries,
                                    trajectories_plotly, unification_loss_curve, worst_case)
from workbench.plots.images import (adversarial_examples, gradient_signs, image_rows, matrix_values, perturbation_rows,
                                    query_snapshots, to_image)
from workbench.plots.style import STYLE, savefig, style, styled
from workbench.plots.tables import (bars, budget_curves, cost_vs_robustness, leaderboard, robustness_heatmap,
                                    robustness_vs_budget, sweep_panels, value_heatmap, with_intervals)

__all__ = ["STYLE", "aaa_target_curves", "adversarial_examples", "bars", "budget_curves", "confidence_by_rank",
           "cost_vs_robustness", "gradient_signs", "image_rows", "leaderboard", "lines", "margin_trajectories",
           "margin_trajectory", "margins_vs_tau", "matrix_values", "perturbation_rows", "query_snapshots",
           "reliability_diagram", "robust_accuracy_vs_queries", "robustness_heatmap", "robustness_vs_budget",
           "savefig", "style", "styled", "sweep_panels", "to_image", "trajectories_plotly", "unification_loss_curve",
           "value_heatmap", "with_intervals", "worst_case"]
