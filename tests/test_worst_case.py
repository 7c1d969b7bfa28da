"""A worst case reviewers can trust: 95% intervals (Wilson, against the closed form), tie groups, the kappa
criterion honoured query by query, restarts of the strongest attack, plans that cannot run refused before their
first query, and the submission path (submit, check, accept)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.user_defense import NoisyLogits
from workbench import evaluate as ev
from workbench import experiments, leaderboard, metrics, runs
from workbench.attacks import registry as attacks
from workbench.defenses.registry import prepare


def test_the_interval_is_scipys_wilson_interval():
    """The written-out interval gives scipy's ``binomtest(k, n).proportion_ci(method="wilson")`` for every k of
    n in 1..30, 100 and 1000 at level 0.95, and of 100 at 0.9 (within 1e-12: z comes from the standard library's
    inverse normal, scipy's from ``ndtri``)."""
    from scipy import stats

    cases = [(k, n, 0.95) for n in [*range(1, 31), 100, 1000] for k in range(n + 1)]
    for k, n, level in cases + [(k, 100, 0.9) for k in range(101)]:
        ci = stats.binomtest(k, n).proportion_ci(level, method="wilson")
        assert metrics.interval(k / n, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12), (k, n, level)


@pytest.mark.parametrize("k, n", [(0, 100), (1, 100), (56, 100), (99, 100), (100, 100), (3, 8), (40, 40)])
def test_the_interval_is_wilsons(k, n):
    """Agreement with the Wilson score interval written out (z = 1.959964): center (p + z^2 / 2n) / (1 + z^2 / n),
    half-width z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)."""
    z, p = 1.959963984540054, k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = metrics.interval(p, n)
    assert lo == pytest.approx(max(0.0, center - half), abs=1e-9) and hi == pytest.approx(min(1.0, center + half),
                                                                                          abs=1e-9)
    assert lo <= p <= hi


def test_bad_intervals_are_refused_and_seeds_get_a_t_interval():
    with pytest.raises(ValueError, match="accuracy"):
        metrics.interval(1.2, 10)
    with pytest.raises(ValueError, match="share of n"):
        metrics.interval(0.55, 10)
    mean, lo, hi = metrics.seed_interval([0.65, 0.575, 0.575, 0.65])
    assert mean == pytest.approx(0.6125) and lo < mean < hi and hi - mean == pytest.approx(0.0689, abs=1e-3)
    assert np.isnan(metrics.seed_interval([0.6])[1])  # one seed is one sample: no interval


def test_ties_group_rows_whose_intervals_overlap_the_group_leader():
    lo = [0.46, 0.46, 0.43, 0.30, 0.0, 0.0]
    hi = [0.65, 0.65, 0.63, 0.45, 0.04, 0.05]
    assert metrics.ties(lo, hi) == [1, 1, 1, 4, 5, 5]


@pytest.mark.parametrize("eot", [1, 3])
def test_the_kappa_criterion_is_honoured_query_by_query(cnn, test_set, eot):
    """No image counts as broken at a query whose observed margin is above -kappa (the Oracle's record of every
    query's margin; under EOT every query of the successful point, the model being deterministic), and kappa
    keeps the attack going past the first misclassification on some image."""
    x, y = test_set[:16]
    kappa = 3.0
    r = runs.run(cnn, "square", x, y, budget=300, dataset="mnist", eot=eot, attack_kwargs={"kappa": kappa},
                 record=True)
    broken = (r.first_success > 0).nonzero().flatten()
    assert len(broken) >= 4
    for i in broken.tolist():
        q = int(r.first_success[i])
        assert r.observed[i, q - 1] <= -kappa + 1e-5  # the query that broke it
    plain_first = [int((r.observed[i] < 0).nonzero()[0]) + 1 for i in broken.tolist()]
    assert any(p < int(r.first_success[i]) for p, i in zip(plain_first, broken.tolist()))
    with pytest.raises(ValueError, match="kappa"):
        attacks.build("square", dataset="mnist", kappa=-1)


def test_an_impossible_plan_fails_before_its_first_query(cnn, test_set, monkeypatch):
    """RLS at budget 30 with EOT over 32 queries: refused before any attack runs (the probes only), with the
    attack and the budget it needs named; likewise a board whose second defense cannot run, and a grid cell."""
    monkeypatch.setattr(runs, "_run", lambda *a, **k: pytest.fail("an attack ran before the plan was checked"))
    defended = prepare("rls", cnn)
    x, y = test_set[:8]
    with pytest.raises(ValueError, match=r"budget=30 .*eot32-square.*at least 64"):
        ev.evaluate(defended, x, y, undefended=cnn, budget=30, eot=32, progress=False)
    with pytest.raises(ValueError, match=r"budget=2 .*'nes'"):
        leaderboard.rank(["none", "aaa-linear"], dataset="mnist", n=8, budgets=(2,), progress=False)
    cell = experiments.cell(dataset="mnist", model="mnist-cnn", defense="rls", attack="square", n=8, budgets=(30,),
                            attack_kwargs={"eot": 32})
    with pytest.raises(ValueError, match=r"cell 0 .*field budgets.*64"):
        experiments.validate([cell])


def test_the_automatic_eot_count_adapts_to_a_small_budget_and_says_so(cnn):
    probes = runs.Target.of(NoisyLogits(cnn, sigma=8.0), torch.rand(12, 1, 28, 28), cnn).probes
    assert ev.eot_samples(probes.noise) > 10
    with pytest.warns(UserWarning, match="budget=30"):
        plan = ev.suite(probes, budget=30)
    assert {p.eot for p in plan if p.eot > 1} == {10}


def test_restarts_run_the_strongest_attack_on_the_images_still_robust(cnn, test_set):
    """Seed 0 runs the whole suite; each restart runs its strongest attack (most images broken) at the next seed
    on the images every run so far left robust, until one breaks no new image (or the cap); the worst case is
    per image over every run, and each broken image names the run (attack and seed) that broke it."""
    defended = prepare("aaa-sine", cnn, held_out=test_set[500:])
    x, y = test_set[:24]
    r = ev.evaluate(defended, x, y, undefended=cnn, budget=60, attacks=["square", "square-switch"], progress=False)
    restarts = r.settings["restarts"]
    first = r.attacks.set_index("attack")
    assert restarts["attack"] == first["final"].idxmin()
    assert restarts["seeds"] == list(range(len(restarts["seeds"]))) and len(restarts["new"]) == len(restarts["seeds"]) - 1
    assert all(restarts["new"][:-1]) and (len(restarts["seeds"]) == ev.RESTARTS + 1 or restarts["new"][-1] == 0)
    rows = r.restarts
    robust_before = first["final"].min() * len(x)  # the first restart runs on the images seed 0 left robust
    if len(rows):
        assert rows["images"].iloc[0] <= robust_before + 1e-9
    assert r.worst["final"] == pytest.approx(1 - (r.images["broken by"] != "").mean())
    assert set(r.images.loc[~r.images["final"], "seed"]) <= set(restarts["seeds"])
    none = ev.evaluate(defended, x, y, undefended=cnn, budget=60, attacks=["square"], restarts=0, progress=False)
    assert none.settings["restarts"]["seeds"] == [0] and len(none.attacks) == 1 and not len(none.restarts)


def _tiny_board(monkeypatch) -> str:
    monkeypatch.setitem(leaderboard.BOARDS, "mnist-tiny", ("mnist", 8, (20, 50)))
    return "mnist-tiny"


def test_a_submission_is_accepted_only_under_the_boards_protocol(monkeypatch, tmp_path):
    """``submit`` evaluates an import path under the board's exact protocol and writes its row and per-image
    records; ``accept`` merges it, and refuses a row from another protocol, with other weights, or whose row
    disagrees with its per-image records."""
    board = _tiny_board(monkeypatch)
    row = leaderboard.submit(board, "tests.user_defense:scaled", out=tmp_path / "sub", cache_dir=tmp_path / "c",
                             progress=False)
    table = pd.read_csv(row)
    assert len(table) == 1 and table["final lo"].iloc[0] <= table["final"].iloc[0] <= table["final hi"].iloc[0]
    assert (leaderboard.images_dir(row) / "tests.user_defense_scaled.csv").is_file()
    tables = tmp_path / "tables"
    tables.mkdir()
    merged = pd.read_csv(leaderboard.accept(board, row, tables))
    assert list(merged["defense"]) == ["tests.user_defense:scaled"]
    assert (leaderboard.images_dir(tables / f"{board}.csv") / "tests.user_defense_scaled.csv").is_file()
    for column, value, message in [("protocol", "0" * 20, "protocol"), ("fingerprint", "f" * 16, "weights"),
                                   ("final", 1.0, "per-image records")]:
        bad = table.assign(**{column: value})
        bad_path = row.with_name(f"{board}.csv")
        bad.to_csv(bad_path, index=False)
        with pytest.raises(ValueError, match=message):
            leaderboard.accept(board, bad_path, tables)
        table.to_csv(bad_path, index=False)
