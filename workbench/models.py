"""Architectures with normalization inside, and a small zoo of shipped, hash-pinned models.

Every model maps images in [0, 1] of shape (N, C, H, W) to logits (N, K): normalization is its first layer.

- ``"mnist-cnn"``: a small CNN (two conv + BatchNorm blocks, two linear layers) trained on the embedded MNIST-5k
  training split; ``"mnist-cnn-at"`` (PGD adversarial training) and ``"mnist-cnn-gf"`` (Gaussian augmentation)
  are fine-tuned from it. Their weights ship inside the package (``workbench/zoo/``), pinned by SHA-256, and load
  with ``weights_only=True``: every machine gets the same model. ``train(name)`` (or ``python -m workbench.models
  train NAME``) retrains one with the same seeded recipe.
- ``"preactresnet18"`` (UniG's CIFAR-10 model) and ``"wrn-28-10"`` (AAA's): architectures; load weights from a
  local file with ``load(name, weights=path)``.
- Any torchvision ImageNet classifier by name (``"resnet50"``, ``"wide_resnet50_2"``...): weights from a local
  file or from torchvision's own cache folder; nothing is ever downloaded.

Example::

    from workbench import models
    net = models.load("mnist-cnn")          # the shipped weights, SHA-256 checked
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench import checks, paths

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a model."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Normalized(nn.Module):
    """A network behind a normalization layer: ``net(norm(x))``. ``net`` keeps its own state-dict names, so
    published checkpoints load into it unchanged."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.norm = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class MnistCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks, a hidden linear layer and the classifier ``fc`` (its input are the
    penultimate features that UniG works on)."""

    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
        )
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ---------------------------------------------------------------------------------------------- CIFAR-10 nets
class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He et al. 2016) for 32x32 inputs; the classifier is ``linear``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.layer1 = self._layer(64, 2, 1)
        self.layer2 = self._layer(128, 2, 2)
        self.layer3 = self._layer(256, 2, 2)
        self.layer4 = self._layer(512, 2, 2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


class WideBasic(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.equal else self.convShortcut(out)
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + shortcut


class NetworkBlock(nn.Module):
    def __init__(self, layers: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[WideBasic(in_planes if i == 0 else out_planes, out_planes,
                                               stride if i == 0 else 1) for i in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-depth-width (Zagoruyko & Komodakis 2016) with RobustBench's parameter names, so RobustBench's
    CIFAR-10 checkpoints load into it; the classifier is ``fc``."""

    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(self.relu(self.bn1(out)), 1).flatten(1)
        return self.fc(out)


# ------------------------------------------------------------------------------------------------- the zoo
@dataclass(frozen=True)
class Recipe:
    """How a zoo model is built and (for trainable ones) trained by ``train``."""

    build: Callable[[], nn.Module]
    dataset: str | None = None
    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    base: str | None = None  # fine-tune this zoo model instead of training from scratch
    step: Callable[[], Callable] | None = None  # makes the loss of one batch (default: cross-entropy)


def _adversarial():
    from workbench.training import adversarial_step

    return adversarial_step(eps=0.3, steps=7)


def _gaussian():
    from workbench.training import gaussian_step

    return gaussian_step(sigma=0.05)


ARCHITECTURES: dict[str, Recipe] = {
    "mnist-cnn": Recipe(lambda: Normalized(MnistCNN(), MNIST_MEAN, MNIST_STD), "mnist5k", epochs=6),
    # PGD-7 adversarial training at eps 0.3, fine-tuned from mnist-cnn (the AT baseline), 10 epochs at Adam lr 5e-4:
    # with lr 1e-3 the clean accuracy swung between epochs (0.66-0.89) and ended at 0.805 (PGD-40: 0.46); at 5e-4 it
    # climbs steadily (a per-epoch probe: 0.76, 0.78, 0.82, 0.88, 0.92, 0.93, 0.93, 0.95 over 8 epochs); the shipped
    # model: clean 0.901 on the 1000 test images, PGD-40 (l-inf 0.3) 0.465 on the first 200
    "mnist-cnn-at": Recipe(lambda: Normalized(MnistCNN(), MNIST_MEAN, MNIST_STD), "mnist5k", epochs=10, lr=5e-4,
                           base="mnist-cnn", step=_adversarial),
    # Gaussian augmentation (nu 0.05, loss of the expectation over 4 draws), fine-tuned from mnist-cnn (RND-GF)
    "mnist-cnn-gf": Recipe(lambda: Normalized(MnistCNN(), MNIST_MEAN, MNIST_STD), "mnist5k", epochs=2,
                           base="mnist-cnn", step=_gaussian),
    "preactresnet18": Recipe(lambda: Normalized(PreActResNet18(), CIFAR_MEAN, CIFAR_STD)),
    "wrn-28-10": Recipe(lambda: Normalized(WideResNet(28, 10), CIFAR_MEAN, CIFAR_STD)),
}

ZOO = Path(__file__).resolve().parent / "zoo"
# The shipped weights of the trainable zoo models (package data under workbench/zoo/), pinned by SHA-256: every
# machine loads the same model. Made by ``python -m workbench.models train NAME`` (seeded, one thread).
SHIPPED: dict[str, str] = {
    "mnist-cnn": "115c812624ac4a38f3b272bd6f84d16a5f8b55f1ccfd362fc1ef6a2f5746cd4f",
    "mnist-cnn-at": "2bd5a81db63334843c4391ad942b8750882720452bb902bea04f66ee6b7bd531",
    "mnist-cnn-gf": "743ad658ad501d9298575299cb1f96521bbbb5c313bfe80e64978e284e6e3590",
}


def names() -> list[str]:
    """Every name ``build`` and ``load`` accept: the zoo and torchvision's ImageNet classifiers."""
    import torchvision

    return sorted(ARCHITECTURES) + sorted(torchvision.models.list_models(module=torchvision.models))


def build(name: str, num_classes: int | None = None) -> nn.Module:
    """An untrained model of the named architecture (normalization included)."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name].build()
    import torchvision

    checks.choice("name", name, names())
    net = torchvision.models.get_model(name, weights=None, **({"num_classes": num_classes} if num_classes else {}))
    return Normalized(net, IMAGENET_MEAN, IMAGENET_STD)


def load(name: str, *, weights: str | Path | None = None, device: str | torch.device | None = None,
         channels_last: bool = True) -> nn.Module:
    """A trained model in eval mode, with gradients of its parameters switched off, its convolution weights in
    channels_last memory format (same values; convolutions run about twice as fast on a CPU in that layout).

    Args:
        name: a zoo name (``names()`` lists them).
        weights: a local checkpoint (a state dict, loaded with ``weights_only=True``); for the zoo's MNIST models
            it defaults to the shipped file (its SHA-256 checked), for torchvision models to torchvision's cache.
        device: where to put the model (default: CPU).
        channels_last: store 4-D weights in channels_last memory format (default True).
    """
    model = build(name)
    path = Path(weights).expanduser() if weights is not None else weights_path(name)
    _load_state(model, path, "weights")
    model.eval().requires_grad_(False)
    if checks.flag("channels_last", channels_last):
        model = model.to(memory_format=torch.channels_last)
    return model.to(device) if device is not None else model


def weights_path(name: str) -> Path:
    """The file the weights of a zoo or torchvision model load from: the shipped file of a zoo MNIST model
    (checked against its pinned SHA-256), torchvision's cache folder for torchvision models."""
    if name in SHIPPED:
        return _shipped(name)
    if name in ARCHITECTURES:
        raise ValueError(f"weights is required for name={name!r}: pass the path of a local checkpoint")
    checks.choice("name", name, names())
    return _torchvision_cache(name)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shipped(name: str) -> Path:
    path = ZOO / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"the shipped weights of {name!r} are missing ({path}); reinstall the workbench, or "
                         f"retrain them with `python -m workbench.models train {name}` and pass weights=<file>")
    found = sha256(path)
    if found != SHIPPED[name]:
        raise ValueError(f"weights file {path} has SHA-256 {found[:16]}..., not the pinned {SHIPPED[name][:16]}... "
                         f"of {name!r}: the file was changed or damaged; restore it (git checkout -- {path.name} "
                         f"in workbench/zoo, or reinstall the workbench)")
    return path


def _load_state(model: nn.Module, path: Path, arg: str) -> None:
    """Load a checkpoint into ``model``; any problem with the file is a ValueError naming it and the fix."""
    if not path.is_file():
        raise ValueError(f"{arg}={str(path)!r} is not an existing file")
    if path.stat().st_size == 0:
        raise ValueError(f"{arg}: weights file {path} is empty; delete it and retrain or copy the checkpoint again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated, corrupt or non-checkpoint files
        raise ValueError(f"{arg}: weights file {path} is corrupt, truncated or not a PyTorch checkpoint "
                         f"({type(err).__name__}: {str(err)[:200]}); delete it and retrain or copy it again") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{arg}: weights file {path} holds no state dict of tensors (got {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    target = model.net if isinstance(model, Normalized) and not any(k.startswith("net.") for k in state) else model
    try:
        target.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{arg}: weights file {path} does not fit this architecture "
                         f"({type(model.net if isinstance(model, Normalized) else model).__name__}): "
                         f"{str(err).splitlines()[0][:300]}; pass the checkpoint of the matching model") from None


def _torchvision_cache(name: str) -> Path:
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise ValueError(f"no weights for name={name!r} in torchvision's cache ({path}); nothing is downloaded: "
                         f"pass weights=<local file> or place the file there")
    return path


def train(name: str, out: str | Path | None = None, *, epochs: int | None = None, seed: int = 0,
          progress: bool = True) -> Path:
    """Train the zoo model ``name`` with its seeded recipe (the recipe the shipped weights were made with) and
    write its state dict atomically to ``out`` (default: ``<data_dir>/<name>.pt``). Fine-tuned variants start
    from the shipped weights of their base. ``epochs`` overrides the recipe's (e.g. a quick check).

    Training is single-threaded and seeded, initial weights included; another CPU may still round differently,
    which is why the zoo ships its weights instead of retraining them."""
    trainable = tuple(n for n, r in ARCHITECTURES.items() if r.dataset is not None)
    checks.choice("name", name, trainable)
    recipe = ARCHITECTURES[name]
    if epochs is not None:
        checks.at_least("epochs", epochs, 1)
        recipe = dataclasses.replace(recipe, epochs=epochs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initial weights too: the same model whatever ran before in the process
        model = recipe.build()
    if recipe.base is not None:
        model.load_state_dict(load(recipe.base).state_dict())
        model.requires_grad_(True)
    fit(model, recipe, seed=seed, step=recipe.step() if recipe.step else None, progress=progress)
    state = model.state_dict()
    target = Path(out).expanduser() if out is not None else paths.data_dir() / f"{name}.pt"
    paths.atomic_write(target, lambda tmp: torch.save(state, tmp))
    return target


def fit(model: nn.Module, recipe: Recipe, seed: int = 0,
        step: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        progress: bool = True) -> nn.Module:
    """Train ``model`` on the recipe's training split with Adam and cross-entropy (or a custom ``step`` that
    returns the loss of one batch, e.g. adversarial training), seeded, on the CPU, with a progress bar."""
    from workbench import data

    train_set = data.load(recipe.dataset, split="train")
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: multi-threaded reductions vary from run to run
    try:
        return _fit(model, recipe, train_set, gen, seed, step, progress)
    finally:
        torch.set_num_threads(threads)


def _fit(model, recipe, train_set, gen, seed, step, progress) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        batches = (len(train_set) + recipe.batch_size - 1) // recipe.batch_size
        for _ in tqdm(range(recipe.epochs), desc=f"training on {recipe.dataset}", unit="epoch", disable=not progress):
            order = torch.randperm(len(train_set), generator=gen)
            for b in range(batches):
                idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
                x, y = train_set[idx]
                loss = step(model, x, y) if step else F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.models",
                                     description="Retrain a zoo model with its seeded recipe.")
    sub = parser.add_subparsers(dest="command", required=True)
    command = sub.add_parser("train", help="train NAME and write its weights (default: <data>/NAME.pt)")
    command.add_argument("name", choices=[n for n, r in ARCHITECTURES.items() if r.dataset is not None])
    command.add_argument("--out", default=None, help="where to write the state dict")
    command.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    args = parser.parse_args(argv)
    path = train(args.name, args.out, epochs=args.epochs)
    print(f"{args.name}: {path} (sha256 {sha256(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
