"""The Oracle's folded copy of a model: batch norms folded only where safe, the same scores up to float rounding,
the model itself untouched, and never for a defense that adapts its batch norms or draws random numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from workbench.defenses.registry import build
from workbench.speed.inference import agrees, fold_batchnorm, foldable
from workbench.losses import margin
from workbench.speed.forward import CPU_BATCH, POST_CHOICE_FROM
from workbench.speed.threads import threads as intra_op_threads
from workbench.oracle import Oracle

# rounding-sensitive: run again under ATEN_CPU_CAPABILITY=default by .ci/run (docs/architecture.md)
pytestmark = pytest.mark.numerics


def test_the_zoo_cnn_folds_to_the_same_function_and_stays_untouched(cnn, test_set):
    """Both conv/BN pairs fold; on 500 test images the largest logit change is 4e-6 (logits up to ~20, i.e.
    2e-7 of their scale; AGREEMENT allows 1e-5 of it) and no prediction changes."""
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    twin = fold_batchnorm(cnn)
    assert len(foldable(cnn)) == 2 and not foldable(twin)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())
    x = test_set.x[:500]
    with torch.no_grad():
        a, b = cnn(x), twin(x)
    assert torch.equal(a.argmax(1), b.argmax(1)) and (a - b).abs().max() < 1e-4
    assert agrees(cnn, twin, x)
    assert all(torch.equal(v, cnn.state_dict()[k]) for k, v in before.items())


def test_only_eval_mode_unhooked_conv_bn_pairs_fold():
    conv_bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    assert fold_batchnorm(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None  # nothing to fold
    assert fold_batchnorm(conv_bn.train()) is None  # training mode: batch statistics, not an affine map
    hooked = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).eval()
    hooked[0].register_forward_hook(lambda *_: None)
    assert fold_batchnorm(hooked) is None  # a hook would be lost
    bn_first = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3)).eval()
    assert fold_batchnorm(bn_first) is None  # a norm before a convolution does not fold into it
    no_stats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert fold_batchnorm(no_stats) is None


def test_relus_run_in_place_only_on_a_fresh_layer_output():
    shared = nn.ReLU()
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global stream left as it was
        torch.manual_seed(0)
        net = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(),
                            nn.Conv2d(4, 4, 3), shared, nn.Flatten(), nn.Linear(4, 3), nn.ReLU()).eval()
    outer = nn.Sequential(net, shared)  # the shared ReLU is registered twice: it may be used elsewhere
    twin = fold_batchnorm(outer)[0]
    assert [type(m).__name__ + ("!" if getattr(m, "inplace", False) else "") for m in twin] == [
        "ReLU", "Conv2d", "Identity", "ReLU!", "MaxPool2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear", "ReLU!"]
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(outer)(x), outer(x), atol=1e-5)
    assert not any(getattr(m, "inplace", False) for m in outer.modules())  # the model itself is untouched


def test_agrees_notices_a_changed_function(cnn, test_set):
    twin = fold_batchnorm(cnn)
    conv = next(m for m in twin.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.bias += 0.1  # far beyond rounding: AGREEMENT allows 1e-5 of the scale (2e-4 here)
    assert not agrees(cnn, twin, test_set.x[:32])


def test_the_oracle_folds_deterministic_models_only(cnn, test_set):
    x, y = test_set[:200]
    folded, plain = Oracle(cnn, x, y, budget=1), Oracle(cnn, x, y, budget=1, fold=False)
    assert folded.forwards.folded and not plain.forwards.folded and folded.model is cnn
    a, b = folded.query(x, torch.arange(200)), plain.query(x, torch.arange(200))
    assert torch.equal(a.argmax(1), b.argmax(1)) and (a - b).abs().max() < 1e-4
    assert not Oracle(build("dent", cnn), x, y, budget=1).forwards.folded  # adapts its batch norms: batch-dependent
    assert not Oracle(build("rnd", cnn), x, y, budget=1).forwards.folded  # seeded random parts
    assert not Oracle(cnn, x[:CPU_BATCH], y[:CPU_BATCH], budget=1).forwards.folded  # too few images to pay for a probe
    defended = build("aaa-linear", cnn)
    aaa = Oracle(defended, x, y, budget=1).forwards  # folded by its base, post-processed once per query batch
    assert aaa.folded and aaa.split and aaa.chunked is not cnn and aaa.post == defended.post_process
    assert torch.equal(aaa(x).argmax(1), cnn(x).argmax(1))


def test_fold_must_be_a_flag(cnn, test_set):
    x, y = test_set[:4]
    with pytest.raises(ValueError, match="fold"):
        Oracle(cnn, x, y, budget=1, fold="yes")


def test_a_post_processing_defense_is_post_processed_once_per_query_batch(cnn, test_set, monkeypatch):
    """AAA declares ``base`` and ``post_process``: the Oracle runs the CNN's forward in chunks of 64 (the folded
    copy) and AAA's solver once over the whole query batch, on logits that are the CNN's own up to float32 rounding,
    and its scores are AAA's post-processing of exactly those logits.

    The scores are not compared with ``defended(x)`` end to end under a fixed tolerance: AAA's sign-following
    solver amplifies rounding. The folded forward's logits differ from the eager ones by 3.8e-6 here; AAA turns that
    into 0.022 on one image of the 200 (image 161) under ``ATEN_CPU_CAPABILITY=default`` on an AMD EPYC, and into
    3.8e-5 with its AVX2 kernels. The predictions agree everywhere."""
    x, y = test_set[:200]
    defended = build("aaa-linear", cnn)
    oracle = Oracle(defended, x, y, budget=1)
    assert oracle.forwards.split and oracle.forwards.batch_size == 64
    seen = []
    post = oracle.forwards.post
    monkeypatch.setattr(oracle.forwards, "post", lambda z: seen.append(z.clone()) or post(z))
    scores = oracle.query(x, torch.arange(200))
    assert [len(z) for z in seen] == [200]
    with torch.no_grad():
        plain = cnn(x)
    assert (seen[0] - plain).abs().max() <= 1e-5 * plain.abs().max()
    assert torch.equal(scores, defended.post_process(seen[0]))
    assert torch.equal(scores.argmax(1), defended(x).argmax(1))
    assert not Oracle(build("rnd", cnn), x, y, budget=1).forwards.split  # no post-processing declared


def test_the_post_processing_runs_on_the_threads_its_own_choice_picks(cnn, test_set, monkeypatch):
    """From ``POST_CHOICE_FROM`` rows the Oracle runs the post-processing on the thread count its own choice picks:
    with 2 intra-op threads it first tries 2, then 1 (AAA's solver splits its rows over 2), and the scores are the
    same bits on both. A smaller query batch runs on the caller's threads (the attack's loop: 1)."""
    x, y = test_set[:2 * POST_CHOICE_FROM]
    with intra_op_threads(2):
        oracle = Oracle(build("aaa-linear", cnn), x, y, budget=4)
        seen, post = [], oracle.forwards.post
        monkeypatch.setattr(oracle.forwards, "post", lambda z: seen.append(torch.get_num_threads()) or post(z))
        with intra_op_threads(1):
            scores = [oracle.query(x, torch.arange(len(x))) for _ in range(2)]
            oracle.query(x[:POST_CHOICE_FROM - 1], torch.arange(POST_CHOICE_FROM - 1))
    assert seen == [2, 1, 1]
    assert torch.equal(scores[0], scores[1])


def test_the_reference_margin_reuses_the_base_logits_of_a_post_processing_defense(cnn, test_set):
    """With the defense's own base as the reference, the recorded reference margins come from the base logits the
    defended forward computed (no second forward): the undefended margins up to float rounding. Another reference
    gets its own (folded, chunked) forwards."""
    x, y = test_set[:100]
    defended = build("aaa-linear", cnn)
    oracle = Oracle(defended, x, y, budget=2, record=True, reference=cnn)
    assert oracle._shares_base and oracle._reference is None
    oracle.query(x, torch.arange(100))
    expected = margin(cnn(x), y)
    assert (oracle.reference_margin[:, 0] - expected).abs().max() <= 1e-5 * expected.abs().max()
    other = Oracle(build("rnd", cnn), x, y, budget=2, record=True, reference=cnn)
    assert not other._shares_base and other._reference.folded
    other.query(x, torch.arange(100))
    assert (other.reference_margin[:, 0] - expected).abs().max() <= 1e-5 * expected.abs().max()
