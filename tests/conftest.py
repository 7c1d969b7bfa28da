"""Shared fixtures: the embedded data, the shipped zoo CNN, figures into a tmp dir."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

# The same examples on every run, so that CI is reproducible (a property that fails, fails every time).
settings.register_profile("workbench", derandomize=True)
settings.load_profile("workbench")

from workbench import data, models


@pytest.fixture(autouse=True)
def _figures_elsewhere(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FIGURES", str(tmp_path_factory.getbasetemp() / "figures"))


@pytest.fixture(scope="session")
def test_set() -> data.Dataset:
    return data.load("mnist5k", split="test")


@pytest.fixture(scope="session")
def cnn() -> torch.nn.Module:
    return models.load("mnist-cnn")
