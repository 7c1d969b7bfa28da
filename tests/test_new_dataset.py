"""A new dataset is one protocol entry: a toy dataset (random 3x16x16 images), its entry and a tiny zoo model are
registered, and ``evaluate``, a one-cell grid and the preparation of a registry defense run on it with no other
module touched."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from workbench import evaluate, experiments, models, protocol, runs
from workbench.defenses import registry as defenses


def _images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 64 if split == "train" else 48
    return torch.rand(n, 3, 16, 16, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture
def toy(tmp_path):
    protocol.register(protocol.Protocol(
        "toy", "toy", test_size=48, held_out=16, eps={"linf": 8 / 255, "l2": 0.5}, settings="cifar10",
        model="toy-net", budgets=(10, 20), images=_images))
    models.register(models.ZooEntry("toy-net", _net, "toy"))
    weights = tmp_path / "toy-net.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(_net().state_dict(), weights)
    yield weights
    protocol.unregister("toy")
    models.unregister("toy-net")


def test_a_toy_dataset_runs_evaluate_a_grid_and_a_registry_defense(toy, tmp_path):
    x, y = _images("test")
    model = models.load("toy-net", weights=toy)
    report = evaluate.evaluate(model, x[:32], y[:32], undefended=model, dataset="toy", budget=20,
                               attacks=["square", "simba"], progress=False)
    assert list(report.attacks["attack"]) == ["square", "simba"] and 0 <= report.worst["final"] <= 1

    cells = [experiments.cell(dataset="toy", model="toy-net", weights=str(toy), defense="rnd", attack="square",
                              n=32, budgets=(10, 20))]
    table = experiments.tabulate(cells, cache_dir=tmp_path / "grid", progress=False)
    assert table.loc[0, "dataset"] == "toy" and table.loc[0, "eps"] == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="held out"):
        experiments.validate([experiments.cell(dataset="toy", model="toy-net", n=33)])

    target = runs.target("aaa-linear", "toy-net", dataset="toy", weights=toy, held_out=(x[32:], y[32:]))
    assert target.probes.post_processing and isinstance(target.defended, nn.Module)
    record = runs.run(target, "square", x[:32], y[:32], budget=20, dataset="toy")
    assert record.queries.max() <= 20 and len(record.robust) == 32
    unig = defenses.prepare("unig", model, dataset="toy")  # its reference images: the toy training split
    assert unig(x[:1]).shape == (1, 4)
