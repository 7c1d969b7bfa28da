"""PIHA (Choi, Lee, Kim and Kim, "PIHA: Detection method using perceptual image hashing against query-based
adversarial attacks", AsiaCCS 2023): a query's perceptual hash is compared with an account's past hashes; flagged
at a normalized Hamming distance ``<= threshold``.

The hash, as the OARS code re-implements it (nmangaokar/ccs_23_oars_stateful_attacks, ``models/statefuldefense.py``,
class ``PIHA``; CIFAR-10 setting: block 7, threshold 0.05):

1. a 3x3 Gaussian blur of sigma 1 (OpenCV's ``GaussianBlur``: borders reflected without repeating the edge);
2. the hue channel of HSV (OpenCV's float convention: degrees in [0, 360));
3. zero padding by ``block - H % block`` rows and columns (a whole block where H divides), then the sum of each
   ``block`` x ``block`` block;
4. the local binary pattern of that block grid (8 neighbours at radius 1, bilinear samples, zero outside:
   scikit-image's ``local_binary_pattern(features, 8, 1)``): one code in 0-255 per block is the hash;
5. the distance of two hashes is the share of codes that differ. On CIFAR-10 the hash has 25 codes, so the 0.05
   threshold flags a query that differs from a past one in at most one code.

The whole pipeline runs batched in torch (the reference runs OpenCV and scikit-image one image at a time);
``tests/test_detection.py`` checks it against those steps computed with SciPy and scikit-image.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import checks
from workbench.stateful import CodeMemory, Codes

def gaussian_blur3(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """3x3 Gaussian blur per channel, borders reflected (OpenCV's default BORDER_REFLECT_101)."""
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=x.dtype) / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(x.shape[1], 1, 3, 3).to(x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])


def hue(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H, W) hue in degrees [0, 360), OpenCV's rule (0 where max == min)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    spread = v - x.min(1).values
    safe = torch.where(spread > 0, spread, torch.ones_like(spread))
    h = torch.where(v == r, 60 * (g - b) / safe,
                    torch.where(v == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe))
    h = torch.where(spread > 0, h, torch.zeros_like(h))
    return torch.where(h < 0, h + 360, h)


def block_sums(h: torch.Tensor, block: int) -> torch.Tensor:
    """(B, H, W) -> (B, H', W'): zero padding by ``block - size % block`` at the end, then block sums."""
    pad_h, pad_w = block - h.shape[1] % block, block - h.shape[2] % block
    return F.avg_pool2d(F.pad(h, (0, pad_w, 0, pad_h))[:, None], block)[:, 0] * block * block


def local_binary_pattern(f: torch.Tensor) -> torch.Tensor:
    """(B, M, N) -> (B, M, N) codes of scikit-image's default LBP with P = 8, R = 1: neighbour p at angle
    2 pi p / 8 (row offset -sin, column offset cos, rounded to 5 decimals), sampled bilinearly with zeros outside,
    bit p set where the sample >= the centre."""
    b, m, n = f.shape
    padded = F.pad(f, (2, 2, 2, 2))
    rows = torch.arange(m, dtype=f.dtype)[:, None] + 2
    cols = torch.arange(n, dtype=f.dtype)[None, :] + 2
    code = torch.zeros_like(f, dtype=torch.long)
    for p in range(8):
        dr = round(-math.sin(2 * math.pi * p / 8), 5)
        dc = round(math.cos(2 * math.pi * p / 8), 5)
        r, c = rows + dr, cols + dc
        r0, c0 = torch.floor(r), torch.floor(c)
        wr, wc = (r - r0)[None], (c - c0)[None]
        r0, c0 = r0.long().expand(m, n), c0.long().expand(m, n)
        at = lambda i, j: padded[:, i, j]  # noqa: E731
        r1 = torch.ceil(rows + dr).long().expand(m, n)
        c1 = torch.ceil(cols + dc).long().expand(m, n)
        top = (1 - wc) * at(r0, c0) + wc * at(r0, c1)
        bottom = (1 - wc) * at(r1, c0) + wc * at(r1, c1)
        sample = (1 - wr) * top + wr * bottom
        code += (sample - f >= 0).long() << p
    return code


class PIHA(CodeMemory):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, block: int = 7, threshold: float = 0.05, memory: int | None = None):
        super().__init__(model, checks.non_negative("threshold", threshold), memory=memory)
        self.block = checks.at_least("block", block, 1)

    def hash(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, codes) perceptual hashes (steps 1-4), computed in float64."""
        if x.shape[1] != 3:
            raise ValueError(f"PIHA hashes RGB images: x must have 3 channels, got {x.shape[1]}")
        features = block_sums(hue(gaussian_blur3(x.detach().double().cpu())), self.block)
        return local_binary_pattern(features).flatten(1).to(torch.uint8)  # codes 0-255

    def signature(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash(x)

    def check(self, memory: Codes, signature: torch.Tensor) -> tuple[float, int]:
        dists = (memory.codes != signature).double().mean(1)
        i = int(dists.argmin())
        return dists[i].item(), memory.seqs[i]
