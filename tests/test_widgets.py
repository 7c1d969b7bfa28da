"""Every widget builder driven headless: set values, click, read the results behind the picture."""

from __future__ import annotations

import pytest
import torch

from workbench import metrics, runs, widgets
from workbench.attacks.square import Square
from workbench.defenses.aaa import target_margin
from workbench.losses import top2_margin
from workbench.oracle import Oracle


@pytest.fixture(scope="module")
def small(test_set):
    return test_set[:12]


def counting(panel: widgets.Panel) -> list[dict]:
    """Wrap the panel's compute so a test can see how often it really ran."""
    calls, compute = [], panel.compute
    panel.compute = lambda values: calls.append(values) or compute(values)
    return calls


def test_aaa_explorer_recomputes_on_change_and_caches(cnn, small):
    x, y = small
    panel = widgets.aaa_explorer(cnn, x, y)
    assert panel.result["tau"] == 6.0 and panel.result["agreement"] == 1.0
    calls = counting(panel)
    panel.controls["tau"].value = 3.0
    r = panel.result
    assert r["tau"] == 3.0 and len(calls) == 1
    assert torch.allclose(r["target"], target_margin(top2_margin(cnn(x).detach()), "linear", 3.0, 1.0), atol=1e-5)
    assert r["agreement"] == 1.0  # AAA never changes a prediction
    panel.controls["tau"].value = 6.0
    assert len(calls) == 1 and panel.result["tau"] == 6.0  # back to a cached setting: nothing recomputed
    panel.controls["curve"].value = "sine"
    assert panel.result["curve"] == "sine" and len(calls) == 2
    left = panel.figure.axes[0]
    assert [line.get_label() for line in left.get_lines()] == ["original", "AAA-sine"]  # the toggle is honoured


def test_attack_replay_walks_the_recorded_queries(cnn, small):
    x, y = small
    oracle = Oracle(cnn, x, y, budget=40, record=True, keep_images=3, reference=cnn)
    result = Square(eps=0.3, seed=0, progress=False).run(oracle)
    panel = widgets.attack_replay(result, image=1)
    slider = panel.controls["query"]
    assert slider.max == int(result.queries[1])
    for q in range(1, slider.max + 1):
        slider.value = q
        held = panel.result["held"]
        assert 1 <= held <= q
        assert panel.result["margin"] == pytest.approx(float(oracle.observed[1, held - 1]))
        assert panel.result["undefended margin"] == pytest.approx(panel.result["margin"], abs=1e-4)
        assert panel.result["perturbation linf"] <= 0.3 + 1e-6
    with pytest.raises(ValueError, match="image=3"):
        widgets.attack_replay(result, image=3)
    with pytest.raises(ValueError, match="result must be the Result"):
        widgets.attack_replay(oracle, image=1)
    traced = runs.run(cnn, "square", x, y, budget=40, seed=0, record=True, keep_images=3, reference=cnn)
    replayed = widgets.attack_replay(traced, image=1)  # the run path's result replays the same queries
    assert replayed.controls["query"].max == slider.max
    torch.testing.assert_close(traced.kept, result.kept, rtol=0, atol=0, equal_nan=True)


def test_unig_explorer_respects_delta_and_counts_steps(cnn, small):
    x, y = small
    panel = widgets.unig_explorer(cnn, x, y)
    panel.controls["p"].value = 3
    assert len(panel.result["losses"]) == 4  # before each of 3 steps and after the last
    panel.controls["delta"].value = 0.2
    a = panel.result["A"]
    assert a.shape[0] == panel.result["batch"] and ((a - 1).abs() <= 0.2 + 1e-6).all()
    panel.controls["p"].value = 0
    assert len(panel.result["losses"]) == 1


def test_noise_explorer_runs_on_click_only(cnn, small):
    x, y = small
    panel = widgets.noise_explorer(cnn, x, y, budget=20)
    assert panel.result == {} and "run" in panel.controls
    panel.controls["sigma"].value = 0.0
    assert panel.result == {}  # an attack never starts from a slider move
    panel.controls["run"].click()
    r = panel.result
    assert r["re-evaluated robust"] == pytest.approx(r["observed robust"])  # no noise: one evaluation is exact
    panel.controls["sigma"].value, panel.controls["M"].value = 0.02, 2
    panel.controls["run"].click()
    r = panel.result
    assert r["M"] == 2 and r["queries"] <= 20 * 2 * len(x)
    assert 0.0 <= r["observed robust"] <= 1.0 and r["clean accuracy"] > 0.8
    button = panel.controls["run"]
    assert not button.disabled and button.description == "run" and panel.status.value.startswith("done: sigma")


def test_a_failing_run_reenables_the_button_and_caches_nothing(cnn, small):
    x, y = small
    panel = widgets.noise_explorer(cnn, x, y, budget=5)
    seen = []

    def broken(values):
        seen.append((panel.controls["run"].disabled, panel.status.value))
        raise RuntimeError("boom")

    panel.compute = broken
    with pytest.raises(RuntimeError, match="boom"):  # outside a kernel the error reaches the caller
        panel.refresh()  # what the button calls (its dispatcher would log the error instead)
    assert seen == [(True, "running sigma = 0.02, M = 1 ...")]  # disabled, and saying so, while it runs
    assert not panel.controls["run"].disabled and panel.cache == {} and panel.result == {}


def test_eps_explorer_stays_in_the_ball_and_caches(cnn, small):
    x, y = small
    panel = widgets.eps_explorer(cnn, x, y, budget=30)
    calls = counting(panel)
    panel.controls["eps"].value = 0.1
    panel.controls["run"].click()
    panel.controls["run"].click()
    assert len(calls) == 1
    r = panel.result
    assert r["largest perturbation"] <= 0.1 + 1e-6
    assert r["robust accuracy"] == pytest.approx(
        1 - ((metrics.predict(cnn, r["x_adv"]).argmax(1) != y) | (metrics.predict(cnn, x).argmax(1) != y))
        .float().mean().item())
    with pytest.raises(ValueError, match="attack"):
        widgets.eps_explorer(cnn, x, y, attack="nope")
