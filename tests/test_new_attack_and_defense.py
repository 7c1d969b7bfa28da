"""A new attack or defense is one file and one spec entry: a toy attack (random corners of the l-inf ball) and a
toy defense (logits scaled by a factor, a prediction-keeping post-processing) are registered here, in this one
module, and ``evaluate`` runs the attack in its suite against the defense built by name, with no other module
touched. The toy attack's settings exist for MNIST only: asking for them on CIFAR-10 is a clear error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from workbench import data, evaluate, models
from workbench.attacks import registry as attacks
from workbench.attacks.base import Attack, Session
from workbench.defenses import registry as defenses


@dataclass
class _CornerState:
    x: torch.Tensor


class RandomCorners(Attack):
    """Queries random corners of the l-inf ball (x0 +- eps per pixel) until one misclassifies."""

    name = "toy-corners"
    norms = ("linf",)

    def __init__(self, *, norm: str = "linf", eps: float, spread: float = 1.0, loss: str | None = None,
                 seed: int = 0, progress: bool = True):
        super().__init__(norm=norm, eps=eps, loss=loss, seed=seed, progress=progress)
        self.spread = spread

    def init(self, session: Session) -> _CornerState:
        return _CornerState(session.x0.clone())

    def step(self, session: Session, state: _CornerState, idx: torch.Tensor) -> None:
        x = (session.x0[idx] + self.spread * self.eps * session.signs(len(idx), *session.x0.shape[1:])).clamp(0, 1)
        session.evaluate(x, idx)
        state.x[idx] = x

    def best(self, state: _CornerState) -> torch.Tensor:
        return state.x


class Scaled(nn.Module):
    """``factor * logits``: keeps every prediction."""

    def __init__(self, model: nn.Module, factor: float = 2.0):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x)


@pytest.fixture
def toys():
    attacks.register("toy-corners", attacks.AttackSpec(
        RandomCorners, {"mnist": {"linf": {"spread": 1.0}}}, "a toy: random corners of the ball",
        suites=("standard",)))
    defenses.register("toy-scaled", defenses.DefenseSpec(Scaled, "a toy: logits times 3", defaults={"factor": 3.0}))
    yield
    attacks.unregister("toy-corners")
    defenses.unregister("toy-scaled")


def test_a_registered_attack_and_defense_run_in_evaluate(toys):
    test = data.load("mnist5k", "test")
    x, y = test[:12]
    model = models.load("mnist-cnn")
    defended = defenses.prepare("toy-scaled", model)
    assert isinstance(defended, Scaled) and defended.factor == 3.0
    assert attacks.suite("standard")[-1] == "toy-corners"
    report = evaluate.evaluate(defended, x, y, undefended=model, budget=20, progress=False)
    ran = list(report.attacks["attack"])
    assert "toy-corners" in ran and "square-op" in ran  # its suite, and the post-processing one the probes call for
    row = report.attacks.set_index("attack").loc["toy-corners"]
    assert 0.0 <= row["final"] <= 1.0
    assert report.settings["dataset"] == "mnist"


def test_a_spec_without_a_dataset_s_settings_is_refused_by_name(toys):
    with pytest.raises(ValueError, match="toy-corners.*cifar10"):
        attacks.build("toy-corners", dataset="cifar10-jpeg")
    assert attacks.build("toy-corners", dataset="mnist").eps == 0.3


def test_registering_something_that_is_not_a_spec_is_refused():
    with pytest.raises(ValueError, match="spec"):
        attacks.register("bad", RandomCorners)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        defenses.register("pkg.mod:thing", defenses.DefenseSpec(Scaled, "x"))
    with pytest.raises(ValueError, match="suites"):
        attacks.register("bad", attacks.AttackSpec(RandomCorners, {}, "x", suites=("everything",)))
