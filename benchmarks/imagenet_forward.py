"""The ImageNet zoo model's (EfficientNet-Lite0, 224 x 224) forward throughput by batch size, and Square's time
against it, measured in one run in the thread setting the process starts with (a JupyterLab kernel sets none).

1. Images per second of plain eager forwards (inference mode) by batch size: the model with contiguous weights,
   with channels_last weights (what ``models.load`` gives), and traced by ``torch.fx`` with every batch norm folded
   into the convolution before it (``fx_folded``: ``torch.fx.experimental.optimization.fuse`` matches the exact type
   ``nn.Conv2d`` and so folds none of EfficientNet-Lite's same-padding subclass; the workbench's ``fold_batchnorm``
   folds only pairs inside an ``nn.Sequential``, and EfficientNet-Lite calls its norms by attribute, so the Oracle
   forwards it unfolded).
2. Square (l-inf 4/255, the protocol's settings) on the first ``--images`` embedded samples for ``--queries``
   queries: its wall time, the images it forwarded, and its time over the forward floor.

    python -m benchmarks.imagenet_forward [--images 8] [--queries 100] [--batches 1 8 16 32 64]
"""

from __future__ import annotations

import copy
import time

import pandas as pd
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from benchmarks import common
from benchmarks.cifar_forward import throughput
from workbench import data, models
from workbench.attacks import registry as attacks
from workbench.oracle import Oracle

DATASET = "imagenet-samples"


class _ConvLeaves(torch.fx.Tracer):
    """A tracer that keeps every convolution one module call, subclasses too (EfficientNet-Lite's same padding)."""

    def is_leaf_module(self, m: torch.nn.Module, qualified_name: str) -> bool:
        return isinstance(m, torch.nn.Conv2d) or super().is_leaf_module(m, qualified_name)


def fx_folded(model: torch.nn.Module) -> torch.fx.GraphModule:
    """``model`` traced by torch.fx, each eval-mode BatchNorm2d whose only input is a Conv2d (or a subclass) read by
    nothing else folded into it (``fuse_conv_bn_eval``)."""
    root = copy.deepcopy(model).eval()
    traced = torch.fx.GraphModule(root, _ConvLeaves().trace(root))
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(modules.get(node.target), torch.nn.BatchNorm2d) and isinstance(conv, torch.fx.Node)
                and conv.op == "call_module" and isinstance(modules.get(conv.target), torch.nn.Conv2d)
                and len(conv.users) == 1):
            parent, _, name = conv.target.rpartition(".")
            fused = fuse_conv_bn_eval(modules[conv.target], modules[node.target])
            setattr(traced.get_submodule(parent) if parent else traced, name, fused)
            node.replace_all_uses_with(conv)
            traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    args = parser.parse_args()
    test = data.load(DATASET)
    x = test.x.to(args.device)
    model = models.load("efficientnet-lite0", device=args.device)
    variants = {"contiguous": models.load("efficientnet-lite0", channels_last=False, device=args.device),
                "channels_last": model,
                "fx-folded (channels_last)": fx_folded(model).to(memory_format=torch.channels_last)}
    with torch.inference_mode():
        gap = (variants["fx-folded (channels_last)"](x[:8]) - model(x[:8])).abs().max().item()
    rates = pd.DataFrame({name: {b: throughput(m, x, b, repeats=2) for b in args.batches}
                          for name, m in variants.items()})
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("1. forward throughput, images / s (rows: batch size)")
    print(rates.round(1).to_string())
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in variants["fx-folded (channels_last)"].modules())
    print(f"   fx-folded: {norms} batch norms left unfolded; logits vs eager: max |difference| {gap:.1e}")
    xs, ys = test[:args.images]
    oracle = Oracle(model, xs.to(args.device), ys.to(args.device), budget=args.queries)
    start = time.perf_counter()
    result = attacks.build("square", dataset=DATASET, seed=0, progress=False).run(oracle)
    seconds = time.perf_counter() - start
    forwarded = int(result.queries.sum())
    floor = forwarded / float(rates.max().max())
    print(f"\n2. Square l-inf 4/255, {args.images} images, {args.queries} queries: {seconds:.1f} s, {forwarded} images "
          f"forwarded, robust {result.robust_accuracy():.3f}; floor {floor:.1f} s -> {seconds / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
