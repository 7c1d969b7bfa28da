"""Image transformations shared by the denoising defenses, Feature Squeezing and the benign streams a detector's
false-positive rate is measured on: bit-depth reduction, median smoothing, JPEG re-encoding, a brightness shift.
Each maps images (B, C, H, W) in [0, 1] to images of the same shape."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` in [0, 1] rounded to ``2 ** bits`` levels (Feature Squeezing's reduction)."""
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def median(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per-channel ``size`` x ``size`` median filter of (B, C, H, W), as ``scipy.ndimage.median_filter(x, size,
    mode="reflect")`` on each channel: the window spans ``size // 2`` before and ``(size - 1) // 2`` after each
    pixel, edges mirrored with the edge value repeated; of an even window, the upper of the two middle values."""
    before, after = size // 2, (size - 1) // 2
    h, w = x.shape[-2:]
    rows = _mirrored(torch.arange(-before, h + after), h)
    cols = _mirrored(torch.arange(-before, w + after), w)
    padded = x[..., rows[:, None], cols[None, :]]
    windows = padded.unfold(-2, size, 1).unfold(-2, size, 1)  # (B, C, H, W, size, size)
    flat = windows.reshape(*windows.shape[:-2], size * size)
    return flat.sort(-1).values[..., (size * size) // 2]


def _mirrored(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices mirrored into [0, n) with the edge repeated (d c b a | a b c d | d c b a)."""
    period = 2 * n
    i = i % period
    return torch.where(i < n, i, period - 1 - i)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """``x`` in [0, 1] (B, C, H, W; 1 or 3 channels) through JPEG at ``quality`` with Pillow's libjpeg (4:2:0
    chroma subsampling, its default), rounded to 8 bits first."""
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().permute(0, 2, 3, 1).numpy()
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        out.append(torch.from_numpy(decoded.reshape(image.shape).copy()))
    return torch.stack(out).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255


def brightness(x: torch.Tensor, shift: float) -> torch.Tensor:
    """``x`` with ``shift`` added to every value, clipped to [0, 1]."""
    return (x + shift).clamp(0, 1)
