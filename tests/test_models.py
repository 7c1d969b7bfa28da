"""The zoo: the MNIST CNN trains to >= 96% and caches atomically; architectures build; nothing downloads."""

from __future__ import annotations

import pytest
import torch

from workbench import metrics, models, paths


def test_mnist_cnn_is_accurate_and_cached(cnn, test_set):
    assert metrics.accuracy(metrics.predict(cnn, test_set.x), test_set.y) >= 0.96
    cache = paths.data_dir() / "mnist-cnn.pt"
    assert cache.is_file()
    assert not list(cache.parent.glob(".mnist-cnn.pt.*.tmp"))  # no half-written file left behind
    state = torch.load(cache, weights_only=True)
    again = models.load("mnist-cnn")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), cnn.state_dict().values()))
    assert set(state) == set(cnn.state_dict())
    assert not any(p.requires_grad for p in cnn.parameters()) and not cnn.training


@pytest.mark.parametrize("name, shape", [("preactresnet18", (2, 3, 32, 32)), ("wrn-28-10", (2, 3, 32, 32))])
def test_cifar_architectures_take_images_in_0_1(name, shape, tmp_path):
    net = models.build(name).eval()
    assert isinstance(net, models.Normalized)
    assert net(torch.rand(shape)).shape == (2, 10)
    with pytest.raises(ValueError, match="weights"):
        models.load(name)
    # a published-style checkpoint (the bare network's state dict, with a DataParallel prefix) loads
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.net.state_dict().items()}}, path)
    loaded = models.load(name, weights=path)
    x = torch.rand(shape)
    assert torch.allclose(loaded(x), net(x), atol=1e-5)


def test_torchvision_model_without_local_weights_is_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError, match="nothing is downloaded"):
        models.load("resnet18")
    net = models.build("resnet18")
    path = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir()
    torch.save(net.net.state_dict(), path)
    loaded = models.load("resnet18")  # from torchvision's cache folder
    assert loaded(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_unknown_model_names_the_argument():
    with pytest.raises(ValueError, match="name"):
        models.load("mnist-resnet")
    with pytest.raises(ValueError, match="weights"):
        models.load("mnist-cnn", weights="/nonexistent/file.pt")
