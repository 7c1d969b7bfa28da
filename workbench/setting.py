"""The front door for "which dataset's protocol?": what the user gave (a dataset name, a zoo model or a defense
around one, images) turned into one protocol, once, or a clear error. Nothing falls back to MNIST's.

The protocol comes from, in this order:

1. ``dataset=`` where the user gave it (images that do not have its shape are a ``ValueError`` naming both);
2. else the zoo: a model that ``models.build`` / ``models.load`` made carries its entry's dataset
   (``zoo_dataset``), found anywhere inside a defense that wraps it; a zoo name (the grids' and the command
   lines' ``model=``) gives its entry's;
3. else the images' shape, where exactly one protocol has it (MNIST's 1 x 28 x 28; a CIFAR-10-shaped image fits
   both ``cifar10`` and ``cifar10-jpeg``, so it needs one of the other two).

Example::

    >>> from workbench import models, setting
    >>> setting.resolve(model=models.load("cifar10-resnet20")).name
    'cifar10-jpeg'
    >>> setting.resolve(images=torch.rand(2, 1, 28, 28)).name
    'mnist'
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks, models, protocol
from workbench.protocol import Protocol
from workbench.threat import Threat


def zoo_dataset(model: nn.Module | str | None) -> str | None:
    """The dataset of the zoo model ``model`` (a zoo name, or a module that is or wraps one), or None. A module
    that wraps zoo models of two datasets is a ``ValueError``."""
    if model is None:
        return None
    if isinstance(model, str):  # a zoo name, or a torchvision ImageNet classifier's
        if model in models.entries():
            return models.entry(model).dataset
        return "imagenet" if model in models.names() else None
    found = {m.zoo_dataset for m in model.modules() if isinstance(getattr(m, "zoo_dataset", None), str)}
    if len(found) > 1:
        raise ValueError(f"the model wraps zoo models of several datasets {sorted(found)}: give dataset=")
    return found.pop() if found else None


def resolve(dataset: str | Protocol | None = None, *, model: nn.Module | str | None = None,
            images: torch.Tensor | None = None, needed_by: str = "this call") -> Protocol:
    """The protocol of what was given (see the module docstring); ``needed_by`` names the caller in the error. A
    protocol entry a front door already resolved is passed down as it is; ``images`` (N, C, H, W) that do not have
    the protocol's image shape are a ValueError naming both."""
    name = dataset if dataset is not None else zoo_dataset(model)
    if name is not None:
        entry = name if isinstance(name, Protocol) else protocol.get(name)
        if images is not None and entry.shape is not None and tuple(images.shape[1:]) != entry.shape:
            fits = _fitting(images)
            hint = f" (they fit {fits})" if fits else ""
            raise ValueError(f"images of shape {tuple(images.shape[1:])} do not match dataset={entry.name!r}, whose "
                             f"images are {entry.shape}{hint}")
        return entry
    if images is not None:
        fits = _fitting(images)
        if len(fits) == 1:
            return protocol.get(fits[0])
        if fits:
            raise ValueError(f"{needed_by} needs dataset=: images of shape {tuple(images.shape[1:])} fit the "
                             f"protocols {fits}, and the model is not a zoo model that says which")
    raise ValueError(f"{needed_by} needs dataset= (one of {list(protocol.names())}): it cannot be told from the "
                     "model (not a zoo model) or the images")


def _fitting(images: torch.Tensor) -> list[str]:
    """The protocols whose image shape is that of ``images`` (N, C, H, W)."""
    return [p.name for p in protocol.protocols() if p.shape == tuple(images.shape[1:])]


def threat(entry: Protocol, norm: str = "linf", eps: float | None = None) -> Threat:
    """The threat model of a call on the protocol ``entry``: ``norm`` (one of the protocol's) and ``eps``, by
    default the protocol's radius for that norm (l-inf 0.3 on MNIST, 8/255 on CIFAR-10, 4/255 on ImageNet)."""
    checks.choice("norm", norm, tuple(entry.eps))
    return Threat(norm, entry.eps[norm] if eps is None else eps)
