"""CIFAR-10 (JPEG q75), the papers' setting, offline: the embedded 1000 test images and the shipped ResNet-20 zoo
(hashes checked), its clean accuracy, Square against it, AAA on it, and its AT and Gaussian-augmented variants."""

from __future__ import annotations

import pytest
import torch

from tests import scenarios
from workbench import data, models, protocol
from workbench.defenses.registry import build
from workbench.models import loading


def test_every_cifar_zoo_model_ships_and_loads_offline_with_its_hash(tmp_path, monkeypatch):
    """Empty ``WORKBENCH_DATA``, no root: the embedded images and every zoo model of the protocol load; a shipped
    file that does not match its pinned SHA-256 is refused."""
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))
    test = data.load("cifar10-jpeg", split="test")
    zoo = models.serving("cifar10-jpeg")
    assert set(zoo) == {f"cifar10-resnet20{v}" for v in ("", "-ls", "-at", "-gf")}
    for name in zoo:
        entry = models.entry(name)
        assert entry.shipped and models.sha256(loading.WEIGHTS / f"{name}.pt") == entry.sha256
        assert models.load(name)(test.x[:2]).shape == (2, 10)
    encoder = models.entry("cifar10-similarity-encoder")  # Stateful Detection's, not a classifier
    assert encoder.kind == "encoder" and models.sha256(loading.WEIGHTS / f"{encoder.name}.pt") == encoder.sha256
    assert models.load(encoder.name)(test.x[:2]).shape == (2, 256)
    assert not list(tmp_path.iterdir())  # nothing written, nothing downloaded
    tampered = tmp_path / "weights"
    tampered.mkdir()
    copy = tampered / "cifar10-resnet20.pt"
    copy.write_bytes((loading.WEIGHTS / "cifar10-resnet20.pt").read_bytes() + b"\0")
    monkeypatch.setattr(loading, "WEIGHTS", tampered)
    with pytest.raises(ValueError, match="SHA-256|sha256"):
        models.load("cifar10-resnet20")


def test_resnet20_is_accurate_and_aaa_keeps_its_predictions():
    """On the embedded 1000 test images; deterministic (nothing random). Measured (`python -m
    benchmarks.threshold_spread cifar-clean`): accuracy 0.879 (threshold 0.85; 0.8857 on the 10,000 JPEG test
    images), AAA-linear's agreement with the undefended predictions 1.000 (threshold 0.995)."""
    scenarios.check("cifar-clean")


def test_square_breaks_the_undefended_resnet20():
    """Square, l-inf 8/255, p_init 0.05 (10000-step schedule), 2500 queries, the first 100 embedded images.
    Measured over seeds 0-4 of the attack: robust@2500 0.018 ± 0.0045 (max 0.02), threshold 0.05 (7.2 std above).
    The label-smoothed ``cifar10-resnet20-ls`` falls slower (0.078 ± 0.0045): its margins are capped near 4.5."""
    scenarios.check("cifar-square")


def test_aaa_keeps_resnet20_robust_against_square():
    """Square (l-inf 8/255, 300 queries) on the first 50 embedded images, undefended vs AAA-linear calibrated on
    the held-out last 500. Measured over seeds 0-4: undefended 0.164 ± 0.043 (max 0.22; threshold 0.5, 7.7 std
    away), AAA minus undefended +0.576 ± 0.065 (min +0.48; threshold +0.2, 5.7 std below)."""
    scenarios.check("cifar-aaa")


def test_the_cifar_variants_resist_pgd_and_keep_accuracy_under_noise():
    """PGD-20 (l-inf 8/255, the first 200 embedded images) against the FGSM-trained ResNet-20 and the plain one;
    RND-GF (the Gaussian-augmented model, sigma 0.05) on the 1000 images. Measured over seeds 0-4 (PGD's start,
    the noise): AT clean 0.790 (no spread; threshold 0.6), AT PGD-20 0.373 ± 0.005, AT minus plain under PGD-20
    +0.372 ± 0.005 (threshold +0.2, 38 std below); RND-GF 0.871 ± 0.005 (threshold 0.8, 15 std below)."""
    scenarios.check("cifar-at")
    scenarios.check("cifar-gf")


def test_unig_on_cifar_pads_single_images_with_held_out_images():
    """The training images of CIFAR-10 (JPEG q75) do not ship: UniG's reference (the images a single query is
    padded with) is the first ten held-out test images, never attacked, with or without a root."""
    entry = protocol.get("cifar10-jpeg")
    unig = build("unig", "cifar10-resnet20", dataset="cifar10-jpeg")
    held_out = data.load("cifar10-jpeg").x[entry.attacked:entry.attacked + 10]
    assert torch.equal(unig.reference, held_out)
    assert unig(held_out[:1]).shape == (1, 10)  # a single image is answered


def test_aaa_tau_is_in_logit_units_of_the_model():
    """Label smoothing 0.1 caps the clean margins of ``cifar10-resnet20-ls`` near log(0.91 / 0.01) = 4.5: on the 500
    embedded images not held out their 99th percentile is 5.58 (max 6.77), under AAA's tau = 6, so every margin lies
    in AAA's first interval and is pulled toward 3. Measured there (deterministic): ECE of the model 0.071, of
    AAA-linear at tau 6 0.137 (+0.066; over the five 100-image slices +0.059 +- 0.011, min +0.052; threshold +0.03), at tau 3
    0.044 (-0.027; slices -0.016 +- 0.014; threshold: below the model's). AAA Table 2's ECE gain (3.52 -> 2.46 %)
    needs tau in the model's units."""
    from workbench import metrics
    from workbench.defenses import registry as defenses
    from workbench.losses import top2_margin

    test = data.load("cifar10-jpeg", split="test")
    x, y = test[:500]
    resnet = models.load("cifar10-resnet20-ls")
    clean = metrics.predict(resnet, x)
    assert float(top2_margin(clean).quantile(0.99)) < 6.0
    ece = {tau: metrics.ece(metrics.predict(defenses.prepare("aaa-linear", resnet, dataset="cifar10-jpeg",
                                                             held_out=test[500:], tau=tau), x), y)
           for tau in (6.0, 3.0)}
    assert ece[6.0] > metrics.ece(clean, y) + 0.03
    assert ece[3.0] < metrics.ece(clean, y)
