"""No silent default dataset: the protocol comes from dataset=, else a zoo model (also inside a defense), else the
images' shape where exactly one protocol fits; anything else asks for dataset=, and images of another protocol's
shape are refused."""

from __future__ import annotations

import pytest
import torch

from workbench import data, experiments, models, runs, setting
from workbench.attacks import build as attack
from workbench.defenses.registry import build as defend
from workbench.evaluate import evaluate


@pytest.fixture(scope="module")
def cifar() -> data.Dataset:
    return data.load("cifar10-jpeg", split="test")


def test_the_protocol_comes_from_the_argument_the_zoo_or_the_shape(cnn):
    resnet = models.load("cifar10-resnet20")
    assert setting.resolve("cifar10").name == "cifar10"
    assert setting.resolve(model=resnet).name == "cifar10-jpeg"
    assert setting.resolve(model=defend("aaa-linear", resnet)).name == "cifar10-jpeg"  # a zoo model inside
    assert setting.resolve(model="mnist-cnn-at").name == "mnist"  # a zoo name
    assert setting.resolve(model="resnet50").name == "imagenet"  # a torchvision classifier by name
    assert setting.resolve(model=models.build("resnet18")).name == "imagenet"
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    assert setting.resolve(model=plain, images=torch.rand(2, 1, 28, 28)).name == "mnist"  # one protocol fits
    with pytest.raises(ValueError, match=r"needs dataset=.*'cifar10', 'cifar10-jpeg'"):
        setting.resolve(model=plain, images=torch.rand(2, 3, 32, 32))  # two fit: ask
    with pytest.raises(ValueError, match="needs dataset="):
        setting.resolve(model=plain)
    with pytest.raises(ValueError, match="dataset"):
        setting.resolve("svhn")


def test_images_that_do_not_fit_the_protocol_are_refused_naming_both(cnn, cifar):
    with pytest.raises(ValueError, match=r"\(3, 32, 32\) do not match dataset='mnist'.*\(1, 28, 28\)"):
        setting.resolve("mnist", images=cifar.x[:2])
    with pytest.raises(ValueError, match="do not match dataset='mnist'"):
        evaluate(cnn, cifar.x[:8], cifar.y[:8], dataset="mnist", budget=10, attacks=["square"], progress=False)
    with pytest.raises(ValueError, match="do not match dataset='cifar10-jpeg'"):  # the zoo's, against MNIST images
        evaluate(models.load("cifar10-resnet20"), data.load("mnist5k", split="test").x[:8], torch.zeros(8).long(),
                 budget=10, attacks=["square"], progress=False)


def test_evaluate_on_a_cifar10_zoo_model_attacks_at_cifar10s_eps(cifar):
    """The issue's case: a defense around a CIFAR-10 zoo model, CIFAR-10 images, no dataset=: 8/255, not 0.3."""
    defended = defend("aaa-linear", models.load("cifar10-resnet20"))
    x, y = cifar[:8]
    report = evaluate(defended, x, y, budget=10, attacks=["square"], progress=False)
    assert report.settings["dataset"] == "cifar10-jpeg" and report.settings["eps"] == pytest.approx(8 / 255)
    record = runs.run(runs.Target.of(defended, x), "square", x, y, budget=5)
    delta = (record.x_adv - x).abs().amax()
    assert delta <= 8 / 255 + 1e-6


def test_a_grid_cell_and_the_attack_registry_have_no_default_dataset():
    assert experiments.cell(model="cifar10-resnet20").dataset == "cifar10-jpeg"
    assert experiments.cell(dataset="mnist").model == "mnist-cnn"
    with pytest.raises(ValueError, match="dataset= or model="):
        experiments.cell(n=10)
    with pytest.raises(ValueError, match="needs dataset="):
        attack("square")
    assert attack("square", dataset=setting.resolve(model="cifar10-resnet20")).eps == pytest.approx(8 / 255)
