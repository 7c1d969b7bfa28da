"""Stateful Detection (Chen, Carlini and Wagner, "Stateful Detection of Black-Box Adversarial Attacks", SPAI 2020;
code schoyc/blackbox-detection, ``detection.py``): each account keeps its past queries, encoded; a query is flagged
when the mean distance to its ``k`` nearest past queries falls below a threshold, and the account's memory is
then cleared.

The reference's rules, kept here: the first ``k`` queries of an account are stored without a check; later ones
are compared with everything stored (l2 distance between encodings), stored, then flagged where the mean of the
``k`` smallest distances is ``< threshold``. The threshold is the 0.1th percentile, over benign images, of the mean
distance to their ``k`` + 1 nearest benign images, the image itself (distance 0) included, as the reference's
``calculate_thresholds`` computes it (``calibrate``).

Encoders: ``"pixels"`` (the flattened image: the reference's ``L2Detector``; its threshold in the code: 5.069 for
k = 50 on its CIFAR-10 training images) or a similarity encoder (``"cifar10-similarity-encoder"``: the authors'
architecture, trained here with a contrastive loss because their weights are not available; the reference's
threshold with their encoder is 1.44). A threshold must come from ``calibrate`` (or be given): nothing is assumed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks
from workbench.stateful import CodeMemory, Codes

K = 50
PERCENTILE = 0.1


class KNNDetection(CodeMemory):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, encoder: nn.Module | None = None, *, k: int = K,
                 threshold: float | None = None, percentile: float = PERCENTILE, memory: int | None = None):
        super().__init__(model, float("nan") if threshold is None else checks.positive("threshold", threshold),
                         memory=memory, clear_on_detection=True, strict=True)
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.k = checks.at_least("k", k, 1)
        self.percentile = checks.positive("percentile", percentile)

    def encode(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """(B, D) encodings: the encoder's output, or the flattened pixels."""
        if self.encoder is None:
            return x.reshape(len(x), -1).float()
        with torch.no_grad():
            return torch.cat([self.encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def calibrate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> KNNDetection:
        """Set the threshold from benign images ``x`` (the reference's rule, see the module docstring)."""
        checks.at_least("len(x)", len(x), self.k + 2)
        self.threshold = benign_threshold(self.encode(x), self.k, self.percentile)
        return self

    def signature(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold != self.threshold:
            raise ValueError("KNNDetection has no threshold: give threshold= or call calibrate(benign_images)")
        return self.encode(x).cpu()

    def check(self, memory: Codes, signature: torch.Tensor) -> tuple[float, int]:
        if len(memory) < self.k:
            return float("inf"), -1
        dists = torch.cdist(signature[None].double(), memory.codes.double())[0]
        near = torch.topk(dists, self.k, largest=False)
        return near.values.mean().item(), memory.seqs[int(near.indices[0])]


def benign_threshold(codes: torch.Tensor, k: int, percentile: float = PERCENTILE, chunk: int = 1000) -> float:
    """The ``percentile``-th percentile over ``codes`` (N, D) of the mean distance to the ``k`` + 1 nearest codes,
    each code's own (0) included (schoyc/blackbox-detection's ``calculate_thresholds`` at K = ``k``)."""
    codes = codes.double()
    means = torch.cat([torch.cdist(codes[i:i + chunk], codes).topk(k + 1, largest=False).values.mean(1)
                       for i in range(0, len(codes), chunk)])
    return float(torch.quantile(means, percentile / 100))
