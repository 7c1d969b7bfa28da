"""The prepared GPU check (``make gpu-check``), for the day a CUDA device is lent; a few minutes on one GPU.

1. The CUDA tests: every test that skips on a machine without CUDA (``pytest -k cuda``).
2. AAA's CUDA-graph solver against the eager loop on the CPU (both run float64 steps, so the same float32
   output is expected): rows that differ and the largest difference, on the MNIST CNN's 1000 test logits and the
   CIFAR-10 ResNet-20's logits of the 1000 embedded test images; and its time per query batch of 64 and 500 rows
   against the CPU's compiled loop.
3. Square's time over the forward floor on CIFAR-10 (``benchmarks.cifar_forward --device cuda``, 500 images,
   1000 queries).

It prints a short report. Without CUDA it says so and exits 0: nothing in the workbench requires a GPU.

    python -m benchmarks.gpu_check
"""

from __future__ import annotations

import subprocess
import sys

import torch

from benchmarks import common
from workbench import data, metrics, models
from workbench.defenses import aaa


def _solver_agreement(name: str, model: torch.nn.Module, x: torch.Tensor) -> None:
    logits = metrics.predict(model, x)
    for curve in aaa.CURVES:
        cpu = aaa.AAA(torch.nn.Identity(), curve, solver="eager").post_process(logits)
        gpu = aaa.AAA(torch.nn.Identity(), curve, solver="graph").post_process(logits.cuda()).cpu()
        far = (cpu - gpu).abs().amax(1)
        print(f"  {name}, AAA-{curve}: predictions equal {torch.equal(cpu.argmax(1), gpu.argmax(1))}, rows that "
              f"differ {int((far > 0).sum())} / {len(far)}, largest {float(far.max()) / float(cpu.abs().max()):.2g} "
              "of the scale")
    for rows in (64, 500):
        z = logits[:rows]
        times = {}
        for solver, device in (("compiled", "cpu"), ("graph", "cuda")):
            defense, zd = aaa.AAA(torch.nn.Identity(), solver=solver), z.to(device)
            defense.post_process(zd)  # the graph's capture and numba's compilation are not timed

            def once() -> None:
                defense.post_process(zd)
                if device == "cuda":
                    torch.cuda.synchronize()

            times[solver] = common.best(once, 5)
        print(f"  {name}, {rows} rows: graph {times['graph'] * 1e3:.2f} ms, CPU compiled "
              f"{times['compiled'] * 1e3:.2f} ms ({times['compiled'] / times['graph']:.1f}x)")


def main() -> int:
    common.parser(__doc__).parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine; nothing to check (nothing requires one)")
        return 0
    print(f"gpu-check on {torch.cuda.get_device_name()}, torch {torch.__version__}\n\n1. CUDA tests")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", "-rs",
                            "tests"], capture_output=True, text=True)
    print("  " + (tests.stdout.strip().splitlines() or ["(no output)"])[-1])
    print("\n2. AAA's CUDA-graph solver against the eager CPU loop")
    _solver_agreement("MNIST CNN", models.load("mnist-cnn"), data.load("mnist", "test").x)
    _solver_agreement("CIFAR-10 ResNet-20", models.load("cifar10-resnet20"), data.load("cifar10-jpeg", "test").x)
    print("\n3. Square over the forward floor, CIFAR-10 (benchmarks.cifar_forward)", flush=True)
    square = subprocess.run([sys.executable, "-m", "benchmarks.cifar_forward", "--device", "cuda", "--images", "500",
                             "--queries", "1000"], capture_output=True, text=True)
    print("  " + "\n  ".join(square.stdout.strip().splitlines()[-1:] or [square.stderr.strip()[-500:]]))
    return int(tests.returncode != 0 or square.returncode != 0)


if __name__ == "__main__":
    sys.exit(main())
