"""Self-checks for the lessons' exercises: one spec per exercise, one call per check cell (the machinery they run
on is ``workbench.course.checking``).

Every exercise of every lesson (``notebooks/NN_slug.ipynb``) is worked in its exercise sheet
(``notebooks/exercises/NN_slug.ipynb``): an answer cell that sets a few named answers, then a check cell::

    from workbench.course import exercises
    exercises.check("01.1", robust=robust)

The check says **pass** or **fail**; a failure comes with a hint that points at what to look at, never at the
answer. The same call is what the instructor's grader reads (``workbench.course.grading``): each check cell
shows one output of type :data:`MIME` with the exercise, the verdict and the message.

What a check tests: a property of the answer (a shape, a range, an identity that holds by construction, the
conclusion the exercise is about, with a margin larger than its spread over seeds), or agreement with a reference
computed here from the recorded tables. It never compares text. Where a check rests on a measured number, its
docstring gives the value the worked solution measures in fast mode and, where seeds change it, its range over
seeds 0-4 (fast-mode sizes, this project's 2-core CPU): the threshold clears that range.

An unanswered exercise (its answers still ``...``, as handed out) fails with "not answered yet" and never raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from workbench import experiments, published
from workbench.course.checking import (EXERCISES, MIME, Exercise, Wrong, check, check_source, exercise, get,
                                       of_lesson, stub_source, verdict)
from workbench.course.checking import fractions as _fractions, mapping as _mapping, number as _number
from workbench.course.checking import numbers as _numbers, require as _require, result as _result
from workbench.course.checking import results as _results

__all__ = ["EXERCISES", "MIME", "Exercise", "Wrong", "check", "check_source", "exercise", "get", "of_lesson",
           "stub_source", "verdict"]


# ---- 00 quickstart ---------------------------------------------------------------------------------------------

@exercise("00.1", median_queries='{"square": ..., "signhunter": ..., "bandits": ...}: median queries to fool '
                                 "the undefended model, over the images each attack fooled")
def _quickstart_attacks(median_queries: Any) -> None:
    """Square 6 (2-8 over seeds 0-4), SignHunter 16 (16), Bandits 30 (18-32): Square is the fastest."""
    medians = _numbers("median_queries", median_queries, ("square", "signhunter", "bandits"), 1, nan=True)
    _require(not math.isnan(medians["square"]), "Square fooled no image? Attack the undefended model, not AAA")
    others = [v for k, v in medians.items() if k != "square" and not math.isnan(v)]
    _require(all(medians["square"] < v for v in others),
             "another attack is faster than Square here: take the median of first_success over the fooled "
             "images of the undefended model, with one fresh run per attack")


@exercise("00.2", logit_diff='{"aaa-linear": ..., "rnd": ..., "unig": ..., "temperature": ...}: each defense\'s '
                             "logit difference to the undefended model on clean images")
def _quickstart_logit_diff(logit_diff: Any) -> None:
    """Deterministic: AAA-linear 11.8, the others 0.33-1.33 in fast mode; AAA moves the logits most."""
    diff = _numbers("logit_diff", logit_diff, ("aaa-linear", "rnd", "unig", "temperature"), 0)
    _require(min(diff.values()) > 0, "a defense with logit difference 0 changes nothing: compare each defense's "
                                     "logits on clean images with the undefended model's")
    others = max(v for k, v in diff.items() if k != "aaa-linear")
    _require(diff["aaa-linear"] > 3 * others,
             "look again at which defense reshapes the margins on purpose: its logit difference should stand out")


@exercise("00.3", results='{False: ..., True: ...}: the Result of Square against the undefended model, '
                          "without and with quantize")
def _quickstart_quantize(results: Any) -> None:
    """Deterministic: with quantize every query is on the 8-bit grid; robust accuracy 0.30 both ways (fast)."""
    runs_ = _results("results", results, (False, True))
    for quantized, result in runs_.items():
        _require(result.x_adv is not None, "run the attacks afresh (a cached Result has no x_adv)")
        on_grid = bool(((result.x_adv * 255 - (result.x_adv * 255).round()).abs() < 1e-3).all())
        _require(on_grid == quantized, f"results[{quantized}] {'is not' if quantized else 'is'} on the 8-bit grid: "
                                       "pass quantize= to the run, True for one and False for the other")
    gap = abs(runs_[True].robust_accuracy() - runs_[False].robust_accuracy())
    _require(gap <= 0.15, "robust accuracy moved a lot: run both on the same images, budget and seed")


# ---- 01 SQAs and AAA ------------------------------------------------------------------------------------------

@exercise("01.1", robust='{"undefended": ..., "AAA-linear": ...}: robust accuracy at the budget under l2 '
                         "Square with eps 2.0")
def _l2_square(robust: Any) -> None:
    """Fast mode: undefended 0.725-0.775, AAA-linear 0.925-0.975 over seeds 0-4 (gap >= 0.175)."""
    acc = _fractions("robust", robust, ("undefended", "AAA-linear"))
    _require(acc["AAA-linear"] > acc["undefended"] + 0.05,
             "AAA should still help against l2 squares: check that you used norm='l2', eps=2.0 for both models "
             "and AAA-linear (calibrated) for the defended one")


@exercise("01.2", largest_step='{"linear": ..., "sine": ...}: the largest step of each target curve '
                               "(target_margin) between neighbouring points of a fine margin grid")
def _target_steps(largest_step: Any) -> None:
    """Deterministic: 12.0 (linear, tau 6, alpha 1) and 0.005 (sine) on a 0.001 grid."""
    step = _numbers("largest_step", largest_step, ("linear", "sine"), 0)
    _require(step["linear"] >= 6, "AAA-linear's target has a jump at every interval boundary: use a grid that "
                                  "crosses several multiples of tau, and the calibrated defense's tau and alpha")
    _require(step["sine"] * 10 < step["linear"], "the sine's largest step is not small: use a fine grid "
                                                 "(steps of 0.01 or less) and the sine curve for AAA-sine")


@exercise("01.3", lost_at_2="how many correctly classified images AAA-linear lost at query 2",
          stripes_fool="how many of those the undefended model also loses within its first 2 queries (same seed)")
def _stripes(lost_at_2: Any, stripes_fool: Any) -> None:
    """Deterministic: 9 and 9 in fast mode; AAA keeps the prediction, so the two counts agree by construction."""
    lost = _number("lost_at_2", lost_at_2, 0)
    same = _number("stripes_fool", stripes_fool, 0)
    _require(lost >= 1, "count the images whose first_success is 2 among those AAA-linear lost")
    _require(same == lost, "compare the same images: run Square with the same seed on the undefended model with "
                           "a budget of 2, and count those of AAA's query-2 losses that it also fools")


# ---- 02 AAA's loss attractors --------------------------------------------------------------------------------

@exercise("02.1", betas="a DataFrame with a row per beta and columns beta, ECE and agreement",
          undefended_ece="the undefended model's ECE on the same images",
          smallest_beta="the smallest beta of your table whose ECE is below the undefended model's")
def _beta(betas: Any, undefended_ece: Any, smallest_beta: Any) -> None:
    """Deterministic: smallest beta 30 in fast mode; AAA's agreement is 1 at every beta."""
    _require(isinstance(betas, pd.DataFrame) and {"beta", "ECE", "agreement"} <= set(betas.columns),
             "betas should be a DataFrame with columns beta, ECE and agreement")
    _require(len(betas) >= 4, "try at least four values of beta, spread over several orders of magnitude")
    _require(bool((betas["agreement"] == 1).all()),
             "AAA's agreement with the undefended predictions should be 1 at every beta: post-process the same "
             "logits, with the tuned temperature")
    below = betas[betas["ECE"] < _number("undefended_ece", undefended_ece, 0, 1)]
    _require(len(below) > 0, "no beta brings the ECE below the undefended model's: try larger values of beta")
    _require(_number("smallest_beta", smallest_beta, 0) == float(below["beta"].min()),
             "smallest_beta does not match your table: read off the smallest beta whose ECE is below")


@exercise("02.2", fell_at="the queries at which the images AAA-linear lost fell (first_success of the fooled, "
                          "correctly classified images)")
def _fell_at(fell_at: Any) -> None:
    """Fast mode: 5 of 6 within the first 10 queries (0.6-1.0 over seeds 0-4); query 1 is the clean image."""
    queries = torch.as_tensor(fell_at).flatten().float()
    _require(len(queries) > 0, "no image fell: use Square against AAA-linear with the lesson's budget")
    _require(bool((queries >= 2).all()), "an image that falls at query 1 was misclassified before the attack: "
                                         "keep only the correctly classified ones")
    _require(float((queries <= 10).float().mean()) >= 0.5,
             "most falls should come early: take first_success of the fooled images only, not queries spent")


@exercise("02.3", robust='{6: ..., 100: ...}: robust accuracy of AAA-linear with each tau (aaa_row)',
          median_margin='{6: ..., 100: ...}: the median top-2 margin AAA shows on clean images with each tau')
def _tau_100(robust: Any, median_margin: Any) -> None:
    """Seed 0: fast mode robust 0.567 and 0.567, median margin 8.6 and 24.1; full sizes robust 0.62 and 0.25,
    median margin 8.6 and 23.7. Fast mode over seeds 0-4: robust at tau 100 minus at tau 6 from -0.13 to 0 (bound:
    +0.05). A larger tau buys no robustness; the margins users see grow (deterministic)."""
    acc = _fractions("robust", robust, (6, 100))
    margin = _numbers("median_margin", median_margin, (6, 100), 0)
    _require(acc[100] <= acc[6] + 0.05, "check that both rows use the same images and budget (aaa_row with each "
                                        "tau), and AAA's own robust accuracy, not the undefended model's")
    _require(margin[100] > 2 * margin[6], "the margins users see should grow with tau: measure the margin of "
                                          "AAA's output, not of the model's")


# ---- 03 UniG ----------------------------------------------------------------------------------------------------

@exercise("03.1", largest_change="the largest absolute change of one image's logits between two batches "
                                 "(same random A: reseed before each)")
def _batch_dependence(largest_change: Any) -> None:
    """Deterministic: 0.030 in fast mode (same A, another batch); 0 would mean no batch dependence."""
    change = _number("largest_change", largest_change, 0)
    _require(change > 1e-3, "the logits did not change: put the image into two batches of other images and "
                            "call unig.reseed() before each, so that only the batch differs")


@exercise("03.2", reevaluated='{0: ..., 1: ...}: UniG\'s re-evaluated robust accuracy with p = 0 and p = 1',
          undefended="the undefended model's robust accuracy on the same images and budget")
def _p_zero(reevaluated: Any, undefended: Any) -> None:
    """Fast mode over seeds 0-4: p = 0 0.55-0.75, p = 1 0.45-0.50, undefended 0.35-0.45 (gaps >= 0.1)."""
    acc = _fractions("reevaluated", reevaluated, (0, 1))
    base = _number("undefended", undefended, 0, 1)
    _require(acc[0] > base, "with p = 0 UniG keeps a random rescaling: compare re-evaluated robust accuracy "
                            "(fresh queries), not what the attacker observed")
    _require(acc[0] >= acc[1] - 0.1, "look again at p = 0: the same images, budget and query batch as p = 1")


@exercise("03.3", cosine='{("square", "undefended"): ..., ("square", "UniG"): ..., ("signhunter", "undefended"): '
                         '..., ("signhunter", "UniG"): ...}: mean pairwise cosine of the fooled perturbations')
def _uap(cosine: Any) -> None:
    """Undefended, fast mode over seeds 0-4: 0.26-0.34 (Square) and 0.35 (SignHunter), well above 0 without a
    defense (bound 0.1)."""
    keys = tuple((a, m) for a in ("square", "signhunter") for m in ("undefended", "UniG"))
    cos = _numbers("cosine", cosine, keys, -1, 1)
    _require(min(cos[("square", "undefended")], cos[("signhunter", "undefended")]) > 0.1,
             "compare the undefended rows: use the perturbations x_adv - x of the fooled images only")


# ---- 04 noise defenses -----------------------------------------------------------------------------------------

@exercise("04.1", failure_rate="{mu: ...}: the share of correctly classified images NES fails to fool against "
                               "RND (nu = 0.01), for mu from 0.002 to 0.1")
def _nes_mu(failure_rate: Any) -> None:
    """Fast mode (6 images) over seeds 0-4: mean failure 0.44-0.50 at nu / mu >= 1, 0-0.09 at nu / mu <= 0.2."""
    if isinstance(failure_rate, pd.Series):
        failure_rate = failure_rate.to_dict()
    _require(isinstance(failure_rate, Mapping), "failure_rate should be a dict {mu: failure rate}")
    rates = {_number("mu", mu, 1e-9): _number(f"failure_rate[{mu}]", v, 0, 1) for mu, v in failure_rate.items()}
    noisy = [v for mu, v in rates.items() if 0.01 / mu >= 1]
    clear = [v for mu, v in rates.items() if 0.01 / mu <= 0.2]
    _require(noisy and clear, "try mu at or below nu = 0.01 and mu of at least 0.05")
    _require(sum(noisy) / len(noisy) > sum(clear) / len(clear),
             "NES should fail more often when its step is no larger than the noise: pass mu as NES's sigma")


@exercise("04.2", observed='{1: ..., 5: ...}: robust accuracy the attacker observed with EOT M = 1 and M = 5',
          reevaluated='{1: ..., 5: ...}: the same runs\' re-evaluated robust accuracy')
def _eot_budget(observed: Any, reevaluated: Any) -> None:
    """Fast mode over seeds 0-4, M = 1: observed 0.2-0.3, re-evaluated 0.3-0.5 (gap >= 0.1)."""
    seen = _fractions("observed", observed, (1, 5))
    final = _fractions("reevaluated", reevaluated, (1, 5))
    _require(seen[1] < final[1], "with M = 1 some of the attacker's successes are noise: compare what it "
                                 "observed with the re-evaluated (fresh queries) accuracy of the same run")


@exercise("04.3", kurtosis='{"snd": ..., "snd-beta": ...}: the kurtosis (scipy.stats.kurtosis, fisher=False) '
                           "of the margin of one image queried 2000 times")
def _beta_tails(kurtosis: Any) -> None:
    """Seeds 0-2 x images 0-2: SND 2.73-3.14 (Gaussian: 3), SND-beta 4.29-5.55 (gap >= 1.5)."""
    k = _numbers("kurtosis", kurtosis, ("snd", "snd-beta"), 1)
    _require(2.3 <= k["snd"] <= 3.8, "SND's margin should look Gaussian (kurtosis near 3): query one image many "
                                     "times (at least 1000) and use fisher=False")
    _require(k["snd-beta"] >= k["snd"] + 0.8, "compare the tails: the same image, as many queries, SND-beta")


# ---- 05 gradient concealment -----------------------------------------------------------------------------------

@exercise("05.1", fgsm_accuracy='{"raw": ..., "jittered": ...}: GCM\'s accuracy under FGSM (eps 0.3) from the raw '
                           "images and from a randomly jittered start")
def _fgsm_jitter(fgsm_accuracy: Any) -> None:
    """Fast mode: raw 0.64 (deterministic), jittered 0.72-0.82 over jitter seeds 0-4."""
    acc = _fractions("fgsm_accuracy", fgsm_accuracy, ("raw", "jittered"))
    _require(acc["jittered"] > acc["raw"], "from a jittered start FGSM should do worse against GCM: take the "
                                           "gradient at the jittered images and project back onto the eps-ball")


@exercise("05.2", inner_cosine="the mean cosine between the input gradients of GCM after net.features.0 and of the "
                         "undefended model",
          inner_pgd="accuracy of GCM after net.features.0 under PGD", inner_bpda="the same under PGD with BPDA")
def _inner_gcm(inner_cosine: Any, inner_pgd: Any, inner_bpda: Any) -> None:
    """Fast mode: cosine 0.047, PGD 0.94, PGD + BPDA 0.00 (deterministic)."""
    _require(abs(_number("inner_cosine", inner_cosine, -1, 1)) < 0.3, "the gradient should be concealed: compare "
                                                           "input_gradient of the inner GCM with the model's")
    _require(_number("inner_bpda", inner_bpda, 0, 1) < _number("inner_pgd", inner_pgd, 0, 1) - 0.3,
             "BPDA needs the layer where the concealment now sits: pass the inner defense's concealment_name")


@exercise("05.3", square_robust="GCM's robust accuracy under Square at 100 queries (black box)",
          whitebox_robust="GCM's accuracy under PGD (white box), same images")
def _black_beats_white(square_robust: Any, whitebox_robust: Any) -> None:
    """Fast mode: Square 0.10-0.25 over seeds 0-4, PGD 0.60 (deterministic)."""
    _require(_number("square_robust", square_robust, 0, 1) < _number("whitebox_robust", whitebox_robust, 0, 1),
             "run both on the same images against GCM: which of the two should never lose to the other?")


# ---- 06 the defense benchmark ----------------------------------------------------------------------------------

def _rank_changes() -> set[str]:
    budgets = experiments.recorded("mnist-table").groupby("defense")[["robust@100", "robust@2500"]].mean()
    ranks = budgets.rank(ascending=False)
    return set(ranks.index[ranks["robust@100"] != ranks["robust@2500"]])


@exercise("06.1", changed="the defenses whose rank (mean robust accuracy over the five attacks) differs between "
                          "100 and 2500 queries in the recorded mnist-table")
def _rank_change(changed: Any) -> None:
    """Against the recorded table, recomputed here."""
    _require(not isinstance(changed, str), "changed should be a collection of defense names, not one string")
    given = set(changed)
    _require(given == _rank_changes(), f"your set has {len(given)} defenses: rank each budget's mean robust "
                                       "accuracy over the attacks (ties share a rank) and compare the two ranks")


@exercise("06.2", robust='{"none": ..., "aaa": ..., "at": ..., "at+aaa": ...}: robust accuracy at the last '
                         "budget of the four cells")
def _at_plus_aaa(robust: Any) -> None:
    """Fast mode (20 images, 50 queries) over seeds 0-4: none 0.25-0.30, AAA 0.50-0.65, AT 0.45-0.60, AT + AAA
    0.60-0.70; AT + AAA minus the better of the two -0.05 to +0.10 (seed 0: 0.3, 0.6, 0.6, 0.7). Full sizes (100
    images, 1000 queries) over seeds 0-4: none 0.00, AAA 0.61-0.67, AT 0.43-0.46, AT + AAA 0.69-0.75 (+0.04 to
    +0.10)."""
    acc = _fractions("robust", robust, ("none", "aaa", "at", "at+aaa"))
    _require(acc["aaa"] > acc["none"] and acc["at"] > acc["none"], "AAA and AT each beat the undefended model: "
                                                                   "check which cell is which")
    _require(acc["at+aaa"] >= max(acc["aaa"], acc["at"]) - 0.1,
             "the combination should be about as robust as the better of the two at least: AAA on mnist-cnn-at")


def _orderings_held() -> dict[str, tuple[int, int]]:
    cifar = experiments.recorded("cifar10-table")
    out = {}
    for paper, table in (("AAA", "Table 2"), ("UniG", "Table 1")):
        pairs = published.orderings(published.side_by_side(cifar, paper, table, 2500), tie=5)
        out[f"{paper} {table}"] = (int(pairs["holds"].sum()), len(pairs))
    return out


@exercise("06.3", held='{"AAA Table 2": (hold, pairs), "UniG Table 1": (hold, pairs)}: how many of each '
                       "table's orderings hold at 2500 queries (tie: 5 points)")
def _orderings(held: Any) -> None:
    """Against the recorded cifar10-table, recomputed here."""
    reference = _orderings_held()
    given = _mapping("held", held, tuple(reference))
    for source, (hold, pairs) in reference.items():
        try:
            h, p = (int(v) for v in given[source])
        except (TypeError, ValueError):
            raise Wrong(f"held[{source!r}] should be a pair (hold, pairs)") from None
        _require(p == pairs, f"{source}: count every (attack, pair of defenses) both report at 2500 queries")
        _require(h == hold, f"{source}: a difference of 5 points or less is a tie (tie=5)")


@exercise("06.4", distance="{defense: ...}: each defense's distance to the ideal corner of the cost-vs-"
                           "robustness scatter (logit difference scaled by the largest, 1 - re-evaluated)")
def _ideal(distance: Any) -> None:
    """Against the recorded mnist-table: the undefended model (logit difference 0) sits 1 - its re-evaluated
    robust accuracy from the corner."""
    table = experiments.recorded("mnist-table")
    points = table.groupby("defense").agg({"logit diff": "first", "re-evaluated": "mean"})
    dist = _numbers("distance", distance, tuple(points.index), 0, math.sqrt(2))
    _require(abs(dist["none"] - (1 - points.loc["none", "re-evaluated"])) < 1e-6,
             "the undefended model changes no logit: its distance is 1 - its mean re-evaluated robust accuracy")


# ---- 07 adaptive attacks ---------------------------------------------------------------------------------------

@exercise("07.1", robust="{threshold: ...}: robust accuracy of AAA-linear under bi-Square at the budget, for "
                         "thresholds 1, 3, 10 and 13")
def _bi_threshold(robust: Any) -> None:
    """Fast mode over seeds 0-4: threshold 10 0.25-0.55, threshold 13 0.50-0.65 (10 below 13 at every seed)."""
    acc = _fractions("robust", robust, (1, 3, 10, 13))
    _require(acc[10] < acc[13], "a threshold just below the jump tau (1 + alpha) should beat one above it: pass "
                                "the threshold as attack_kwargs to 'square-bi' against AAA-linear")


@exercise("07.2", adaptive="the Result of your attack against AAA-sine", square="the Result of Square against "
                                                                             "AAA-sine on the same images and budget")
def _against_sine(adaptive: Any, square: Any) -> None:
    """Square / op-Square / the worked solution's certain-progress Square with p_init 0.3 at seed 0: fast mode 0.60 /
    0.65 / 0.55, full sizes 0.61 / 0.57 / 0.57 (without the larger squares it stalls: 0.55 and 0.65). Over seeds
    0-4 the solution's attack stays below Square by 0.05-0.20 in fast mode and 0.04-0.11 at the full sizes."""
    mine, plain = _result("adaptive", adaptive), _result("square", square)
    _require(len(mine.robust) == len(plain.robust) and mine.budget == plain.budget,
             "run both on the same images with the same budget")
    _require(bool((mine.queries <= mine.budget).all()), "your attack spent more queries than the budget")
    _require(mine.robust_accuracy() <= plain.robust_accuracy(),
             "your attack does worse than plain Square: use what the sine's period and amplitude guarantee "
             "about a drop of the shown margin")


@exercise("07.3", results="{1: ..., 5: ...}: the Results of Square with EOT M = 1 and M = 5 against RND, same "
                          "number of queries")
def _eot_curves(results: Any) -> None:
    """Fast mode over seeds 0-4, M = 1: observed 0.2-0.3 below re-evaluated 0.3-0.5."""
    runs_ = _results("results", results, (1, 5))
    _require(runs_[1].queries_per_point == 1 and runs_[5].queries_per_point == 5, "pass eot=1 and eot=5")
    _require(runs_[1].budget == runs_[5].budget, "give both the same budget of queries (not of points)")
    _require(runs_[1].robust_accuracy() < runs_[1].final_accuracy,
             "against RND the M = 1 run's observed successes include noise: run it through runs.run so that the "
             "final images are re-evaluated")


# ---- 08 evaluate your own defense ------------------------------------------------------------------------------

@exercise("08.1", by_tau="{tau: {attack: final robust accuracy}} for tau 3, 6, 12 and the attacks square, "
                        "signhunter and square-op")
def _sawtooth_tau(by_tau: Any) -> None:
    """Fast mode over seeds 0-4: square 0.60-0.80, square-op 0.15-0.40 (at least 0.25 below square at every tau);
    square-op at tau 12 never above tau 3."""
    rows = _mapping("by_tau", by_tau, (3, 6, 12))
    acc = {t: _fractions(f"by_tau[{t}]", row, ("square", "signhunter", "square-op")) for t, row in rows.items()}
    _require(all(a["square-op"] < a["square"] for a in acc.values()),
             "op-Square should beat Square against the sawtooth at every tau")
    _require(acc[12]["square-op"] <= acc[3]["square-op"] + 0.1,
             "a longer period should not protect against op-Square: the same images and budget for every tau")


@exercise("08.2", worst='{"sawtooth": ..., "smooth": ...}: the worst-case final robust accuracy of each')
def _smooth(worst: Any) -> None:
    """Fast mode over seeds 0-4: sawtooth 0.20-0.35, smooth 0.10-0.15; full sizes (seed 0): 0.00 and 0.02."""
    acc = _fractions("worst", worst, ("sawtooth", "smooth"))
    _require(acc["smooth"] <= acc["sawtooth"] + 0.05, "the smooth curve hands greedy attacks part of every period: "
                                               "evaluate both with the full attack suite")


@exercise("08.3", clean="{sigma: ...}: re-evaluated clean accuracy of NoisyLogits for sigma 0.3, 1 and 3",
          worst_case="{sigma: ...}: its worst-case final robust accuracy")
def _noisy_logits(clean: Any, worst_case: Any) -> None:
    """Clean 0.98, 0.98, 0.955 (200 images, both modes); worst case 0.75, 0.75, 0.70 in fast mode but 0.52, 0.77,
    0.78 at the full sizes: the worst case is checked only against clean accuracy, the trade-off is the student's."""
    acc = _fractions("clean", clean, (0.3, 1.0, 3.0))
    low = _fractions("worst_case", worst_case, (0.3, 1.0, 3.0))
    _require(acc[3.0] <= acc[0.3], "more noise on the logits cannot raise clean accuracy: re-evaluate with fresh "
                                   "queries (metrics.reevaluated_accuracy)")
    _require(all(low[s] <= acc[s] + 0.05 for s in acc), "a worst case above clean accuracy: take evaluate's "
                                                          "worst['final'] (re-evaluated), not what the attacker saw")


# ---- 09 ImageNet ----------------------------------------------------------------------------------------------

@exercise("09.1", results="{0.05: ..., 0.01: ...}: the Results of Square with each p_init, same images and budget")
def _p_init(results: Any) -> None:
    """A bookkeeping check: fast mode's two 224-pixel images cannot tell the two apart (robust 0.5 and 0.5 at seed
    0, but 1.0 and 0.5 at seed 2: over seeds 0-4 either can come out ahead), so only the runs are checked."""
    runs_ = _results("results", results, (0.05, 0.01))
    _require(runs_[0.05].budget == runs_[0.01].budget and len(runs_[0.05].robust) == len(runs_[0.01].robust),
             "run both on the same images with the same budget")
    _require(all(bool((r.queries <= r.budget).all()) for r in runs_.values()),
             "a run spent more queries than its budget: use a fresh Oracle for each p_init")


@exercise("09.2", agreement='{"all": ..., "10": ...}: AAA\'s agreement with Lite0 calibrated on all held-out '
                            "samples and on 10", ece='{"all": ..., "10": ...}: the ECE of each')
def _calibration(agreement: Any, ece: Any) -> None:
    """Deterministic: agreement 1 and 1; ECE 0.173 and 0.229 in fast mode."""
    agree = _fractions("agreement", agreement, ("all", "10"))
    errors = _fractions("ece", ece, ("all", "10"))
    _require(agree["all"] == 1 and agree["10"] == 1, "AAA never changes a prediction: compare AAA's "
                                                     "predictions with Lite0's on the same images")
    _require(errors["all"] != errors["10"], "the two calibrations gave the same ECE: calibrate a fresh AAA on "
                                            "the first 10 held-out samples")


@exercise("09.3", cosine='{(attack, model): ...}: the mean pairwise cosine for attack "square" and "signhunter" and '
                         'model "undefended" and "UniG" (nan where fewer than two images were fooled)',
          fooled="{(attack, model): ...}: how many images each run fooled")
def _imagenet_uap(cosine: Any, fooled: Any) -> None:
    """A shape check: ImageNet runs in fast mode fool one or two images, so only the bookkeeping is checked."""
    keys = tuple((a, m) for a in ("square", "signhunter") for m in ("undefended", "UniG"))
    cos = _numbers("cosine", cosine, keys, -1, 1, nan=True)
    count = _numbers("fooled", fooled, keys, 0)
    for key in keys:
        _require(math.isnan(cos[key]) == (count[key] < 2),
                 f"cosine[{key}]: a mean pairwise cosine needs at least two fooled images (nan otherwise)")


# ---- 10 detection and denoising -------------------------------------------------------------------------------

@exercise("10.1", detected="{0.3: ..., 0.7: ...}: the share of attacked images Blacklight detected (plain Square) "
                          "with each threshold")
def _blacklight_threshold(detected: Any) -> None:
    """Deterministic (the salt is seeded): 1.0 and 1.0 in fast mode. A larger threshold flags at every distance a
    smaller one flags, so it detects at least as many images: an identity of the mechanism."""
    shares = _fractions("detected", detected, (0.3, 0.7))
    _require(shares[0.7] > 0, "Blacklight detected nothing: run plain Square against Blacklight (defenses.build("
                              "'blacklight', ...)), not against the undefended model, and read "
                              "metrics.detection(result)['detected']")
    _require(shares[0.7] >= shares[0.3], "the threshold is a distance (the share of digests missing): a query "
                                         "flagged at 0.3 is flagged at 0.7 too; check which share belongs to which "
                                         "threshold")


@exercise("10.2", robust='{"empty": ..., "closest": ...}: plain Square\'s final robust accuracy against Blacklight '
                         "under each refusal convention")
def _refusal_convention(robust: Any) -> None:
    """Deterministic: equal by construction (0.5 and 0.5 in fast mode): plain Square keeps no refused candidate,
    whatever answer came with the flag."""
    shares = _fractions("robust", robust, ("empty", "closest"))
    _require(shares["empty"] == shares["closest"], "the two runs differ: use the same images, budget and seed, and "
                                                   "change only serving={'refusal': ...}")


@exercise("10.3", detected="{0: ..., 8: ...}: the share of attacked images Blacklight detected with 0 and 8 benign "
                          "queries interleaved before each of Square's queries (unbounded memory)")
def _long_interval(detected: Any) -> None:
    """Deterministic: 1.0 and 1.0 in fast mode. With unbounded memory the attack's earlier queries are never
    forgotten, so interleaving cannot lower the detected share."""
    shares = _fractions("detected", detected, (0, 8))
    _require(shares[0] > 0, "Blacklight detected nothing without interleaving: run plain Square against Blacklight")
    _require(shares[8] >= shares[0], "fewer detections with interleaving? With unbounded memory nothing is "
                                     "forgotten: pass serving={'interleave': 8, 'benign': images} to runs.run, and "
                                     "keep the default (unbounded) memory")
