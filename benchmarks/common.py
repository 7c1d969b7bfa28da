"""What the benchmarks share: the embedded default (the MNIST test split and the zoo CNN), registry defenses
prepared the one way (``runs.target``: the zoo variant a defense serves is picked there, calibration on the
protocol's held-out images), a core kept busy by another process, the command-line options every script takes,
and a best-of timer.

Run every benchmark from the repository's root as a module: ``python -m benchmarks.<name> [--help]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from workbench import data, models, protocol, runs

DATASET = "mnist"
MODEL = protocol.get(DATASET).model


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring and ``--device`` (default: CUDA where there is one)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def test_set() -> data.Dataset:
    """The embedded default's test split."""
    return data.load(DATASET, "test")


def model(device: str = "cpu", **kwargs) -> nn.Module:
    """The embedded default's zoo model."""
    return models.load(MODEL, device=device, **kwargs)


def held_out(test: data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's held-out images (calibration; never attacked)."""
    return test[len(test) - protocol.get(DATASET).held_out:]


def prepared(name: str, test: data.Dataset, device: str = "cpu") -> runs.Target:
    """The registry defense ``name`` on the default model, ready to attack (keyed for the run path's cache)."""
    return runs.target(name, MODEL, dataset=DATASET, held_out=held_out(test), device=device)


@contextmanager
def busy_core(on: bool = True) -> Iterator[None]:
    """Keep one core busy with another process for the block (as another program on a laptop would)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        if hog is not None:
            time.sleep(0.5)
        yield
    finally:
        if hog is not None:
            hog.kill()


def best(task: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` runs of ``task`` (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return min(times)
