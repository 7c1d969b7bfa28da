"""The defenses published after the seed papers (RLS, oRND, RFD, gated RND, Boundary Defense): each mechanism
against a closed-form or reference computation, and what the probes measure of it."""

from __future__ import annotations

import math

import pytest
import torch

from workbench import probes
from workbench.defenses import registry as defenses
from workbench.defenses.gated import ConfidenceGated
from workbench.defenses.rfd import STEPS, FeatureNoise
from workbench.defenses.rls import RandomLogitScaling


def test_rls_scales_each_query_by_its_own_factor_in_range_and_keeps_every_prediction(cnn, test_set):
    """RLS's output is ``m * logits`` with one m in [0.5, 10] per row, fresh for every query, so the argmax is the
    model's; reseeding repeats the factors; the probes find it randomized and prediction-keeping (issue's
    acceptance)."""
    x, _ = test_set[:40]
    rls = defenses.build("rls", cnn)
    with torch.no_grad():
        clean, first, again = cnn(x), rls(x), rls(x)
    m = first / clean
    per_row = m.median(1).values
    assert torch.allclose(m, per_row[:, None], rtol=1e-4, atol=1e-4)
    assert bool(((per_row >= 0.5) & (per_row <= 10)).all()) and per_row.std() > 1  # U[0.5, 10]: std 2.7
    assert torch.equal(first.argmax(1), clean.argmax(1)) and not torch.allclose(first, again)
    rls.reseed()
    assert torch.equal(rls(x).detach(), first)
    found = probes.probe(rls, x[:32], cnn)
    assert found.randomized and found.keeps_predictions and found.changes_scores and not found.batch_dependent


def test_rls_refuses_a_range_that_is_not_positive(cnn):
    with pytest.raises(ValueError, match="low"):
        RandomLogitScaling(cnn, low=0.0)
    with pytest.raises(ValueError, match="high must be >= low"):
        RandomLogitScaling(cnn, low=2.0, high=1.0)


def test_ornd_adds_unit_gaussian_noise_to_the_logits(cnn, test_set):
    """oRND: ``defended(x) - model(x)`` is N(0, 1) per logit: over 400 x 10 draws the mean is within 0.05 of 0 and
    the std within 0.05 of 1 (standard errors 0.016 and 0.011)."""
    x, _ = test_set[:400]
    ornd = defenses.build("ornd", cnn)
    with torch.no_grad():
        noise = ornd(x) - cnn(x)
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05


def test_rfd_adds_its_noise_to_the_penultimate_features_only_while_it_runs(cnn, test_set):
    """RFD with sigma 0.5 equals the model's last layer applied to the penultimate features plus 0.5 times the
    noise its generator draws (a reference computation), and leaves the wrapped model deterministic."""
    x, _ = test_set[:20]
    rfd = FeatureNoise(cnn, sigma=0.5, seed=3)
    assert rfd.layer.endswith("fc")  # the last linear layer: the penultimate features are its input
    layer = dict(cnn.named_modules())[rfd.layer]
    features = rfd.features(x)
    gen = torch.Generator().manual_seed(3)
    expected = layer(features + 0.5 * torch.randn(features.shape, generator=gen))
    with torch.no_grad():
        assert torch.allclose(rfd(x), expected, atol=1e-5)
        assert torch.equal(cnn(x), cnn(x))  # the hook is gone after the call


def test_rfd_calibration_finds_the_edge_of_the_accuracy_drop_it_aims_at(cnn, test_set):
    """The calibrated sigma costs at most the aimed drop (1.5 points) and the end of the last bisection bracket,
    a factor exp(ln(1e4) / 2^STEPS) above it, costs more: the rule of the docstring, with the same draws as the
    calibration (deterministic, so no spread)."""
    x, y = test_set[500:800]
    rfd = FeatureNoise(cnn, draws=2).calibrate(x, y)
    assert rfd.sigma is not None and rfd.sigma > 0
    assert rfd.accuracy_drop(rfd.sigma, x, y) <= rfd.drop
    assert rfd.accuracy_drop(rfd.sigma * math.exp(math.log(1e4) / 2 ** STEPS) * 1.0001, x, y) > rfd.drop
    assert FeatureNoise(cnn, sigma=0.25).calibrate(x, y).sigma == 0.25  # a given sigma is kept


def test_rfd_needs_a_sigma_or_a_calibration_and_a_real_layer(cnn, test_set):
    x, _ = test_set[:4]
    with pytest.raises(ValueError, match="calibrate"):
        FeatureNoise(cnn)(x)
    with pytest.raises(ValueError, match="layer"):
        FeatureNoise(cnn, sigma=1.0, layer="no.such.layer")


def test_a_gate_passes_confident_queries_bit_for_bit_and_noises_the_others(cnn, test_set):
    """Boundary Defense's mechanism with a gate that splits the batch: rows whose confidence is at least the
    threshold are the model's logits exactly; the others get logit noise of std 0.1 (over 200 x 10 draws within
    0.02 of it)."""
    x, _ = test_set[:200]
    blends = (x + x.roll(1, 0) + x.roll(2, 0)) / 3  # many low-confidence images
    with torch.no_grad():
        clean = cnn(blends)
    confidence = clean.softmax(1).amax(1)
    threshold = float(confidence.median())
    bd = ConfidenceGated(cnn, threshold=threshold, logit_sigma=0.1)
    with torch.no_grad():
        out = bd(blends)
    gated = confidence < threshold
    assert torch.equal(out[~gated], clean[~gated])
    noise = out[gated] - clean[gated]
    assert abs(float(noise.std()) - 0.1) < 0.02


def test_gated_rnd_calibrates_its_threshold_to_gate_a_tenth_of_held_out_images(cnn, test_set):
    """The calibrated threshold is the 10% quantile of the held-out confidence (our rule, in the docstring), and
    the probes find the gated defense randomized: its noise shows on the blends near the boundary even where
    no clean probe image is gated."""
    x, y = test_set[500:1000]
    gated = defenses.prepare("gated-rnd", cnn, dataset="mnist", held_out=(x, y))
    with torch.no_grad():
        share = float((cnn(x).softmax(1).amax(1) < gated.threshold).float().mean())
    assert abs(share - 0.1) <= 0.01
    found = probes.probe(gated, test_set[:32][0], cnn)
    assert found.randomized and found.noise is not None and found.noise > 0


def test_a_gate_without_noise_or_with_a_threshold_beyond_one_is_refused(cnn):
    with pytest.raises(ValueError, match="input_sigma > 0 or logit_sigma > 0"):
        ConfidenceGated(cnn, threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceGated(cnn, threshold=1.5, logit_sigma=0.1)
