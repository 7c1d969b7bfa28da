"""Feature Squeezing as a detector (Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep
Neural Networks", NDSS 2018): a query is flagged when the classifier's softmax moves too much under a squeezer,

    score(x) = max over squeezers of || softmax(f(x)) - softmax(f(squeeze(x))) ||_1,

flagged at ``score > threshold``. The threshold is set on benign images for a false-positive rate of 5% (the
paper's rule; ``calibrate``). CIFAR-10 squeezers in the paper: 5-bit depth, 2x2 median, non-local means (13-3-2);
here the first two (non-local means needs a codec the workbench does not depend on): the detector is therefore
at most as strong as the paper's joint one. It is stateless (no memory: each query is judged alone) and screens
like the stateful detectors, so the Oracle refuses its flags the same way.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from workbench import checks
from workbench.stateful import Stateful
from workbench.transforms import bit_depth, median

FALSE_POSITIVES = 0.05


class FeatureSqueezing(Stateful):
    __doc__ = __doc__
    memoryless = True

    def __init__(self, model: nn.Module, *, bits: int = 5, size: int = 2, threshold: float | None = None,
                 false_positives: float = FALSE_POSITIVES):
        super().__init__(model, float("nan") if threshold is None else checks.non_negative("threshold", threshold))
        self.bits, self.size = checks.at_least("bits", bits, 1), checks.at_least("size", size, 2)
        self.false_positives = checks.positive("false_positives", false_positives)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) the largest l1 change of the softmax under a squeezer."""
        with torch.no_grad():
            p = self.model(x).softmax(1)
            changes = [(p - self.model(s).softmax(1)).abs().sum(1)
                       for s in (bit_depth(x, self.bits), median(x, self.size))]
        return torch.stack(changes).amax(0)

    def calibrate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> FeatureSqueezing:
        """The threshold flagging a share ``false_positives`` of the benign images ``x``."""
        checks.at_least("len(x)", len(x), 20)
        self.threshold = float(torch.quantile(self.score(x).double(), 1 - self.false_positives))
        return self

    def signature(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold != self.threshold:
            raise ValueError("FeatureSqueezing has no threshold: give threshold= or call calibrate(benign_images)")
        return self.score(x).cpu()

    def is_flagged(self, distance: float) -> bool:
        return distance > self.threshold

    def empty(self) -> None:
        return None

    def check(self, memory: None, signature: torch.Tensor) -> tuple[float, int]:
        return float(signature), -1

    def add(self, memory: None, signature: torch.Tensor, seq: int) -> None:
        pass

    def drop_oldest(self, memory: None) -> None:
        pass
