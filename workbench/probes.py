"""Properties of a defense, measured rather than declared (as AutoAttack's ``check_randomized`` does): whether
its scores are random, whether an image's scores depend on the rest of its query batch, and whether it changes
the scores but keeps the undefended model's predictions (a post-processing defense like AAA).

Every probe queries the defense directly with a few clean images (these forward passes are the experimenter's,
not an attacker's, and are not counted). The evaluation, the grids and the report decide from them which
adaptive attacks to run and whether final images are re-evaluated with fresh queries.

Example::

    probes = probe(defended, x[:16], undefended=model)
    probes.randomized, probes.batch_dependent, probes.keeps_predictions
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from workbench import checks, stateful
from workbench.losses import top2_margin
from workbench.threat import model_device

TOLERANCE = 1e-4  # logits closer than this are the same (float rounding differs between batch sizes)
# The two batch contexts have the same size, so an image's logits round (nearly) the same way: a change beyond
# this share of the logits' scale (about ten float32 ulps) is the batch's doing. Measured on the zoo CNN: exactly 0
# for every batch-independent registry defense; 2e-4 to 1.0 for UniG (ten draws of 32 images), 0.13-2.0 for DENT.
BATCH_TOLERANCE = 1e-5
REPEATS = 16  # queries per context when the scores are random
IMAGES = 32  # clean images the evaluation, the grids, the report and the Oracle probe a defense with
PROBE_MIN = 6  # the fewest clean images a probe accepts
STREAM = 100  # copies of one probe image sent from one account to find a detector's memory (k-NN checks from 51)
Z_LIMIT = 4.0  # mean |z| above which a randomized defense's batch contexts differ (about 0.8 when they do not)


@dataclass(frozen=True)
class Probes:
    """What the probes measured.

    Attributes:
        randomized: the same batch queried twice gets different scores.
        batch_dependent: an image's scores differ when the rest of its query batch differs (for a randomized
            defense: with the same noise drawn, or where that cannot be arranged, in their mean over repeats).
        keeps_predictions: over every probe query, the predicted class equals the undefended model's (None
            without an undefended model).
        changes_scores: the scores differ from the undefended model's (None without one).
        difference: the largest logit change between the two batch contexts, and ``z``: the mean |z| of the
            repeated-query test (only where a randomized defense's noise cannot be reset).
        noise: for a randomized defense, ``relative_noise`` on the probe images whose scores were found random
            (else None).
        margin_noise: for a randomized defense, the std of the top-2 logit margin over fresh queries of one image
            (median over the images whose scores were found random), in logits (else None).
        gate: for a randomized defense that left some probed images' scores untouched (a gate: noise only near the
            decision boundary), the largest top-2 margin at which the probes saw random scores on blends of two probe
            images (``_gate``); None where the scores of every image of the first group were random (no gate) or
            the defense is deterministic.
        history_dependent: a stateful detector (``workbench.stateful``): a probe query sent again from one account
            is flagged where its first sending was not: the probe images twice, then ``STREAM`` copies of the first
            (a detector that checks only once an account holds k queries, as k-NN's k = 50, flags those; measured
            on a scratch account, the memory restored after).
        refuses: the defense screens its queries (it holds a ``workbench.stateful.Stateful`` detector, stateful or
            not: Feature Squeezing flags queries alone), so any query may be refused. Found in the module tree,
            not by the probe queries: a detector that flags no clean probe (Feature Squeezing at 5% false
            positives) still refuses an attack's queries.
    """

    randomized: bool
    batch_dependent: bool
    keeps_predictions: bool | None
    changes_scores: bool | None
    difference: float
    z: float | None = None
    noise: float | None = None
    margin_noise: float | None = None
    gate: float | None = None
    history_dependent: bool = False
    refuses: bool = False

    @property
    def deterministic(self) -> bool:
        """Neither random nor batch-dependent: one query tells the truth about an image."""
        return not (self.randomized or self.batch_dependent)

    @property
    def post_processing(self) -> bool:
        """Deterministic, changes the scores, keeps every prediction: the case AAA's adaptive attacks target."""
        return bool(self.deterministic and self.changes_scores and self.keeps_predictions)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "deterministic": self.deterministic, "post_processing": self.post_processing}


def _scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x.to(model_device(model))).float().cpu()


def seeded(model: nn.Module) -> bool:
    """Whether ``model`` has seeded random parts (submodules with a ``reseed``, as the workbench's randomized
    defenses have)."""
    return any(callable(getattr(m, "reseed", None)) for m in model.modules())


def reseed(model: nn.Module, seed: int | None = None) -> nn.Module:
    """Restart the random stream of every seeded part of ``model`` (every submodule with a ``reseed``, as the
    workbench's randomized defenses have) at ``seed``, or at each one's own seed."""
    for m in model.modules():
        if callable(getattr(m, "reseed", None)):
            m.reseed(seed)
    return model


def _controlled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scores with the randomness reset: torch's global generator seeded and every seeded part restarted, so two
    calls draw the same noise where the defense lets us."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _scores(reseed(model), x)


def probe(defended: nn.Module, x: torch.Tensor, undefended: nn.Module | None = None) -> Probes:
    """Probe ``defended`` with the clean images ``x`` (at least 6; 32 or more tell a model that changes a few
    predictions from one that changes none), split in three groups A, B, C:
    A queried twice (randomized?; where A's scores agree, also the blends (A + B) / 2 and (A + B + C) / 3, which
    sit nearer the decision boundary, where a gated defense adds its noise); A's scores in the batch [A, B] against
    [A, C] (batch-dependent?: for a
    randomized defense with its randomness reset before each of the two, so that the same noise is drawn; where
    the randomness cannot be reset, the mean over repeated queries is compared instead); and (with
    ``undefended``) the predictions on all of ``x`` (twice) against the undefended model's. Seeded defenses are
    restarted afterwards."""
    checks.module("defended", defended)
    checks.images("x", x)
    if len(x) < PROBE_MIN:
        raise ValueError(f"x must hold at least {PROBE_MIN} images to probe a defense, got {len(x)}")
    k = len(x) // 3
    a, b, c = x[:k], x[k:2 * k], x[2 * k:3 * k]
    first, again = _scores(defended, a), _scores(defended, a)
    random_rows = _random_rows(first, again)
    noisy, gated = a[random_rows], not bool(random_rows.all())
    if not len(noisy):  # noise gated on low confidence (BD, gated RND) shows only near the decision boundary
        blends = torch.cat([(a + b) / 2, (a + b + c) / 3])
        noisy = blends[_random_rows(_scores(defended, blends), _scores(defended, blends))]
    randomized = bool(len(noisy))
    z = None
    if not randomized or _same(_controlled(defended, a), _controlled(defended, a)):
        score = _controlled if randomized else _scores
        with_b, with_c = score(defended, torch.cat([a, b]))[:k], score(defended, torch.cat([a, c]))[:k]
        difference = float((with_b - with_c).abs().max())
        batch_dependent = difference > BATCH_TOLERANCE * max(1.0, float(with_b.abs().max()))
    else:  # randomness we cannot reset: compare the mean scores of A in the two batches
        z, difference = _context_z(defended, a, b, c), float((first - again).abs().max())
        batch_dependent = z > Z_LIMIT
    keeps = changes = None
    if undefended is not None:
        checks.module("undefended", undefended)
        reference, scores = _scores(undefended, x), [_scores(defended, x) for _ in range(2)]
        keeps = all(bool((s.argmax(1) == reference.argmax(1)).all()) for s in scores)
        changes = bool((scores[0] - reference).abs().max() > TOLERANCE)
    noise = spread = gate = None
    if randomized:
        margins = _margins(defended, noisy, REPEATS)
        noise, spread = _relative(margins), float(margins.std(0).median())
        gate = _gate(defended, a, b) if gated else None
    reseed(defended)
    history, refuses = _history(defended, a)
    return Probes(randomized, batch_dependent, keeps, changes, difference, z, noise, spread, gate, history, refuses)


SCRATCH = -1  # the account the probes screen from (no attack or benign stream uses a negative account)


def _history(defended: nn.Module, a: torch.Tensor) -> tuple[bool, bool]:
    """Whether a detector in ``defended`` flags a query sent again from one account where its first sending was
    not flagged (the images ``a`` twice, then ``STREAM`` copies of the first), and whether ``defended`` holds a
    detector at all; its memory is put back as it was."""
    detector = stateful.find(defended)
    if detector is None:
        return False, False
    before = detector.snapshot()
    try:
        accounts = torch.full((len(a),), SCRATCH, dtype=torch.long)
        first = detector.screen(a, accounts).flagged
        again = detector.screen(a, accounts).flagged
        stream = detector.screen(a[:1].expand(STREAM, *a.shape[1:]).contiguous(),
                                 torch.full((STREAM,), SCRATCH, dtype=torch.long)).flagged
    finally:
        detector.restore(before)
    return bool((again & ~first).any() or (stream.any() and not first[0])), True


def _gate(defended: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest top-2 margin at which the scores are random, over the blends ``w * a + (1 - w) * b`` for nine
    weights w in [0.1, 0.9]: the line from one probe image to another crosses the gated region near the decision
    boundary and leaves it on both sides, so its random points reach the gate's edge. (0 where none is random.)"""
    weights = torch.linspace(0.1, 0.9, 9).view(-1, 1, 1, 1, 1)
    blends = (weights * a + (1 - weights) * b).flatten(0, 1)
    first, again = _scores(defended, blends), _scores(defended, blends)
    random = _random_rows(first, again)
    reseed(defended)
    return float(top2_margin((first + again)[random] / 2).abs().max()) if random.any() else 0.0


def _random_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rows whose scores differ between two queries of the same batch."""
    return (p - q).abs().amax(1) > TOLERANCE


def _same(p: torch.Tensor, q: torch.Tensor) -> bool:
    return bool((p - q).abs().max() <= TOLERANCE)


def _context_z(defended: nn.Module, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """Mean |z| over images and classes of the difference between A's mean scores in the batches [A, B] and
    [A, C] (REPEATS queries each), in units of its standard error: about 0.8 when the batch does not matter."""
    k = len(a)
    p = torch.stack([_scores(defended, torch.cat([a, b]))[:k] for _ in range(REPEATS)])
    q = torch.stack([_scores(defended, torch.cat([a, c]))[:k] for _ in range(REPEATS)])
    se = ((p.var(0) + q.var(0)) / REPEATS).sqrt().clamp_min(1e-6)
    return float(((p.mean(0) - q.mean(0)).abs() / se).mean())


def relative_noise(defended: nn.Module, x: torch.Tensor, repeats: int = REPEATS) -> float:
    """How noisy the defense's scores are where an attacker reads them: the median over the images ``x`` of the
    std of the top-2 margin over ``repeats`` queries, over the median size of the mean margin (0 for a
    deterministic defense). The evaluation picks the EOT sample count from it. Seeded parts are restarted after."""
    checks.module("defended", defended)
    checks.images("x", x)
    return _relative(_margins(defended, x, checks.at_least("repeats", repeats, 2)))


def _margins(defended: nn.Module, x: torch.Tensor, repeats: int) -> torch.Tensor:
    """The top-2 margins of ``repeats`` queries of ``x`` (repeats, N); seeded parts are restarted after."""
    margins = torch.stack([top2_margin(_scores(defended, x)) for _ in range(repeats)])
    reseed(defended)
    return margins


def _relative(margins: torch.Tensor) -> float:
    scale = float(margins.mean(0).abs().median())
    return float(margins.std(0).median()) / max(scale, 1e-12)
