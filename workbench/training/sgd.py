"""The CIFAR-10 zoo's training loop: SGD with Nesterov momentum, a linear warm-up then a cosine decay of the
learning rate per step, label smoothing, random crops (4-pixel zero padding) and horizontal flips, forward and
backward passes under bfloat16 autocast (weights and optimizer state stay float32), a checkpoint after every epoch
(a killed run resumes where it stopped, with the same batches) and a per-epoch log of the training loss and the
test accuracy.

Every random draw comes from a generator seeded by (seed, epoch), so a resumed run draws what an uninterrupted one
would; the intra-op thread count is fixed by the recipe (another thread count, or another CPU, may round
differently, which is why the zoo ships its weights).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench import paths
from workbench.speed import threads as intra_op_threads

Step = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    """The optimisation of one CIFAR-10 recipe (defaults: the zoo's standard model)."""

    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.2  # peak; 0.1 per 128 images, scaled linearly with the batch (Goyal et al. 2017)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup: float = 2.0  # epochs of linear warm-up from 0
    threads: int = 2
    bfloat16: bool = True  # forward and backward under bfloat16 autocast (weights and optimizer in float32)
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adam" (momentum unused)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        total, warm = self.epochs * steps_per_epoch, self.warmup * steps_per_epoch
        if step < warm:
            return self.lr * (step + 1) / warm
        return 0.5 * self.lr * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded images (offsets 0..2*pad per image) and horizontal flips with
    probability 1/2, drawn from ``gen``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(2))
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = dx[:, None] + torch.arange(w)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (n, 1, w)
    out = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Clean accuracy of ``model`` in eval mode (the mode it is left in)."""
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size))
    return hits / len(x)


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor] | None,
        schedule: Schedule, *, checkpoint: Path, log: Path, seed: int = 0, step: Step | None = None,
        progress: bool = True) -> nn.Module:
    """Train ``model`` on ``train`` = (images, labels) with ``schedule``, resuming from ``checkpoint`` where it
    holds an earlier epoch of the same run (same schedule and seed); a line per epoch is appended to ``log``
    (JSON). ``step(model, x, y, gen)`` returns the loss of one augmented batch (default: label-smoothed
    cross-entropy)."""
    x, y = train
    model = model.to(memory_format=torch.channels_last)
    if schedule.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum, nesterov=True,
                              weight_decay=schedule.weight_decay)
    run = {"schedule": asdict(schedule), "seed": seed, **({"step": getattr(step, "__qualname__", repr(step))}
                                                           if step is not None else {})}
    start = _resume(model, opt, checkpoint, run)
    per_epoch = len(x) // schedule.batch_size  # the last partial batch is dropped
    loss_of = step or (lambda m, xb, yb, g: F.cross_entropy(m(xb), yb, label_smoothing=schedule.label_smoothing))
    with intra_op_threads(schedule.threads):
        for epoch in tqdm(range(start, schedule.epochs), initial=start, total=schedule.epochs, unit="epoch",
                          desc="training", disable=not progress):
            began = time.perf_counter()
            loss = _epoch(model, opt, (x, y), schedule, _generator(seed, epoch), loss_of,
                          lambda b: schedule.lr_at(epoch * per_epoch + b, per_epoch))
            _save(model, opt, checkpoint, run, epoch + 1)
            _log(log, epoch + 1, loss, accuracy(model, *test) if test is not None else None, began)
    return model.eval()


def _generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order and augmentations: a resumed run draws what an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, train: tuple[torch.Tensor, torch.Tensor],
           schedule: Schedule, gen: torch.Generator, loss_of: Step, lr: Callable[[int], float]) -> float:
    """One epoch over a random order of the training images (the last partial batch dropped) with augmented
    batches, at the learning rate ``lr(batch index)``; returns the mean training loss."""
    (x, y), batch_size = train, schedule.batch_size
    order, per_epoch = torch.randperm(len(x), generator=gen), len(x) // batch_size
    model.train()
    total = 0.0
    for b in range(per_epoch):
        for group in opt.param_groups:
            group["lr"] = lr(b)
        idx = order[b * batch_size:(b + 1) * batch_size]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=schedule.bfloat16):
            loss = loss_of(model, augment(x[idx], gen), y[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / (per_epoch * batch_size)


def _log(log: Path, epoch: int, loss: float, test_accuracy: float | None, began: float) -> None:
    record = {"epoch": epoch, "loss": loss, "test accuracy": test_accuracy, "seconds": time.perf_counter() - began}
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")


def _save(model: nn.Module, opt: torch.optim.Optimizer, path: Path, run: dict, epoch: int) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "run": json.dumps(run)}
    paths.atomic_write(path, lambda tmp: torch.save(state, tmp))


def _resume(model: nn.Module, opt: torch.optim.Optimizer, path: Path, run: dict) -> int:
    """The epoch to start at: 0, or the checkpoint's epoch where it belongs to the same run (its model and
    optimizer state loaded)."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["run"] != json.dumps(run):
            return 0
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        return int(state["epoch"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError):
        return 0
