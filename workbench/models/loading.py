"""Building and loading models: zoo entries (shipped weights checked against their SHA-256, or a local
checkpoint) and any torchvision ImageNet classifier by name (weights from a local file or torchvision's own cache
folder). Nothing is ever downloaded; every checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn

from workbench import checks
from workbench.models.architectures import IMAGENET_MEAN, IMAGENET_STD, Normalized
from workbench.models.zoo import ZooEntry, entries

WEIGHTS = Path(__file__).resolve().parents[1] / "zoo"  # the shipped weights: workbench/zoo/<name>.pt


def _torchvision_models():
    """``torchvision.models``, imported where a torchvision classifier is asked for: the import costs 1-2 s (it
    loads torch._dynamo), which a zoo model never needs."""
    import torchvision.models

    return torchvision.models


def names() -> list[str]:
    """Every name ``build`` and ``load`` accept: the zoo and torchvision's ImageNet classifiers."""
    tv = _torchvision_models()
    return sorted(entries()) + sorted(tv.list_models(module=tv))


def build(name: str, num_classes: int | None = None) -> nn.Module:
    """An untrained model of the named architecture (normalization included). It carries the dataset it serves
    as ``zoo_dataset`` (the zoo entry's; ``"imagenet"`` for a torchvision classifier with its 1000 classes), which
    ``setting.resolve`` reads."""
    found = entries().get(name)
    if found is not None:
        model, dataset = found.build(), found.dataset
    else:
        checks.choice("name", name, names())
        net = _torchvision_models().get_model(name, weights=None, **({"num_classes": num_classes} if num_classes else {}))
        model, dataset = Normalized(net, IMAGENET_MEAN, IMAGENET_STD), None if num_classes else "imagenet"
    if dataset is not None:
        model.zoo_dataset = dataset
    return model


def load(name: str, *, weights: str | Path | None = None, device: str | torch.device | None = None,
         channels_last: bool = True) -> nn.Module:
    """A trained model in eval mode, with gradients of its parameters switched off, its convolution weights in
    channels_last memory format (same values; convolutions run about twice as fast on a CPU in that layout).

    Args:
        name: a zoo name (``names()`` lists them).
        weights: a local checkpoint (a state dict, loaded with ``weights_only=True``); for zoo models that ship
            their weights it defaults to the shipped file (its SHA-256 checked), for torchvision models to
            torchvision's cache.
        device: where to put the model (default: CPU), e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        channels_last: store 4-D weights in channels_last memory format (default True).
    """
    device = _device(device)
    model = build(name)
    path = Path(weights).expanduser() if weights is not None else weights_path(name)
    _load_state(model, path, "weights")
    model.eval().requires_grad_(False)
    if checks.flag("channels_last", channels_last):
        model = model.to(memory_format=torch.channels_last)
    return model.to(device) if device is not None else model


def _device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch device; a string torch does not know, or a CUDA device on a machine without CUDA,
    is a ValueError naming the argument."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use 'cpu', 'cuda' or 'cuda:<index>'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine; use 'cpu'")
    return device


def weights_path(name: str) -> Path:
    """The file the weights of a zoo or torchvision model load from: the shipped file of a zoo model that ships
    one (checked against its pinned SHA-256), torchvision's cache folder for torchvision models."""
    found = entries().get(name)
    if found is not None:
        if not found.shipped:
            raise ValueError(f"weights is required for name={name!r}: pass the path of a local checkpoint")
        return _shipped(found)
    checks.choice("name", name, names())
    return _torchvision_cache(name)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shipped(zoo: ZooEntry) -> Path:
    name, found_at = zoo.name, zoo.weights_file
    path, pinned = found_at() if found_at is not None else WEIGHTS / f"{name}.pt", zoo.sha256
    if not path.is_file():
        raise ValueError(f"the shipped weights of {name!r} are missing ({path}); reinstall the workbench, or "
                         f"retrain them with `python -m workbench.models train {name}` and pass weights=<file>")
    found = sha256(path)
    if found != pinned:
        raise ValueError(f"weights file {path} has SHA-256 {found[:16]}..., not the pinned {pinned[:16]}... "
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
    url = _torchvision_models().get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise ValueError(f"no weights for name={name!r} in torchvision's cache ({path}); nothing is downloaded: "
                         f"pass weights=<local file> or place the file there")
    return path
