"""White-box gradient attacks (FGSM, PGD) and BPDA, to show gradient concealment and how it is undone.

Papers: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM); Madry et
al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018 (PGD); Athalye, Carlini, Wagner,
"Obfuscated Gradients Give a False Sense of Security", ICML 2018 (BPDA).

Distance: l-inf (sign steps) and l2 (normalized steps), projection onto the eps-ball and [0, 1].

These need gradients, so they take the model itself and never go through the Oracle (one file for the three:
FGSM is PGD with one full step and no random start, and BPDA is PGD with a layer's backward pass replaced).

Arguments (defaults: Madry et al.'s MNIST setting):
    model: the classifier (defended or not), images in [0, 1] -> logits.
    x, y: images (N, C, H, W) in [0, 1] and labels (N,).
    norm: "linf" | "l2" (default "linf"); eps: radius (required).
    steps: PGD iterations (default 40); step_size: default 2.5 * eps / steps.
    random_start: start from a uniform point of the l-inf ball / a random point of the l2 ball (default True).
    bpda: name of a submodule of ``model`` (as in ``model.named_modules()``) whose backward pass is replaced by
        the identity, a straight-through estimator (default None: plain gradients).
    seed: seed of the random start (default 0); batch_size: images per forward/backward (default 500).
    freeze: stop at an image's first misclassified iterate (default True, so the returned images are adversarial
        wherever any iterate was); False runs every step (adversarial training wants the strongest point).

Shape: returns adversarial images of the shape of ``x``, on ``x``'s device.

Example::

    >>> x_adv = pgd(gcm_model, x, y, eps=0.3)                 # fails: the gradient is concealed
    >>> x_adv = pgd(gcm_model, x, y, eps=0.3, bpda="gcm")     # BPDA through the GCM layer: succeeds
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench import checks
from workbench.threat import ascent_step, project, unit
from workbench.threat import model_device


@contextlib.contextmanager
def straight_through(model: nn.Module, layer: str) -> Iterator[None]:
    """Within the block, ``model``'s submodule ``layer`` computes its usual output in the forward pass but passes
    gradients through unchanged (BPDA with the identity): out = inp + (layer(inp) - inp).detach()."""
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        raise ValueError(f"bpda={layer!r} is not a submodule of the model; choose one of "
                         f"{', '.join(repr(n) for n in modules if n)}")

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        inp = inputs[0]
        if output.shape != inp.shape:
            raise ValueError(f"bpda={layer!r}: the identity backward needs output shape == input shape, got "
                             f"{tuple(inp.shape)} -> {tuple(output.shape)}")
        return inp + (output - inp).detach()

    handle = modules[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _random_start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        noise = torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1  # uniform in the l-inf ball
    else:  # a random direction at a uniform fraction of the radius
        direction = unit(torch.randn(x.shape, generator=gen, device=x.device))
        noise = direction * torch.rand(len(x), generator=gen, device=x.device).view(-1, 1, 1, 1)
    return project(x + eps * noise, x, eps, norm)


def _attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, steps: int,
                  step_size: float, start: torch.Tensor, freeze: bool) -> torch.Tensor:
    x_adv, done = start.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        todo = (~done).nonzero().flatten()
        if not len(todo):
            break
        xt = x_adv[todo].requires_grad_(True)
        logits = model(xt)
        grad, = torch.autograd.grad(F.cross_entropy(logits, y[todo], reduction="sum"), xt)
        fooled = (logits.argmax(1) != y[todo]) & freeze  # this iterate is adversarial already: keep it
        done[todo[fooled]] = True
        step = project(ascent_step(xt.detach(), grad, step_size, norm), x[todo], eps, norm)
        x_adv[todo[~fooled]] = step[~fooled]
    return x_adv


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = "linf", eps: float,
        steps: int = 40, step_size: float | None = None, random_start: bool = True, bpda: str | None = None,
        seed: int = 0, batch_size: int = 500, progress: bool = True, freeze: bool = True) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (see the module docstring)."""
    checks.images("x", x)
    y = checks.labels("y", y, len(x))
    checks.choice("norm", norm, checks.NORMS)
    eps, steps = checks.positive("eps", eps), checks.at_least("steps", steps, 1)
    batch_size, seed = checks.at_least("batch_size", batch_size, 1), checks.at_least("seed", seed, 0)
    step_size = checks.positive("step_size", 2.5 * eps / steps if step_size is None else step_size)
    progress, freeze = checks.flag("progress", progress), checks.flag("freeze", freeze)
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    context = straight_through(model, bpda) if bpda is not None else contextlib.nullcontext()
    with context:
        for i in tqdm(range(0, len(x), batch_size), desc=f"pgd {norm}", disable=not progress, leave=False):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            start = _random_start(xb, eps, norm, gen) if random_start else xb
            out.append(_attack_batch(model, xb, yb, norm, eps, steps, step_size, start, freeze))
    return torch.cat(out)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = "linf", eps: float,
         bpda: str | None = None, batch_size: int = 500) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size eps from the clean image (see the module docstring)."""
    return pgd(model, x, y, norm=norm, eps=eps, steps=1, step_size=eps, random_start=False, bpda=bpda,
               batch_size=batch_size, progress=False)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bpda: str | None = None) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to the input images (what FGSM's sign is taken of;
    GCM Fig. 4 shows its sign), optionally with BPDA through the layer ``bpda``."""
    checks.images("x", x)
    y = checks.labels("y", y, len(x))
    device = model_device(model)
    xr = x.to(device).clone().requires_grad_(True)
    context = straight_through(model, bpda) if bpda is not None else contextlib.nullcontext()
    with context:
        grad, = torch.autograd.grad(F.cross_entropy(model(xr), y.to(device), reduction="sum"), xr)
    return grad
