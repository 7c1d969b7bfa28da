"""Our Square against torchattacks' Square and ART's SquareAttack and against the model's forward-pass floor,
measured in one interleaved run, in the thread setting the process starts with (a JupyterLab kernel sets none).

Same model object for everyone (the zoo's MNIST CNN as ``models.load`` gives it: channels_last weights), and
torchattacks once more on the same weights in the default contiguous layout (what loading a checkpoint into a
fresh module gives its users); the first 500 test images,
1000 queries, p_init 0.05 (l-inf eps 0.3) / 0.1 (l2 eps 2.0), seed 0. Each round runs ours and torchattacks once
per norm, alternating; ART (about 40x slower) runs once per norm. The forward floor is the number of images our
run forwarded divided by the best throughput of plain eager forwards (inference mode) over batch sizes
16-512, measured in the same run, of the model as given and of the copy with folded batch norms that our Oracle
forwards through (``workbench.speed.inference``). ``--hog`` keeps one core busy with another process throughout.

    python -m benchmarks.square_peers [--images 500] [--queries 1000] [--rounds 3] [--hog] [--no-art]
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks import common
from workbench.attacks.square import Square
from workbench.speed.inference import fold_batchnorm
from workbench.oracle import Oracle

EPS = {"linf": 0.3, "l2": 2.0}
P_INIT = {"linf": 0.05, "l2": 0.1}


def ours(model, x, y, norm, queries):
    oracle = Oracle(model, x, y, budget=queries)
    result = Square(norm=norm, eps=EPS[norm], p_init=P_INIT[norm], seed=0, progress=False).run(oracle)
    return result.robust_accuracy(), result.seconds, int(oracle.queries.sum())


def with_torchattacks(model, x, y, norm, queries):
    import torchattacks

    attack = torchattacks.Square(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=EPS[norm], n_queries=queries,
                                 p_init=P_INIT[norm], loss="margin", resc_schedule=False, seed=0)
    start = time.perf_counter()
    x_adv = attack(x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item(), seconds


def with_art(model, x, y, norm, queries):
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")
    attack = SquareAttack(clf, norm={"linf": "inf", "l2": 2}[norm], eps=EPS[norm], max_iter=queries,
                          p_init=P_INIT[norm], nb_restarts=1, batch_size=len(x), verbose=False)
    start = time.perf_counter()
    x_adv = attack.generate(x.cpu().numpy(), y=y.cpu().numpy())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pred = model(torch.from_numpy(x_adv).to(x.device)).argmax(1)
    return (pred == y).float().mean().item(), seconds


def best_throughput(model, x) -> tuple[float, int]:
    """Images per second of plain eager forwards at the best batch size (and that size)."""
    best = (0.0, 0)
    with torch.inference_mode():
        for size in (16, 32, 64, 128, 256, 512):
            rates = []
            for _ in range(3):
                start = time.perf_counter()
                for i in range(0, len(x), size):
                    model(x[i:i + size])
                rates.append(len(x) / (time.perf_counter() - start))
            best = max(best, (max(rates), size))
    return best


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--norms", default="linf,l2")
    parser.add_argument("--hog", action="store_true", help="keep one core busy with another process")
    parser.add_argument("--no-art", action="store_true")
    args = parser.parse_args()
    with common.busy_core(args.hog):
        run(args)


def run(args) -> None:
    model = common.model(args.device)
    contiguous = common.model(args.device, channels_last=False)
    x, y = common.test_set()[: args.images]
    x, y = x.to(args.device), y.to(args.device)
    folded = fold_batchnorm(model)
    print(f"Square, {args.queries} queries, {args.images} images, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads{', one core hogged' if args.hog else ''}")
    for norm in args.norms.split(","):
        times = {"workbench": [], "torchattacks": [], "torchattacks (contiguous)": [], "floor": [],
                 "folded floor": []}
        robust = {}
        for _ in range(args.rounds):
            rate, size = best_throughput(model, x)
            acc, seconds, forwarded = ours(model, x, y, norm, args.queries)
            times["workbench"].append(seconds)
            times["floor"].append(forwarded / rate)
            times["folded floor"].append(forwarded / best_throughput(folded, x)[0])
            robust["workbench"] = acc
            try:
                robust["torchattacks"], seconds = with_torchattacks(model, x, y, norm, args.queries)
                times["torchattacks"].append(seconds)
                robust["torchattacks (contiguous)"], seconds = with_torchattacks(contiguous, x, y, norm, args.queries)
                times["torchattacks (contiguous)"].append(seconds)
            except ImportError:
                times.pop("torchattacks", None)
                times.pop("torchattacks (contiguous)", None)
        if not args.no_art:
            try:
                robust["ART"], seconds = with_art(model, x, y, norm, args.queries)
                times["ART"] = [seconds]
            except ImportError:
                pass
        ours_t = statistics.median(times["workbench"])
        print(f"\n{norm} eps {EPS[norm]} (median of {args.rounds} interleaved rounds; best forward batch {size})")
        print(f"{'':<26}{'robust acc':>12}{'seconds (min-max)':>22}{'ours faster by':>16}")
        for name, values in times.items():
            if "floor" in name:
                continue
            spread = f"{min(values):.2f}-{max(values):.2f}"
            print(f"{name:<26}{robust.get(name, float('nan')):>12.3f}{spread:>22}"
                  f"{statistics.median(values) / ours_t:>15.2f}x")
        floor, folded_floor = statistics.median(times["floor"]), statistics.median(times["folded floor"])
        print(f"our time / forward floor: {ours_t / floor:.3f} of the model as given, {ours_t / folded_floor:.3f} of "
              f"its folded copy (floors {floor:.2f} s / {folded_floor:.2f} s: {forwarded} image-forwards at the best "
              f"eager throughput)")


if __name__ == "__main__":
    main()
