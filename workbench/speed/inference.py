"""The model as the Oracle runs it: a copy with every batch norm folded into the convolution before it, and the
ReLUs after a convolution or linear layer applied in place.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be folded into that
convolution's weights and bias (PyTorch's ``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over the
activations less per layer, the same function up to float rounding. A ReLU whose input is a fresh layer output
that nothing else reads can overwrite it (``inplace=True``): one allocation less, bit-identical. What it gains:
docs/performance.md.

Only what can be changed safely is: a ``Conv1d/2d/3d`` directly followed, inside an ``nn.Sequential``, by a
batch norm of the same dimension with running statistics, both in eval mode and without hooks; a ``ReLU`` inside
an ``nn.Sequential`` whose nearest earlier module there (past the folded norms) is a convolution or linear layer,
none of them hooked or registered twice. The copy is made once (``fold_batchnorm``) and is only used where the
Oracle's probes found the model deterministic (not random, not batch-dependent: a defense that adapts its batch
norms, like DENT, is never folded) and ``agrees`` finds its scores equal to the model's up to float rounding on
the probe images.

    fold_batchnorm(model)       a folded copy, or None where nothing can be folded (or the model cannot be copied)
    agrees(model, copy, x)      same predictions and scores within float rounding on the images x
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Scores of the folded copy may differ from the model's by float rounding only: at most this share of the
# scores' scale.
AGREEMENT = 1e-5
_PAIRS = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))
_FRESH = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # layers whose output is a new tensor


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._state_dict_hooks)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (any(type(conv) is c and type(bn) is b for c, b in _PAIRS)
            and not (conv.training or bn.training or _hooked(conv) or _hooked(bn))
            and bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None)


def foldable(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Every (Sequential, i) of ``model`` whose module i is a convolution that the batch norm i + 1 can fold into."""
    return [(seq, i) for seq in model.modules() if isinstance(seq, nn.Sequential)
            for i in range(len(seq) - 1) if _foldable(seq[i], seq[i + 1])]


def fold_batchnorm(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` with every foldable batch norm folded into its convolution (the norm becomes an
    ``nn.Identity``), or None where there is nothing to fold or the model cannot be deep-copied."""
    if not foldable(model):
        return None
    try:
        twin = copy.deepcopy(model)
    except (TypeError, RuntimeError, copy.Error):
        return None
    with torch.no_grad():
        for seq, i in foldable(twin):
            seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()
    _relu_in_place(twin)
    return twin


def _relu_in_place(model: nn.Module) -> None:
    """Set ``inplace`` on every ReLU of a Sequential whose input is the fresh output of a convolution or linear layer
    of the same Sequential (Identity modules, the folded norms, pass it through unchanged)."""
    counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))

    def plain(m: nn.Module) -> bool:
        return counts[id(m)] == 1 and not _hooked(m)

    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i, relu in enumerate(seq):
            j = i - 1
            while j >= 0 and type(seq[j]) is nn.Identity and plain(seq[j]):
                j -= 1
            if type(relu) is nn.ReLU and plain(relu) and j >= 0 and type(seq[j]) in _FRESH and plain(seq[j]):
                relu.inplace = True


def agrees(model: nn.Module, twin: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``twin`` gives ``model``'s predictions on ``x`` and its scores within ``AGREEMENT`` of their scale."""
    with torch.no_grad():
        a, b = model(x).float(), twin(x).float()
    scale = max(1.0, float(a.abs().max()))
    return bool(torch.equal(a.argmax(1), b.argmax(1)) and (a - b).abs().max() <= AGREEMENT * scale)
