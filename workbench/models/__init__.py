"""Models: architectures with normalization inside (``architectures``), the zoo as a table of entries with
shipped, hash-pinned weights (``zoo``), and loading (``loading``).

- ``"mnist-cnn"``, ``"mnist-cnn-at"`` (PGD adversarial training), ``"mnist-cnn-gf"`` (Gaussian augmentation): the
  MNIST zoo, weights shipped inside the package (``workbench/zoo/``), pinned by SHA-256.
- ``"preactresnet18"`` (UniG's CIFAR-10 model), ``"wrn-28-10"`` (AAA's): architectures; load weights from a local
  file with ``load(name, weights=path)``.
- Any torchvision ImageNet classifier by name (``"resnet50"``...): weights from a local file or torchvision's
  cache folder; nothing is ever downloaded.

``python -m workbench.models train NAME`` retrains a zoo model with its seeded recipe (``workbench.training``).

Example::

    from workbench import models
    net = models.load("mnist-cnn")          # the shipped weights, SHA-256 checked
"""

from workbench.models.architectures import Normalize, Normalized
from workbench.models.loading import WEIGHTS, build, load, names, sha256, weights_path
from workbench.models.zoo import ZooEntry, entries, entry, register, serving, unregister

__all__ = ["Normalize", "Normalized", "WEIGHTS", "ZooEntry", "build", "entries", "entry", "load", "names",
           "register", "serving", "sha256", "unregister", "weights_path"]
