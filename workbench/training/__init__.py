"""Training recipes of the zoo (seeded; they write the weights a zoo entry ships), above the models and the
attacks: adversarial training crafts its examples with the white-box attacks.

- ``mnist-cnn``: Adam, cross-entropy, 6 epochs on the embedded MNIST-5k training split, one thread.
- ``mnist-cnn-at``: PGD-7 adversarial training at l-inf 0.3 (Madry et al. 2018), fine-tuned from ``mnist-cnn``,
  10 epochs at Adam lr 5e-4: with lr 1e-3 the clean accuracy swung between epochs (0.66-0.89) and ended at 0.805
  (PGD-40: 0.46); at 5e-4 it climbs steadily (0.76, 0.78, 0.82, 0.88, 0.92, 0.93, 0.93, 0.95 over 8 epochs).
- ``mnist-cnn-gf``: Gaussian augmentation (RND-GF, Qin et al. 2021: the loss of the expectation over 4 noisy
  copies, nu 0.05), fine-tuned from ``mnist-cnn`` for 2 epochs.
- ``cifar10-resnet20-ls``: ResNet-20 on the 50,000 CIFAR-10 (JPEG q75) training images (``--root``): SGD with
  Nesterov momentum, 90 epochs, batch 256, lr 0.2 with 2 warm-up epochs and a cosine decay, weight decay 5e-4, label
  smoothing 0.1, random crops and flips, bfloat16 autocast (``workbench.training.sgd``), checkpointed every epoch.
  The same recipe in float32 for 50 epochs (87 s an epoch on 2 cores) ended at 0.8799; ten more epochs of weight
  averaging (SWA, lr 0.02) on top did not pass it (0.863, 0.870, 0.873, 0.875, 0.876 after 1-5 epochs). bfloat16
  autocast trains 1.5x faster on this CPU (59 s an epoch), which buys the 90 epochs.
- ``cifar10-resnet20`` (the standard model): ``cifar10-resnet20-ls`` fine-tuned 4 epochs without label smoothing
  (peak lr 0.02, half an epoch of warm-up). Label smoothing 0.1 caps the clean margins near log(0.91 / 0.01) = 4.5
  logits (median 4.2), which slows Square (8 % robust after 2500 queries, against the papers' 0.1 %) and puts every
  image inside AAA's first interval (tau = 6); without it the median margin is 6.3 and Square reaches 2 %.
- ``cifar10-resnet20-at``: FGSM with a random start (Wong et al. 2020, "Fast is better than free": eps 8/255, step
  10/255), fine-tuned from the standard ``cifar10-resnet20`` for 10 epochs at peak lr 0.05, without label smoothing
  (the AT row then differs from the standard model by the adversarial training alone).
- ``cifar10-resnet20-gf``: Gaussian augmentation (nu 0.05, RND-GF), fine-tuned from the standard
  ``cifar10-resnet20`` for 5 epochs at peak lr 0.02, without label smoothing.
- ``cifar10-similarity-encoder``: the similarity encoder of Stateful Detection (Chen et al. 2020's layers), trained
  with a contrastive loss (``contrastive_step``: each training image and a benign change of it pulled together,
  another image's change pushed 10 apart) on the 50,000 CIFAR-10 (JPEG q75) training images: Adam at lr 1e-3 with
  half an epoch of warm-up and a cosine decay, batch 256, float32, one thread, 8 epochs. The authors' weights are
  not available. SGD at lr 0.05 with bfloat16 stalled (mean loss 56.6, 51.2, 52.4, 52.6 over four epochs);
  Adam brought it from 63 to 22 within 150 steps of 128 images.

Command line (``python -m workbench.models`` is the same)::

    python -m workbench.models train mnist-cnn [--out PATH] [--epochs N]
    python -m workbench.models train cifar10-resnet20-ls --root ~/data/cifar10-jpeg
    python -m workbench.models train cifar10-resnet20 --root ~/data/cifar10-jpeg   # from the shipped -ls

Training is seeded, initial weights included; another CPU (or thread count) may still round differently, which is
why the zoo ships its weights instead of retraining them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench import checks, data, models, paths, protocol
from workbench.training import sgd
from workbench.attacks.whitebox import pgd

Step = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def adversarial_step(eps: float = 0.3, steps: int = 7) -> Step:
    """PGD adversarial training: the cross-entropy on PGD-``steps`` examples (l-inf ``eps``, random start,
    step 2.5 * eps / steps), crafted with the model in eval mode (batch-norm statistics untouched)."""

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.eval()
        seed = int(torch.randint(2 ** 31 - 1, ()))
        x_adv = pgd(model, x, y, eps=eps, steps=steps, seed=seed, progress=False, freeze=False)
        model.train()
        return F.cross_entropy(model(x_adv), y)

    return step


def gaussian_step(sigma: float = 0.05, draws: int = 4) -> Step:
    """Gaussian augmentation with the loss of the expectation over noise: the negative log of the mean, over
    ``draws`` noisy copies (std ``sigma``, clipped to [0, 1]), of the true-class probability."""

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        noisy = (x.repeat(draws, 1, 1, 1) + sigma * torch.randn(draws * len(x), *x.shape[1:])).clamp(0.0, 1.0)
        probs = F.softmax(model(noisy), 1).view(draws, len(x), -1).mean(0)
        return F.nll_loss(probs.clamp_min(1e-12).log(), y)

    return step


def fgsm_rs_step(eps: float = 8 / 255, alpha: float = 10 / 255, smoothing: float = 0.1) -> sgd.Step:
    """FGSM adversarial training with a random start (Wong et al. 2020): a uniform start in the eps-ball, one
    signed-gradient step of ``alpha`` projected back, the label-smoothed cross-entropy on the result; the
    randomness comes from the loop's generator."""

    def fgsm_rs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        delta = ((torch.rand(x.shape, generator=gen) * 2 - 1) * eps).requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model((x + delta).clamp(0, 1)), y), delta)
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps).detach()
        return F.cross_entropy(model((x + delta).clamp(0, 1)), y, label_smoothing=smoothing)

    return fgsm_rs


def noise_step(sigma: float = 0.05, smoothing: float = 0.1) -> sgd.Step:
    """Gaussian augmentation: the label-smoothed cross-entropy on the batch with N(0, sigma^2) noise, clipped to
    [0, 1]; the noise comes from the loop's generator."""

    def gaussian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noisy = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        return F.cross_entropy(model(noisy), y, label_smoothing=smoothing)

    return gaussian


def contrastive_step(margin: float = 10.0, noise: float = 0.06, brightness: float = 0.1,
                     contrast: float = 0.1, shift: int = 2) -> sgd.Step:
    """The similarity encoder's loss (a contrastive loss, Hadsell et al. 2006, as Chen et al. 2020 train theirs):
    each image and a benign change of it (uniform noise of a random l-inf radius up to ``noise``, a brightness shift
    up to ``brightness``, a contrast factor within 1 +- ``contrast``, a shift of up to ``shift`` pixels) are pulled
    together (squared distance); each image and another image's change are pushed at least ``margin`` apart
    (squared hinge). The labels are unused; the randomness comes from the loop's generator."""

    def contrastive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        changed = benign_change(x, gen, noise, brightness, contrast, shift)
        e, e_changed = model(x), model(changed)
        near = (e - e_changed).pow(2).sum(1)
        far = F.relu(margin - (e - e_changed.roll(1, 0)).norm(dim=1)).pow(2)
        return (near + far).mean()

    return contrastive


def benign_change(x: torch.Tensor, gen: torch.Generator, noise: float, brightness: float, contrast: float,
                  shift: int) -> torch.Tensor:
    """``x`` (N, C, H, W) with a random benign change per image (see ``contrastive_step``), clipped to [0, 1]."""
    n = len(x)
    draw = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    radius = noise * draw(n, 1, 1, 1)
    out = x + radius * (2 * draw(*x.shape) - 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    out = (out - mean) * (1 + contrast * (2 * draw(n, 1, 1, 1) - 1)) + mean
    out = out + brightness * (2 * draw(n, 1, 1, 1) - 1)
    dy, dx = ((draw(n) * (2 * shift + 1)).long() - shift for _ in range(2))
    out = torch.stack([o.roll((int(a), int(b)), (1, 2)) for o, a, b in zip(out, dy, dx)])
    return out.clamp(0, 1)


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained. MNIST recipes: Adam at ``lr`` for ``epochs``, batches of ``batch_size``, on one
    thread; ``schedule``: the CIFAR-10 loop (``sgd.Schedule``) instead."""

    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    base: str | None = None  # fine-tune this zoo model instead of training from scratch
    step: Callable[[], Step | sgd.Step] | None = None  # makes the loss of one batch (default: cross-entropy)
    schedule: sgd.Schedule | None = None
    supervised: bool = True  # False: an encoder (no test accuracy to log)


RECIPES: dict[str, Recipe] = {
    "mnist-cnn": Recipe(epochs=6),
    "mnist-cnn-at": Recipe(epochs=10, lr=5e-4, base="mnist-cnn", step=adversarial_step),
    "mnist-cnn-gf": Recipe(epochs=2, base="mnist-cnn", step=gaussian_step),
    "cifar10-resnet20-ls": Recipe(schedule=sgd.Schedule()),
    "cifar10-resnet20": Recipe(base="cifar10-resnet20-ls",
                               schedule=sgd.Schedule(epochs=4, lr=0.02, warmup=0.5, label_smoothing=0.0)),
    "cifar10-resnet20-at": Recipe(base="cifar10-resnet20", step=functools.partial(fgsm_rs_step, smoothing=0.0),
                                  schedule=sgd.Schedule(epochs=10, lr=0.05, warmup=1.0, label_smoothing=0.0)),
    "cifar10-resnet20-gf": Recipe(base="cifar10-resnet20", step=functools.partial(noise_step, smoothing=0.0),
                                  schedule=sgd.Schedule(epochs=5, lr=0.02, warmup=0.5, label_smoothing=0.0)),
    "cifar10-similarity-encoder": Recipe(step=contrastive_step, supervised=False, schedule=sgd.Schedule(
        epochs=8, lr=1e-3, warmup=0.5, weight_decay=0.0, label_smoothing=0.0, threads=1, bfloat16=False,
        optimizer="adam")),
}


def train(name: str, out: str | Path | None = None, *, epochs: int | None = None, seed: int = 0,
          root: str | Path | None = None, progress: bool = True) -> Path:
    """Train the zoo model ``name`` with its seeded recipe (the recipe its shipped weights were made with) and
    write its state dict atomically to ``out`` (default: ``<data_dir>/<name>.pt``). Fine-tuned variants start
    from the shipped weights of their base. ``epochs`` overrides the recipe's (e.g. a quick check); ``root``: the
    data folder of a dataset that does not ship with the workbench."""
    checks.choice("name", name, tuple(RECIPES))
    recipe = RECIPES[name]
    if epochs is not None:
        epochs = checks.at_least("epochs", epochs, 1)
        recipe = dataclasses.replace(recipe, epochs=epochs, schedule=recipe.schedule and dataclasses.replace(
            recipe.schedule, epochs=epochs))
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initial weights too: the same model whatever ran before in the process
        model = models.build(name)
    if recipe.base is not None:
        model.load_state_dict(models.load(recipe.base).state_dict())
        model.requires_grad_(True)
    entry = protocol.get(models.entry(name).dataset)
    target = Path(out).expanduser() if out is not None else paths.data_dir() / f"{name}.pt"
    if recipe.schedule is not None:
        train_set, test_set = (data.load(entry.data, split, root=root) for split in ("train", "test"))
        test = (test_set.x, test_set.y) if recipe.supervised else None
        sgd.fit(model, (train_set.x, train_set.y), test, recipe.schedule,
                checkpoint=target.with_suffix(".ckpt"), log=target.with_suffix(".log"), seed=seed,
                step=recipe.step() if recipe.step else None, progress=progress)
    else:
        fit(model, recipe, data.load(entry.data, "train", root=root), seed=seed,
            step=recipe.step() if recipe.step else None, progress=progress)
    state = model.state_dict()
    paths.atomic_write(target, lambda tmp: torch.save(state, tmp))
    return target


def fit(model: nn.Module, recipe: Recipe, train_set: data.Dataset, seed: int = 0, step: Step | None = None,
        progress: bool = True) -> nn.Module:
    """Train ``model`` on ``train_set`` with Adam and cross-entropy (or a custom ``step`` that returns the loss
    of one batch, e.g. adversarial training), seeded, on one thread (multi-threaded reductions vary from run to
    run), with a progress bar."""
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return _fit(model, recipe, train_set, gen, step, progress)
    finally:
        torch.set_num_threads(threads)


def _fit(model: nn.Module, recipe: Recipe, train_set: data.Dataset, gen: torch.Generator, step: Step | None,
         progress: bool) -> nn.Module:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    batches = (len(train_set) + recipe.batch_size - 1) // recipe.batch_size
    for _ in tqdm(range(recipe.epochs), desc=f"training on {train_set.name}", unit="epoch", disable=not progress):
        order = torch.randperm(len(train_set), generator=gen)
        for b in range(batches):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            x, y = train_set[idx]
            loss = step(model, x, y) if step else F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.models",
                                     description="Retrain a zoo model with its seeded recipe.")
    sub = parser.add_subparsers(dest="command", required=True)
    command = sub.add_parser("train", help="train NAME and write its weights (default: <data>/NAME.pt)")
    command.add_argument("name", choices=tuple(RECIPES))
    command.add_argument("--out", default=None, help="where to write the state dict")
    command.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    command.add_argument("--root", default=None, help="data folder of a dataset that does not ship (CIFAR-10)")
    args = parser.parse_args(argv)
    path = train(args.name, args.out, epochs=args.epochs, root=args.root)
    print(f"{args.name}: {path} (sha256 {models.sha256(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
