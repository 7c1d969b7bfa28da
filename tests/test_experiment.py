"""The experiment object: built once at the front door (``experiment.setup`` from names, ``Experiment.of`` from a
module and images), carried down as it is: its runs are the run path's with its setting, ``evaluate`` takes it,
and the threat it holds is the one the attack's handle carries."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench import data, evaluate, experiment, protocol, runs
from workbench.attacks import registry as attacks
from workbench.oracle import Oracle
from workbench.threat import Threat


@pytest.fixture(scope="module")
def exp() -> experiment.Experiment:
    return experiment.setup("aaa-linear", "mnist-cnn", n=8, budgets=(10, 30))


def test_setup_resolves_the_setting_once_and_keeps_the_held_out_images_apart(exp):
    test = data.load("mnist", "test")
    entry = protocol.get("mnist")
    assert exp.protocol is entry and exp.threat == Threat("linf", 0.3) and exp.budget == 30
    assert torch.equal(exp.x, test.x[:8]) and torch.equal(exp.y, test.y[:8])
    assert torch.equal(exp.held_out[0], test.x[-entry.held_out:]) and exp.num_classes == 10
    assert exp.model == "mnist-cnn" and exp.target.key is not None and exp.target.probes.post_processing
    with pytest.raises(ValueError, match="n=501 would reach the last 500"):
        experiment.setup("none", "mnist-cnn", n=501, budgets=(10,))
    with pytest.raises(ValueError, match="norm"):
        experiment.setup("none", "mnist-cnn", n=4, budgets=(10,), norm="l1")
    with pytest.raises(ValueError, match="strictly increasing"):
        experiment.setup("none", "mnist-cnn", n=4, budgets=(30, 10))


def test_an_experiment_runs_as_the_run_path_with_its_setting(exp):
    """``Experiment.run`` is ``runs.run`` with the experiment's protocol, threat, budget and seed: the same run."""
    mine = exp.run("square")
    theirs = runs.run(exp.target, "square", exp.x, exp.y, budget=30, dataset="mnist", seed=0)
    assert torch.equal(mine.first_success, theirs.first_success) and torch.equal(mine.queries, theirs.queries)
    assert mine.threat == exp.threat and mine.final_accuracy == theirs.final_accuracy
    # a smaller ball is no easier: over seeds 0-4, robust 0.375-0.625 at eps 0.3 and 1.0 at eps 0.1 (8 images)
    eps = dataclasses.replace(exp, threat=Threat("linf", 0.1)).run("square")
    assert eps.threat.eps == 0.1 and eps.robust_accuracy() >= mine.robust_accuracy()


def test_evaluate_takes_an_experiment_and_refuses_a_second_setting(exp):
    report = evaluate.evaluate(exp, attacks=["square"], restarts=0, progress=False)
    alone = exp.run("square")
    assert report.budgets == (10, 30) and report.settings["dataset"] == "mnist"
    assert report.worst["final"] == pytest.approx(alone.final_accuracy)
    assert report.worst["robust@10"] == pytest.approx(alone.robust_accuracy(10))
    restarted = evaluate.evaluate(exp, attacks=["square"], progress=False)  # restarts only ever break more
    assert restarted.worst["final"] <= report.worst["final"]
    with pytest.raises(ValueError, match="x, eps: an experiment brings its own"):
        evaluate.evaluate(exp, exp.x, eps=0.1, attacks=["square"], progress=False)


def test_an_experiment_of_a_module_takes_the_protocol_once_and_checks_the_images():
    test = data.load("mnist", "test")
    x, y = test[:8]
    model = experiment.setup("none", "mnist-cnn", n=8, budgets=(10,)).target.defended
    bare = torch.nn.Sequential(model)  # a module of one's own around the zoo model, whose dataset it tells
    of = experiment.Experiment.of(bare, x, y, budgets=(20,))
    assert of.protocol.name == "mnist" and of.threat.eps == 0.3 and of.target.key is None
    with pytest.raises(ValueError, match="do not match dataset='cifar10-jpeg'"):
        experiment.Experiment.of(bare, x, y, dataset="cifar10-jpeg")


def test_the_handle_carries_the_attack_s_threat_object():
    """eps is held once: the attack's Threat is the object the Oracle fixes and its handle carries (and the result
    reports); a second threat on the same Oracle is refused."""
    test = data.load("mnist", "test")
    x, y = test[:4]
    model = experiment.setup("none", "mnist-cnn", n=4, budgets=(10,)).target.defended
    attack = attacks.build("square", dataset="mnist", eps=0.2, progress=False)
    oracle = Oracle(model, x, y, budget=10)
    result = attack.run(oracle)
    assert oracle.threat is attack.threat and result.threat is attack.threat
    with pytest.raises(ValueError, match="fixed as Threat"):
        oracle.handle("linf", 0.3)
    with pytest.raises(ValueError, match="eps"):
        Threat("linf", -1.0)
