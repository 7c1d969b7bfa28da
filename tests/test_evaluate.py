"""One-call evaluation: the probes classify every registry defense and user-written ones correctly, the suite
follows from them, the worst case is taken per image over every attack, and the command line takes registry
names and import paths."""

from __future__ import annotations

import pytest

from tests.user_defense import NoisyLogits, ScaledLogits
from workbench import evaluate as ev
from workbench import runs
from workbench.attacks.registry import suite
from workbench.defenses.registry import names, prepare
from workbench.probes import probe

EXPECTED = {  # name: (randomized, batch-dependent, post-processing)
    "none": (False, False, False), "aaa-linear": (False, False, True), "aaa-sine": (False, False, True),
    "unig": (True, True, False), "rnd": (True, False, False), "rnd-gf": (True, False, False),
    "snd": (True, False, False), "snd-beta": (True, False, False), "gcm": (False, False, False),
    "temperature": (False, False, True), "at": (False, False, False), "dent": (False, True, False),
    "ornd": (True, False, False), "rls": (True, False, False), "rfd": (True, False, False),
    "gated-rnd": (True, False, False),
    "dld": (False, False, True), "bit-depth": (False, False, False), "resize-pad": (True, False, False),
    "median": (False, False, True), "jpeg": (False, False, True),  # measured: they keep the 32 probes' labels
    "blacklight": (False, False, False), "knn-pixels": (False, False, False), "feature-squeezing": (False, False, False),
    "bd": (False, False, False),  # measured: its gate (confidence < 0.3) opens on no probe image nor blend here
}


@pytest.mark.parametrize("name", names())
def test_probes_classify_every_registry_defense(cnn, test_set, name):
    """Probed with 32 clean test images, as the grids and ``evaluate`` do. Calibrated defenses are calibrated
    first (an uncalibrated temperature scaling at T = 1 changes nothing)."""
    if name not in EXPECTED:  # PIHA hashes hue: no MNIST setting, refused by name
        with pytest.raises(ValueError, match="no defaults for 'mnist'"):
            prepare(name, "mnist-cnn", held_out=test_set[500:])
        return
    defended = prepare(name, "mnist-cnn", held_out=test_set[500:])  # prepare picks the zoo variant
    p = probe(defended, test_set.x[:32], cnn)
    assert (p.randomized, p.batch_dependent, p.post_processing) == EXPECTED[name], p
    assert p.deterministic == (name in ("none", "aaa-linear", "aaa-sine", "gcm", "temperature", "at", "bd", "dld",
                                        "bit-depth", "median", "jpeg", "blacklight", "knn-pixels",
                                        "feature-squeezing"))
    # each holds a detector; Blacklight flags the repeated probes, Stateful Detection the stream of 100 copies (it
    # checks from an account's 51st query); Feature Squeezing judges each query alone
    assert p.refuses == (name in ("blacklight", "knn-pixels", "feature-squeezing"))
    assert p.history_dependent == (name in ("blacklight", "knn-pixels"))


def test_probes_classify_user_defenses(cnn, test_set):
    scaled, noisy = probe(ScaledLogits(cnn), test_set.x[:32], cnn), probe(NoisyLogits(cnn), test_set.x[:32], cnn)
    assert scaled.post_processing and scaled.deterministic and scaled.keeps_predictions
    assert noisy.randomized and not noisy.batch_dependent and not noisy.post_processing
    assert [r.label for r in ev.suite(scaled)] == list(suite("standard") + suite("post-processing") +
                                                       suite("keeps-predictions"))
    scale_free = list(suite("keeps-predictions")) if noisy.keeps_predictions else []  # sigma 1 may flip one
    assert [r.label for r in ev.suite(noisy, eot=3)] == list(suite("standard")) + scale_free + [
        "eot3-square", "eot3-nes", "eot3-bandits", f"square kappa={ev.kappa_for(noisy):g}",
        f"eot3-square kappa={ev.kappa_for(noisy, 3):g}"]
    assert ev.kappa_for(noisy) == pytest.approx(ev.KAPPA_SIGMAS * noisy.margin_noise, abs=0.005)
    with pytest.raises(ValueError, match="at least 6"):
        probe(cnn, test_set.x[:3])


@pytest.fixture(scope="module")
def aaa_evaluation(cnn, test_set):
    defended = prepare("aaa-linear", cnn, held_out=test_set[500:])
    x, y = test_set[:30]
    return ev.evaluate(defended, x, y, undefended=cnn, budget=150, progress=False)


def test_the_worst_case_is_per_image_over_every_attack(aaa_evaluation):
    r = aaa_evaluation
    first = r.attacks
    assert (first["seed"] == 0).all() and list(first["attack"]) == list(suite("standard") + suite("post-processing") + suite("keeps-predictions"))
    restarts = r.restarts  # the strongest attack again, on the images still robust
    assert list(restarts["seed"]) == r.settings["restarts"]["seeds"][1:] and len(restarts) <= ev.RESTARTS
    assert (restarts["attack"] == r.settings["restarts"]["attack"]).all()
    for column in [f"robust@{b}" for b in r.budgets] + ["final"]:
        assert r.worst[column] <= first[column].min() + 1e-12
        assert r.worst[f"{column} lo"] <= r.worst[column] <= r.worst[f"{column} hi"]
    images = r.images
    broken = images[~images["final"]]
    assert (broken["broken by"].isin(r.attacks["attack"])).all() and (broken["at query"] >= 1).all()
    for _, row in broken.iterrows():  # the named attack really broke it at that query, at that seed
        label = row["broken by"] + ("" if row["seed"] == 0 else f" @seed {row['seed']}")
        assert row[f"{label}: query"] == row["at query"]
    assert (images.loc[images["final"], "broken by"] == "").all()
    assert r.worst["final"] == pytest.approx(images["final"].mean())
    fig = r.plot()
    assert len(fig.axes[0].lines) >= len(first) + 1
    assert "worst case" in r.to_markdown() and "Restarts of" in r.to_markdown()


def test_randomized_defenses_are_re_evaluated(cnn, test_set):
    x, y = test_set[:12]
    r = ev.evaluate(NoisyLogits(cnn, sigma=2.0), x, y, undefended=cnn, budget=40, eot=2, repeats=4,
                    attacks=["square", "eot2-square"], progress=False)
    assert r.reevaluated and {"square: re-evaluated", "eot2-square: re-evaluated"} <= set(r.images.columns)
    assert r.worst["final"] <= r.attacks["final"].min() + 1e-12
    with pytest.raises(ValueError, match="attack"):
        ev.evaluate(cnn, x, y, attacks=["squares"], progress=False)


def test_a_cached_evaluation_resumes_without_recomputing(cnn, test_set, tmp_path, monkeypatch):
    x, y = test_set[:8]
    first = ev.evaluate(cnn, x, y, budget=20, attacks=["square", "signhunter"], cache_dir=tmp_path,
                        cache_key="none", progress=False)
    assert len(list(tmp_path.glob("*.json"))) == 2 + len(first.settings["restarts"]["seeds"]) - 1
    monkeypatch.setattr(runs, "_run", lambda *a, **k: pytest.fail("a cached attack was recomputed"))
    again = ev.evaluate(cnn, x, y, budget=20, attacks=["square", "signhunter"], cache_dir=tmp_path,
                        cache_key="none", progress=False)
    assert again.images.equals(first.images)


@pytest.mark.parametrize("defense", ["aaa-linear", "tests.user_defense:scaled"])
def test_the_command_line_takes_names_and_import_paths(defense, tmp_path, capsys):
    out = tmp_path / "report.csv"
    assert ev.main([defense, "--dataset", "mnist", "--n", "8", "--budget", "20", "--csv", str(out), "--cache-dir",
                    str(tmp_path / "c")]) == 0
    text = capsys.readouterr().out
    assert "worst case" in text and "square-op" in text  # both are post-processing defenses
    assert out.is_file() and out.with_name("report-images.csv").is_file() and out.with_suffix(".png").is_file()
    with pytest.raises(ValueError, match="cannot import"):
        ev.main(["tests.user_defense:missing", "--model", "mnist-cnn", "--n", "8"])
    with pytest.raises(SystemExit):  # neither --dataset nor --model: no default dataset
        ev.main(["aaa-linear", "--n", "8"])
