"""A worst-case leaderboard of SQA defenses: every registry defense ranked by ``evaluate``'s per-image worst case
over the attacks its probes call for (the standard SQAs, the adaptive attacks for post-processing and
prediction-keeping defenses, EOT for randomized ones), as observed and as re-evaluated by fresh queries.

Columns per defense: clean accuracy and agreement with the undefended model (on the attacked images), ECE, the
worst case at each budget as the attackers observed it, ``final`` (the worst case after the last budget,
re-evaluated where one query cannot be trusted), which attack was worst (broke the most images by the end), the
forward cost per image relative to the undefended model, the probes, and provenance (workbench version, git
commit, torch, device, the weights' fingerprint). Rows are sorted by ``final``, most robust first.

Every attack's per-image record is cached under ``cache_dir`` (``runs.run``'s cache, keyed by the defense, its
arguments and the weights' fingerprint): a killed run resumes where it stopped. The command line keeps them with
the grids' records (``<data>/experiments``), and a defense is probed on the attacked images as a grid cell's is, so
the grids that share a board's setting (``cifar10-table``, ``cifar10-adaptive``) read the board's records instead
of running them again. ``--record`` merges: the defenses
just run replace their old rows and the others stay, each row with its own provenance, so a board too long for one
sitting is recorded a few defenses at a time (``--defenses``).

Command line (the recorded table of the papers' CIFAR-10 setting, l-inf 8/255 on the embedded JPEG q75 test images)::

    python -m workbench.leaderboard cifar10-worst-case --record       # data/tables/cifar10-worst-case.csv
    python -m workbench.leaderboard mnist --n 20 --budgets 100 300    # a quick one on the embedded MNIST

Example::

    >>> table = rank(["none", "aaa-sine", "rls"], dataset="cifar10-jpeg", n=20, budgets=(100, 1000))
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from workbench import checks, experiment, experiments, paths, protocol, report, runs
from workbench.defenses import registry as defenses
from workbench.evaluate import Evaluation, evaluate

BOARDS = {  # recorded leaderboards: name -> (dataset, images, budgets)
    "cifar10-worst-case": ("cifar10-jpeg", 100, (100, 1000, 2500)),
}


def rank(names: Sequence[str], *, dataset: str, model: str | None = None, n: int = 100,
         budgets: Sequence[int] = (100, 1000, 2500), seed: int = 0, cache_dir: str | Path | None = None,
         progress: bool = True) -> pd.DataFrame:
    """The leaderboard of the registry defenses ``names`` around ``model`` (default: the dataset's zoo model) on the
    first ``n`` test images of ``dataset`` (see the module docstring): one experiment per defense
    (``experiment.setup``), each evaluated (``evaluate``)."""
    rows, reference = [], None
    for name in tqdm(list(names), desc="defenses", unit="defense", disable=not progress):
        exp = experiment.setup(name, model, dataset=dataset, n=n, budgets=budgets, seed=seed)
        result = evaluate(exp, cache_dir=cache_dir, progress=progress)
        if reference is None:  # the undefended model's forward cost, timed once for the whole board
            reference = report.seconds_per_image(exp.target.undefended, exp.x, repeats=2)
        rows.append(_row(name, exp, result, reference))
    return pd.DataFrame(rows).sort_values("final", ascending=False, kind="stable").reset_index(drop=True)


def recorded(board: str) -> pd.DataFrame:
    """The leaderboard ``board`` (one of ``BOARDS``) as last recorded by ``python -m workbench.leaderboard BOARD
    --record``, in its order (most robust first), each row with its provenance."""
    checks.choice("board", board, tuple(BOARDS))
    path = paths.tables_dir() / f"{board}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded leaderboard {board!r} at {path}; make it with "
                                f"`python -m workbench.leaderboard {board} --record`")
    return pd.read_csv(path)


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """The recorded board with the rows of ``new`` in place of the same defenses' (a board is recorded a few
    defenses at a time: each row keeps its own provenance), sorted by ``final``."""
    if old is None:
        return new
    kept = old[~old["defense"].isin(new["defense"])]
    merged = pd.concat([kept, new], ignore_index=True)
    return merged.sort_values("final", ascending=False, kind="stable").reset_index(drop=True)


def _row(name: str, exp: experiment.Experiment, result: Evaluation, reference: float) -> dict[str, object]:
    clean = exp.clean()
    finals = result.attacks.set_index("attack")["final"]
    cost = report.seconds_per_image(exp.target.defended, exp.x, repeats=2) / reference
    probes = exp.target.probes
    return {"defense": name, "clean acc": clean["clean acc"], "agreement": clean["agreement"], "ECE": clean["ECE"],
            **{f"worst@{b}": result.worst[f"robust@{b}"] for b in result.budgets}, "final": result.worst["final"],
            "worst attack": str(finals.idxmin()), "worst attack final": float(finals.min()),
            "attacks": len(result.attacks), "re-evaluated": result.reevaluated, "cost per query": cost,
            "randomized": probes.randomized, "keeps predictions": probes.keeps_predictions,
            "eot": result.settings["eot"], "model": exp.model, "n": len(exp.x), "seed": exp.seed,
            "fingerprint": runs.fingerprint(exp.model, variant=defenses.variant(name)),
            **runs.provenance(next(exp.target.defended.parameters()).device)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board", help=f"a recorded board ({', '.join(BOARDS)}) or a protocol ({', '.join(protocol.names())})")
    parser.add_argument("--defenses", nargs="*", default=None, help="registry names (default: every one)")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--budgets", type=int, nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="default <data>/experiments, shared with the grids")
    parser.add_argument("--record", action="store_true", help="write data/tables/<board>.csv (recorded boards only)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.board in BOARDS:
        dataset, n, budgets = BOARDS[args.board]
    else:
        checks.choice("board", args.board, tuple(BOARDS) + protocol.names())
        dataset, n, budgets = args.board, 100, (100, 1000)
        if args.record:
            parser.error(f"--record writes the recorded boards only ({', '.join(BOARDS)})")
    names = args.defenses or list(defenses.names())
    table = rank(names, dataset=dataset, n=args.n or n, budgets=args.budgets or budgets, seed=args.seed,
                 cache_dir=args.cache_dir or experiments.cache_dir_default())
    print(table.drop(columns=["git commit", "workbench", "torch", "device", "fingerprint"]).to_markdown(
        index=False, floatfmt=".3f"))
    if args.record:
        out = paths.tables_dir() / f"{args.board}.csv"
        merged = merge(pd.read_csv(out) if out.is_file() else None, table)
        paths.atomic_write(out, lambda tmp: merged.to_csv(tmp, index=False))
        print(f"\nrecorded: {out} ({len(merged)} defenses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
