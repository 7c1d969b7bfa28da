"""GCM: Gradient Concealment Module, ``x + eps * sin(w * x)`` in front of (or inside) a classifier.

Paper: Pei et al., "Gradient Concealment: Free Lunch for Defending Adversarial Attacks" (GCM), eq. (1).

With w = 1e20 and eps = 1e-8 the forward pass is almost the identity while the input gradient is multiplied,
elementwise, by ``1 + eps * w * cos(w * x) = 1 + 1e12 * cos(1e20 * x)``: a huge factor of pseudo-random sign that
drowns the true gradient (gradient obfuscation). White-box FGSM/PGD then fail; BPDA (identity backward through
this layer: ``workbench.attacks.whitebox.pgd(..., bpda=defended.concealment_name)``) undoes it. Score-based
attacks never see gradients, so its black-box effect is whatever the forward change does: measure it.

Precision, deliberately:
    - The layer computes in ``dtype`` (float32 by default, or float64) and casts back to the input's dtype.
    - float16 / bfloat16 cannot hold w = 1e20 (it overflows to inf and sin(inf) is NaN): refused with an error,
      as is any dtype whose largest value is below w, and any input in such a dtype.
    - In float32 only inputs below about 0.25 can move, by at most one unit in the last place; of the 256 8-bit
      levels only a few dozen change at all. ``last_changed`` / ``last_total`` count the elements the last
      forward pass changed, so the effect is reported rather than assumed.

Arguments:
    model: the classifier (images in [0, 1] -> logits).
    eps: amplitude (default 1e-8); w: frequency (default 1e20).
    layer: None (default: at the input) or the name of a submodule of ``model`` (``model.named_modules()``)
        whose output gets the concealment; the model is deep-copied, never modified.
    dtype: torch.float32 (default) or torch.float64.

Example::

    defended = GCM(model)
    logits = defended(x)                 # ~ model(x)
    defended.last_changed                # how many input elements the sin term changed
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from workbench import checks

DTYPES = (torch.float32, torch.float64)


class Concealment(nn.Module):
    """The layer itself: ``x + eps * sin(w * x)`` computed in ``dtype``, with a count of changed elements."""

    def __init__(self, eps: float = 1e-8, w: float = 1e20, dtype: torch.dtype = torch.float32):
        super().__init__()
        eps, w = checks.positive("eps", eps), checks.positive("w", w)
        if dtype in (torch.float16, torch.bfloat16):
            raise ValueError(f"dtype={dtype}: w={w:g} overflows it (largest value {torch.finfo(dtype).max:g}), "
                             f"so sin(w * x) is NaN; choose one of torch.float32, torch.float64")
        checks.choice("dtype", dtype, DTYPES)
        self.eps, self.w, self.dtype = float(eps), float(w), dtype
        self.last_changed = self.last_total = 0

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}, w={self.w:g}, dtype={self.dtype}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point() or torch.finfo(x.dtype).max < self.w:
            raise ValueError(f"GCM input dtype {x.dtype} cannot hold w={self.w:g}: the output would be NaN or "
                             f"unchanged; feed float32 or float64 tensors")
        z = x.to(self.dtype)
        out = (z + self.eps * torch.sin(self.w * z)).to(x.dtype)
        with torch.no_grad():
            self.last_changed = int((out != x).sum())
            self.last_total = x.numel()
        return out


class GCM(nn.Module):
    __doc__ = __doc__

    def __init__(self, model: nn.Module, *, eps: float = 1e-8, w: float = 1e20, layer: str | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        checks.module("model", model)
        narrow = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()
                         and torch.finfo(p.dtype).max < w})
        if narrow:
            raise ValueError(f"model has {', '.join(narrow)} parameters: GCM feeds it float32 (or float64) inputs "
                             f"and w={w:g} overflows {narrow[0]}; pass a float32 or float64 model (model.float())")
        concealment = Concealment(eps, w, dtype)
        self.layer = layer
        if layer is None:
            self.model = model
            self.add_module("concealment", concealment)
            self.concealment_name = "concealment"
            return
        self.model = copy.deepcopy(model)
        modules = dict(self.model.named_modules())
        if layer not in modules or layer == "":
            raise ValueError(f"layer={layer!r} is not a submodule of the model; choose one of "
                             f"{', '.join(repr(n) for n in modules if n)}")
        parent_name, _, child = layer.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        setattr(parent, child, nn.Sequential(modules[layer], concealment))
        self.concealment_name = f"model.{layer}.1"  # registered there only: BPDA finds it under this name

    @property
    def concealment(self) -> Concealment:
        """The concealment layer, wherever it sits (``concealment_name``)."""
        return dict(self.named_modules())[self.concealment_name]  # (get_submodule would call this property)

    @property
    def last_changed(self) -> int:
        """Elements the concealment changed in the last forward pass."""
        return self.concealment.last_changed

    @property
    def last_total(self) -> int:
        """Elements the concealment saw in the last forward pass."""
        return self.concealment.last_total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(self.concealment(x))
        return self.model(x)
