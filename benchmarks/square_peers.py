"""Our Square against torchattacks' Square and ART's SquareAttack, measured in one run.

Same model (the zoo's MNIST CNN), the first 500 test images, l-inf eps 0.3, 1000 queries, p_init 0.05, seed 0.
Prints robust accuracy and wall time side by side, the speed-ups, and the ratio of our attack's time to the time
of the model forward passes it made. torchattacks and ART are optional (``pip install -e .[peers]``); a missing
one is skipped with a message.

    python benchmarks/square_peers.py [--images 500] [--queries 1000] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench import data, models
from workbench.attacks.square import Square
from workbench.oracle import Oracle


def ours(model, x, y, eps, queries):
    oracle = Oracle(model, x, y, budget=queries)
    result = Square(norm="linf", eps=eps, p_init=0.05, seed=0, progress=False).run(oracle)
    return result.robust_accuracy(), result.seconds, result.forward_seconds


def with_torchattacks(model, x, y, eps, queries):
    import torchattacks

    attack = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, p_init=0.05, loss="margin",
                                 resc_schedule=False, seed=0)  # the paper's 10000-step schedule, as ours
    start = time.perf_counter()
    x_adv = attack(x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item(), seconds


def with_art(model, x, y, eps, queries):
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    device = "gpu" if x.is_cuda else "cpu"
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                            clip_values=(0.0, 1.0), device_type=device)
    attack = SquareAttack(clf, norm="inf", eps=eps, max_iter=queries, p_init=0.05, nb_restarts=1,
                          batch_size=len(x), verbose=False)
    start = time.perf_counter()
    x_adv = attack.generate(x.cpu().numpy(), y=y.cpu().numpy())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pred = model(torch.from_numpy(x_adv).to(x.device)).argmax(1)
    return (pred == y).float().mean().item(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = models.load("mnist-cnn", device=args.device)
    x, y = data.load("mnist5k", "test")[: args.images]
    x, y = x.to(args.device), y.to(args.device)
    print(f"Square, l-inf eps={args.eps}, {args.queries} queries, {args.images} images, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    acc, seconds, forward = ours(model, x, y, args.eps, args.queries)
    rows = [("workbench", acc, seconds)]
    for name, peer in (("torchattacks", with_torchattacks), ("ART", with_art)):
        try:
            rows.append((name, *peer(model, x, y, args.eps, args.queries)))
        except ImportError as err:
            print(f"{name}: skipped ({err.name} is not installed; pip install -e .[peers])")
    print(f"\n{'library':<14}{'robust acc':>12}{'seconds':>10}{'our speed-up':>14}")
    for name, acc_, sec in rows:
        print(f"{name:<14}{acc_:>12.3f}{sec:>10.2f}{sec / seconds:>13.1f}x")
    print(f"\nour attack time / its model forward time: {seconds / forward:.3f} "
          f"({seconds:.2f} s total, {forward:.2f} s in forward passes)")


if __name__ == "__main__":
    main()
