"""Interactive panels for the notebooks: ipywidgets built on ``plots`` and the library, one line each.

Every builder returns a :class:`Panel` and displays nothing on import or construction (the notebook shows it by
leaving it as the cell's value). A panel holds its ``controls`` (name -> widget), the latest ``result`` (a dict
of the numbers behind the picture) and a ``cache`` of past results, so moving a slider back costs nothing.
Sliders that trigger an attack use ``continuous_update=False`` or a run button.

Builders:
    aaa_explorer(model, x, y)          AAA's target curve and its real output for tau, alpha, beta (AAA Fig. 1b)
    attack_replay(oracle, image)       slide over the queries of a recorded attack: image, perturbation, margins
    unig_explorer(model, x, y)         UniG for delta, p, alpha and batch size: accuracy, loss curve, A
    noise_explorer(model, x, y)        RND / SND with sigma and EOT's M against an attack, observed vs re-evaluated
    eps_explorer(model, x, y)          an attack's adversarial examples and robust accuracy as eps grows

Example::

    panel = widgets.eps_explorer(model, x[:20], y[:20])
    panel                                   # shows it in a notebook
    panel.controls["eps"].value = 0.2; panel.controls["run"].click(); panel.result["robust accuracy"]
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
from IPython.display import display

from workbench import checks, metrics, plots, runs, setting
from workbench.attacks import registry as attacks
from workbench.defenses.aaa import AAA, AAA_ALPHA, AAA_TAU, target_curves, target_margin
from workbench.defenses.noise import InputNoise
from workbench.defenses.unig import UniG
from workbench.losses import top2_margin
from workbench.probes import IMAGES
from workbench.results import Result
from workbench.threat import model_device


class Panel(W.VBox):
    """Controls above an output area. ``compute(values) -> result`` runs when a control changes (``auto``) or
    the run button is clicked; ``draw(result)`` returns a matplotlib figure (or None) shown in the output.
    ``rows``: the control names of each row (default: all in one wrapping row).

    A panel with a run button disables it while it computes, shows the computation's progress bars inside its
    output area (not in JupyterLab's log console) and says in its status line what it is doing and when it is
    done; an error is shown in the panel and nothing is cached."""

    def __init__(self, controls: dict[str, W.Widget], compute: Callable[[dict[str, Any]], dict[str, Any]],
                 draw: Callable[[dict[str, Any]], plt.Figure | None], *, auto: bool,
                 rows: list[list[str]] | None = None):
        self.controls, self.compute, self.draw = controls, compute, draw
        self.cache: dict[tuple, dict[str, Any]] = {}
        self.result: dict[str, Any] = {}
        self.figure: plt.Figure | None = None
        self.output = W.Output()
        self.status = W.HTML(layout=W.Layout(margin="0 0 0 8px"))
        if auto:
            for widget in controls.values():
                widget.observe(lambda change: self.refresh(), names="value")
        else:
            controls["run"] = W.Button(description="run", button_style="primary", icon="play",
                                       tooltip="run the attack with these settings")
            controls["run"].on_click(lambda button: self.refresh())
            self.status.value = "press <b>run</b> to start"
        rows = rows or [[k for k in controls if k != "run"]]
        if not auto:
            rows[-1] = [*rows[-1], "run"]
        boxes = [W.HBox([controls[k] for k in row], layout=W.Layout(flex_flow="row wrap", align_items="center"))
                 for row in rows]
        super().__init__([*boxes, self.status, self.output])
        if auto:
            self.refresh()

    def values(self) -> dict[str, Any]:
        return {k: w.value for k, w in self.controls.items() if hasattr(w, "value") and k != "run"}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget, plus its current picture as PNG for readers that cannot run widgets (nbconvert's
        static pages: ``workbench.course.site``); JupyterLab shows the widget."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None and self.figure is not None:
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", bbox_inches="tight")
            bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return bundle

    def refresh(self) -> dict[str, Any]:
        """Compute (or take from the cache) the result for the current values and redraw."""
        values = self.values()
        key = tuple(sorted(values.items()))
        done = f"{_settings(values)}: shown from the panel's cache"
        if key not in self.cache:
            start = time.perf_counter()
            result = self._compute(values)
            if result is None:  # failed: the traceback is in the panel, the last picture stays unchanged
                return self.result
            self.cache[key] = result
            done = f"done: {_settings(values)} in {time.perf_counter() - start:.1f} s"
        self.result = self.cache[key]
        self.figure = self.draw(self.result)
        self.output.clear_output(wait=True)
        with self.output:
            if self.figure is not None:
                display(self.figure)
                plt.close(self.figure)  # shown once, in the panel (the inline backend would show it again)
            print(_text(self.result))
        if "run" in self.controls:
            self.status.value = done  # only once the new picture is shown
        return self.result

    def _compute(self, values: dict[str, Any]) -> dict[str, Any] | None:
        button = self.controls.get("run")
        if button is None:
            return self.compute(values)
        button.disabled, button.description = True, "running"
        self.status.value = f"running {_settings(values)} ..."
        self.output.clear_output(wait=True)  # the old picture stays until the progress bars replace it
        result = None
        try:
            with self.output:  # progress bars (tqdm.auto) and any traceback appear inside the panel
                result = self.compute(values)
        finally:
            button.disabled, button.description = False, "run"
        if result is None:
            self.status.value = f"<b>failed</b>: {_settings(values)} (the error is below)"
        return result


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def _text(result: dict[str, Any]) -> str:
    return "   ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()
                      if isinstance(v, (int, float, str)))


def _slider(kind: type, value: float, low: float, high: float, step: float, description: str, live: bool = True):
    return kind(value=value, min=low, max=high, step=step, description=description, continuous_update=live,
                style={"description_width": "initial"}, layout=W.Layout(width="300px"))


# --------------------------------------------------------------------------------------------- AAA
def aaa_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, curve: str = "linear",
                 temperature: float = 1.0) -> Panel:
    """AAA's target margin (Fig. 1b) and what its optimization really outputs on the images ``x`` for tau,
    alpha, beta; reports the 15-bin ECE and the prediction agreement of the defended output."""
    logits = metrics.predict(model, x)
    controls = {
        "curve": W.ToggleButtons(options=["linear", "sine"], value=curve, description="curve"),
        "tau": _slider(W.FloatSlider, AAA_TAU, 0.5, 12.0, 0.5, "tau", live=False),
        "alpha": _slider(W.FloatSlider, AAA_ALPHA[curve], 0.0, 2.0, 0.1, "alpha", live=False),
        "beta": _slider(W.FloatLogSlider, 5.0, -1, 2, 0.25, "beta", live=False),
    }

    def compute(v: dict[str, Any]) -> dict[str, Any]:
        aaa = AAA(model, v["curve"], tau=v["tau"], alpha=v["alpha"], beta=v["beta"], temperature=temperature)
        out = aaa.post_process(logits)
        return {"original": top2_margin(logits), "achieved": top2_margin(out),
                "target": target_margin(top2_margin(logits), v["curve"], v["tau"], v["alpha"]),
                "ECE": metrics.ece(out, y), "ECE undefended": metrics.ece(logits, y),
                "agreement": metrics.agreement(out, logits), **v}

    @plots.styled
    def draw(r: dict[str, Any]) -> plt.Figure:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        plots.aaa_target_curves(*target_curves(r["tau"], {r["curve"]: r["alpha"]}, (r["curve"],)), ax=left)
        left.set_title(f"target curve (AAA-{r['curve']})")
        right.scatter(r["original"], r["achieved"], s=6, label="AAA output")
        right.scatter(r["original"], r["target"], s=3, label="target", alpha=0.5)
        right.set(xlabel="original margin", ylabel="margin of the output", title="on the images")
        right.invert_xaxis()
        right.legend()
        return fig

    return Panel(controls, compute, draw, auto=True, rows=[["curve"], ["tau", "alpha", "beta"]])


# ------------------------------------------------------------------------------------------ replay
def attack_replay(result: Result, image: int = 0, start: int = 2) -> Panel:
    """Slide over the queries of a finished attack recorded with ``record=True, keep_images=k`` (``runs.run``, or
    an Oracle of your own: ``Attack.run`` returns its recordings too): the image the attacker holds, its
    perturbation, and the observed (and undefended) margin with the current query marked. ``start``: the first
    query the attacker accepts unconditionally (2 for Square)."""
    if not isinstance(result, Result):
        raise ValueError(f"result must be the Result of a recorded run (runs.run(..., record=True, keep_images=k)), "
                         f"got {type(result).__name__}")
    if result.kept is None or image >= len(result.kept):
        kept = 0 if result.kept is None else len(result.kept)
        raise ValueError(f"image={image}: the run kept the queries of {kept} images; run it with "
                         f"record=True, keep_images > {image}")
    observed = result.observed[image]
    best = metrics.accepted_points(observed, start)
    kept = result.kept[image].cpu()
    x0 = kept[0]  # query 1 is the clean image
    reference = None if result.reference_margin is None else result.reference_margin[image].cpu().numpy()
    eps = result.threat.eps if result.threat is not None else float((kept[: len(best)] - x0).abs().amax())
    controls = {"query": W.IntSlider(value=1, min=1, max=len(best), description="query")}

    def compute(v: dict[str, Any]) -> dict[str, Any]:
        held = int(best[v["query"] - 1])
        r = {"query": v["query"], "held": held + 1, "margin": float(observed[held]),
             "perturbation linf": float((kept[held] - x0).abs().amax())}
        if reference is not None:
            r["undefended margin"] = float(reference[held])
        return r

    @plots.styled
    def draw(r: dict[str, Any]) -> plt.Figure:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 1, 3]})
        held = kept[r["held"] - 1]
        axes[0].imshow(plots.to_image(held), cmap="gray", vmin=0, vmax=1)
        axes[1].imshow(plots.to_image(0.5 + 0.5 * (held - x0) / eps), cmap="coolwarm", vmin=0, vmax=1)
        for ax, title in zip(axes[:2], ("held image", "perturbation")):
            ax.set(xticks=[], yticks=[], title=title)
        plots.margin_trajectory(observed, None if reference is None else torch.as_tensor(reference),
                                start=start, ax=axes[2])
        axes[2].axvline(r["query"], color="k", lw=0.8)
        fig.tight_layout()
        return fig

    return Panel(controls, compute, draw, auto=True)


# -------------------------------------------------------------------------------------------- UniG
def unig_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> Panel:
    """UniG with delta, p, alpha and the query batch size: clean accuracy and logit difference over ``x`` (sent
    in batches of that size), the unification loss over the steps and the values of A for the first batch."""
    logits = metrics.predict(model, x)
    controls = {
        "delta": _slider(W.FloatSlider, 0.1, 0.05, 1.0, 0.05, "delta", live=False),
        "p": W.IntSlider(value=1, min=0, max=20, description="p", continuous_update=False),
        "alpha": _slider(W.FloatLogSlider, 1.0, -1, 2, 0.25, "alpha", live=False),
        "batch": W.IntSlider(value=min(50, len(x)), min=2, max=len(x), description="batch size",
                             continuous_update=False),
    }

    def compute(v: dict[str, Any]) -> dict[str, Any]:
        unig = UniG(model, delta=v["delta"], p=v["p"], alpha=v["alpha"], seed=seed)
        out = metrics.predict(unig, x, batch_size=v["batch"])
        unig.reseed()
        unig(x[: v["batch"]].to(model_device(model)))
        return {"clean accuracy": metrics.accuracy(out, y), "logit diff": metrics.logit_difference(out, logits),
                "agreement": metrics.agreement(out, logits), "losses": list(unig.last_losses),
                "A": unig.last_A.cpu(), **v}

    @plots.styled
    def draw(r: dict[str, Any]) -> plt.Figure:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2]})
        plots.unification_loss_curve({"first batch": r["losses"]}, ax=left)
        plots.matrix_values(r["A"][:12], ax=right)
        fig.tight_layout()
        return fig

    return Panel(controls, compute, draw, auto=True)


# ------------------------------------------------------------------------------------------- noise
def noise_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str = "square",
                   budget: int = 300, dataset: str | None = None, seed: int = 0) -> Panel:
    """Input noise (RND / SND: sigma) against ``attack`` with EOT's M: clean accuracy under noise, the robust
    accuracy the attacker observes and the one re-evaluated with fresh noisy queries (run button). ``dataset``:
    default the zoo model's, else the images' (``setting.resolve``)."""
    checks.choice("attack", attack, attacks.names())
    dataset = setting.resolve(dataset, model=model, images=x, needed_by="noise_explorer").name
    controls = {
        "sigma": W.SelectionSlider(options=[0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1], value=0.02,
                                   description="sigma", continuous_update=False),
        "M": W.Dropdown(options=[1, 2, 5, 10], value=1, description="EOT M"),
    }

    def compute(v: dict[str, Any]) -> dict[str, Any]:
        defended = InputNoise(model, sigma=v["sigma"], seed=seed) if v["sigma"] > 0 else model
        clean = metrics.reevaluated_accuracy(defended, x, y, repeats=5)
        record = runs.run(defended, attack, x, y, budget=budget * v["M"], dataset=dataset, seed=seed, eot=v["M"])
        return {"clean accuracy": clean, "observed robust": record.robust_accuracy(),
                "re-evaluated robust": record.final_accuracy, "queries": int(record.queries.sum()),
                "result": record, **v}

    def draw(r: dict[str, Any]) -> plt.Figure:
        return plots.robust_accuracy_vs_queries({f"sigma {r['sigma']}, M {r['M']} (observed)": r["result"]})

    return Panel(controls, compute, draw, auto=False)


# --------------------------------------------------------------------------------------------- eps
def eps_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str = "square",
                 norm: str = "linf", budget: int = 300, dataset: str | None = None, shown: int = 6,
                 seed: int = 0) -> Panel:
    """``attack`` at the eps of the slider (run button): robust accuracy, median queries of successes and the
    first ``shown`` clean / adversarial images with their perturbations. The slider starts at the dataset's eps
    (``dataset``, else the zoo model's or the images'; ``setting.resolve``): up to 5/3 of it (l-inf) or 5/2 (l2)."""
    checks.choice("attack", attack, attacks.names())
    checks.choice("norm", norm, checks.NORMS)
    dataset = setting.resolve(dataset, model=model, images=x, needed_by="eps_explorer")
    start = dataset.eps[norm]
    high, step = (start * 5 / 3, start / 30) if norm == "linf" else (start * 5 / 2, start / 20)
    controls = {"eps": _slider(W.FloatSlider, start, step, high, step, f"eps ({norm})", live=False)}
    target = runs.Target.of(model, x[:IMAGES])

    def compute(v: dict[str, Any]) -> dict[str, Any]:
        result = runs.run(target, attack, x, y, budget=budget, dataset=dataset, norm=norm, eps=v["eps"], seed=seed)
        delta = (result.x_adv - x.to(result.x_adv.device)).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        return {"robust accuracy": result.robust_accuracy(), **metrics.query_stats(result),
                "largest perturbation": float(size.max()), "x_adv": result.x_adv.cpu(), **v}

    def draw(r: dict[str, Any]) -> plt.Figure:
        k = min(shown, len(x))
        return plots.adversarial_examples(x[:k], r["x_adv"][:k])

    return Panel(controls, compute, draw, auto=False)

