"""Bad input over the public API gets a ValueError that names the argument (never a raw torch error, never silent
acceptance), and valid numbers are accepted in any numeric type (Python, numpy, 0-d tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.toy import linear_model
from workbench import data, experiments, metrics, models
from workbench.attacks import build, names
from workbench.attacks.eot import EOT
from workbench.attacks.square import Square
from workbench.attacks.whitebox import pgd
from workbench.defenses.aaa import AAA
from workbench.defenses.dent import DENT
from workbench.defenses.gcm import GCM
from workbench.defenses.noise import InputNoise
from workbench.defenses.registry import build as defend
from workbench.defenses.unig import UniG
from workbench.oracle import Oracle


def mnist_cell(**fields) -> experiments.Cell:
    return experiments.cell(dataset="mnist", **fields)

X = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2])
MODEL = linear_model(side=4)
NORMED = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8),
                             torch.nn.Linear(8, 3)).eval()


def oracle(**kw) -> Oracle:
    return Oracle(MODEL, X, Y, **{"budget": 5, **kw})


def result():
    return Square(eps=0.1, progress=False).run(oracle())


BAD = {
    "model is a function": (lambda: Oracle(lambda x: x, X, Y, budget=5), "model must be a torch.nn.Module"),
    "uint8 images": (lambda: Oracle(MODEL, (X * 255).to(torch.uint8), Y, budget=5), r"x must .* x.float\(\) / 255"),
    "no images": (lambda: Oracle(MODEL, X[:0], Y[:0], budget=5), "x must hold at least one image"),
    "float budget": (lambda: oracle(budget=5.0), "budget"),
    "zero budget": (lambda: oracle(budget=0), "budget"),
    "quantize not a bool": (lambda: oracle(quantize="yes"), "quantize"),
    "unknown scores": (lambda: oracle(scores="softmax"), "scores"),
    "float query indices": (lambda: oracle().query(X, torch.tensor([0.0, 1.0, 2.0])), "idx"),
    "negative query indices": (lambda: oracle().query(X, torch.tensor([-1, 0, 1])), "idx"),
    "query index past the images": (lambda: oracle().query(X, torch.tensor([0, 1, 7])), "idx"),
    "query of the wrong shape": (lambda: oracle().query(X[:, :, :2], torch.arange(3)), "x must have shape"),
    "unknown norm": (lambda: oracle().handle("l1", 0.3), "norm"),
    "negative eps": (lambda: oracle().handle("linf", -1), "eps"),
    "nan eps": (lambda: Square(eps=float("nan")), "eps"),
    "eps as text": (lambda: Square(eps="0.3"), "eps"),
    "float seed": (lambda: Square(eps=0.3, seed=1.5), "seed"),
    "progress not a bool": (lambda: Square(eps=0.3, progress="no"), "progress"),
    "float result budget": (lambda: result().robust_accuracy(100.5), "budget"),
    "negative result budget": (lambda: result().robust_accuracy(-1), "budget"),
    "budgets not increasing": (lambda: experiments.validate([mnist_cell(budgets=[4, 2])]), "budgets"),
    "a zero budget in a curve": (lambda: metrics.robust_accuracy_curve(result(), [0, 2]), "budgets"),
    "target out of range": (lambda: Square(eps=0.1, progress=False).run(oracle(), torch.tensor([1, 2, 7])),
                            "targets"),
    "square l2 on 4x4 images": (lambda: Square(norm="l2", eps=0.5, progress=False).run(oracle()), "5 x 5"),
    "eot m not an integer": (lambda: EOT(Square(eps=0.3), m=2.5), "m"),
    "n larger than the split": (lambda: data.load("mnist5k", "test", n=2000), "n=2000"),
    "unknown split": (lambda: data.load("mnist5k", "val"), "split"),
    "metrics on empty logits": (lambda: metrics.accuracy(torch.zeros(0, 3), Y[:0]), "logits"),
    "metrics on mismatched rows": (lambda: metrics.accuracy(torch.zeros(3, 3), Y[:2]), "y"),
    "ece on mismatched rows": (lambda: metrics.ece(torch.zeros(3, 3), Y[:2]), "y"),
    "logit difference of other shapes": (lambda: metrics.logit_difference(torch.zeros(3, 3), torch.zeros(3, 4)),
                                         "reference"),
    "aaa with infinite beta": (lambda: AAA(MODEL, beta=float("inf")), "beta"),
    "aaa with nan alpha": (lambda: AAA(MODEL, alpha=float("nan")), "alpha"),
    "unig with delta 0": (lambda: UniG(MODEL, delta=0), "delta"),
    "noise with nan sigma": (lambda: InputNoise(MODEL, sigma=float("nan")), "sigma"),
    "registry defense with a bad value": (lambda: defend("rnd", MODEL, sigma="x"), "sigma"),
    "pgd with eps as text": (lambda: pgd(MODEL, X, Y, eps="a", progress=False), "eps"),
    "pgd with a negative seed": (lambda: pgd(MODEL, X, Y, eps=0.3, seed=-1, progress=False), "seed"),
    "grid with a bad attack value": (lambda: experiments.validate([mnist_cell(attack_kwargs={"p_init": 2.0})]),
                                     "cell 0 .*p_init"),
    "grid with a bad defense value": (lambda: experiments.validate(
        [mnist_cell(defense="rnd", defense_kwargs={"sigma": -1})]), "cell 0 .*sigma"),
    "grid with float n": (lambda: mnist_cell(n=10.5), "n"),
    "ece with labels outside the classes": (lambda: metrics.ece(torch.zeros(3, 3), torch.tensor([0, 1, 5])), "y"),
    "query stats past the run's budget": (lambda: metrics.query_stats(result(), budget=6), "budget=6"),
    "an unknown device": (lambda: models.load("mnist-cnn", device="quantum"), "device='quantum'"),
    "a recording of 10^12 queries": (lambda: oracle(budget=10 ** 12, record=True), "budget"),
    "a half-precision model under GCM": (lambda: GCM(linear_model(side=4).half()), "float16.*model.float"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_gets_a_value_error_naming_it(case):
    call, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_a_corrupt_image_names_the_file_and_its_role(tmp_path):
    """A broken JPEG inside an ImageNet folder (or a CIFAR-10 class folder) is a ValueError naming the file."""
    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="ImageNet validation image .*broken.JPEG"):
        data.load("imagenet", root=tmp_path)


def test_every_attack_refuses_an_empty_batch_before_it_starts():
    for name in names():
        with pytest.raises(ValueError, match="at least one image"):
            build(name, dataset="mnist", progress=False).run(Oracle(MODEL, X[:0], Y[:0], budget=5))


def test_a_cache_folder_that_cannot_be_written_fails_before_anything_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cache_dir"):
        experiments.tabulate([mnist_cell(n=2, budgets=(2,))], cache_dir=blocker / "sub", progress=False)


def test_eps_far_outside_the_data_range_warns():
    with pytest.warns(UserWarning, match="whole"):
        Square(eps=5)
    with pytest.warns(UserWarning, match="diameter"):
        wide = linear_model(side=8)
        Square(norm="l2", eps=50.0, progress=False).run(Oracle(wide, torch.rand(3, 1, 8, 8), Y, budget=2))


GOOD = {
    "numpy eps, seed and budget": lambda: Square(eps=np.float32(0.1), seed=np.int64(2), progress=False).run(
        oracle(budget=np.int64(4))),
    "0-d tensor eps and seed": lambda: Square(eps=torch.tensor(0.1), seed=torch.tensor(2), progress=False),
    "float64 images": lambda: Oracle(MODEL, X.double(), Y, budget=2).query(X.double(), torch.arange(3)),
    "numpy budgets and an int budget": lambda: (metrics.robust_accuracy_curve(result(), np.array([2, 5])),
                                                metrics.summary(result(), 5)),
    "numpy and tensor result budgets": lambda: (result().robust_accuracy(np.int64(3)),
                                                result().robust_accuracy(torch.tensor(3))),
    "an int as the budgets of a cell": lambda: experiments.validate([mnist_cell(budgets=100, n=np.int64(5))]),
    "numpy hyperparameters of defenses": lambda: (AAA(MODEL, tau=np.float32(6), kappa=np.int64(3)),
                                                  DENT(NORMED, lr=np.float64(1e-3)), UniG(MODEL, delta=np.float32(0.1))),
    "numpy eot": lambda: build("square", dataset="mnist", eot=np.int64(2)),
}


@pytest.mark.parametrize("case", list(GOOD), ids=list(GOOD))
def test_valid_numbers_are_accepted_in_any_numeric_type(case):
    GOOD[case]()
