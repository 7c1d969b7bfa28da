"""Denoising by input transformation: the query is changed before the classifier sees it.

Deterministic (the same query always gets the same answer, so a score-based attack queries straight through them):

- ``BitDepth``: round every value to ``bits`` bits (Xu, Evans and Qi, "Feature Squeezing", NDSS 2018: 5 bits on
  CIFAR-10, 1 on MNIST, 4 on ImageNet).
- ``MedianSmoothing``: a ``size`` x ``size`` median filter per channel (Feature Squeezing: 2x2 on CIFAR-10 and
  ImageNet, 2x2 or 3x3 on MNIST), edges mirrored as SciPy's ``median_filter`` does (``mode="reflect"``).
- ``JPEG``: JPEG re-encoding at ``quality`` (Guo, Rana, Cisse and van der Maaten, "Countering Adversarial Images
  using Input Transformations", ICLR 2018: quality 75), with Pillow's libjpeg.

Randomized (a fresh draw per query, seeded; attack them with EOT):

- ``ResizePad``: resize to a random size in [size, size + ``pad``) and zero-pad at a random place to size + ``pad``
  (Xie, Wang, Zhang, Ren and Yuille, "Mitigating Adversarial Effects Through Randomization", ICLR 2018: ImageNet
  299 -> [299, 331), padded to 331; here scaled to the image: ``pad`` = size / 9, 3 pixels on CIFAR-10). The
  padded image goes to the classifier as Xie et al. feed theirs (the zoo's nets pool globally, so any size works).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import checks
from workbench.defenses.seeded import Seeded
from workbench.transforms import bit_depth, jpeg, median


class BitDepth(nn.Module):
    """Bit-depth reduction before ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, bits: int = 5):
        super().__init__()
        self.model, self.bits = model, checks.at_least("bits", bits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(bit_depth(x, self.bits))


class MedianSmoothing(nn.Module):
    """Median smoothing before ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, size: int = 2):
        super().__init__()
        self.model, self.size = model, checks.at_least("size", size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(median(x, self.size))


class JPEG(nn.Module):
    """JPEG re-encoding before ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, quality: int = 75):
        super().__init__()
        quality = checks.at_least("quality", quality, 1)
        if quality > 100:
            raise ValueError(f"quality must be in [1, 100], got {quality}")
        self.model, self.quality = model, quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(jpeg(x, self.quality))


class ResizePad(Seeded):
    """Random resizing and padding before ``model`` (see the module docstring); ``pad`` None: a ninth of the
    image side (Xie et al.'s 32 of 299, rounded)."""

    def __init__(self, model: nn.Module, pad: int | None = None, seed: int = 0):
        super().__init__(seed)
        self.model = model
        self.pad = None if pad is None else checks.at_least("pad", pad, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1]
        pad = self.pad or max(1, round(side / 9))
        gen = self._generator(x.device)
        out = x.new_zeros(len(x), x.shape[1], side + pad, side + pad)
        sizes = torch.randint(side, side + pad, (len(x),), generator=gen, device=x.device).tolist()
        for i, s in enumerate(sizes):  # one size per query: resize each on its own
            top, left = (int(torch.randint(0, side + pad - s + 1, (1,), generator=gen, device=x.device))
                         for _ in range(2))
            resized = F.interpolate(x[i:i + 1], size=(s, s), mode="nearest")
            out[i, :, top:top + s, left:left + s] = resized[0]
        return self.model(out)
