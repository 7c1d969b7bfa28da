"""A worst-case leaderboard of SQA defenses: every registry defense ranked by ``evaluate``'s per-image worst case
over the attacks its probes call for (the standard SQAs, the adaptive attacks for post-processing and
prediction-keeping defenses, EOT and the kappa Square for randomized ones, restarts of the strongest attack), as
observed and as re-evaluated by fresh queries.

Columns per defense: clean accuracy and agreement with the undefended model (on the attacked images), ECE, the
worst case at each budget as the attackers observed it, ``final`` (the worst case after the last budget,
re-evaluated where one query cannot be trusted), each with its 95% Wilson interval over the images (``lo`` /
``hi``), ``rank`` (defenses whose intervals of ``final`` overlap share a rank: ``metrics.ties``), the attack that
broke the most images by the end at the board's seed (``worst attack``, lowest ``final``; the one restarted), the
restart seeds, the forward cost per image relative to the undefended model, the probes,
and provenance (workbench version, git commit, torch, device, the weights' fingerprint and ``protocol``: the hash of
the board's exact protocol, ``protocol_hash``). Rows are sorted by ``final``, most robust first.

Every attack's per-image record is cached under ``cache_dir`` (``runs.run``'s cache, keyed by the defense, its
arguments and the weights' fingerprint): a killed run resumes where it stopped. The command line keeps them with
the grids' records (``<data>/experiments``), so the grids that share a board's setting read the board's records.
``--record`` merges: the defenses just run replace their old rows and the others stay, each row with its own
provenance, so a board too long for one sitting is recorded a few defenses at a time (``--defenses``); each row's
per-image records go beside the table (``data/tables/<board>-images/<defense>.csv``).

Submissions (``docs/submitting.md``): ``submit`` evaluates a defense of your own (an import path to a factory)
under a board's exact protocol and writes its row and per-image records; ``accept`` merges a submitted row into the
recorded board only when its protocol hash, weights fingerprint and per-image records check out.

Command line (the recorded table of the papers' CIFAR-10 setting, l-inf 8/255 on the embedded JPEG q75 test images)::

    python -m workbench.leaderboard cifar10-worst-case --record       # data/tables/cifar10-worst-case.csv
    python -m workbench.leaderboard mnist --n 20 --budgets 100 300    # a quick one on the embedded MNIST
    python -m workbench.leaderboard submit cifar10-worst-case my_pkg.defenses:factory --out submission/
    python -m workbench.leaderboard accept cifar10-worst-case submission/my_pkg_defenses_factory.csv

Example::

    >>> table = rank(["none", "aaa-sine", "rls"], dataset="cifar10-jpeg", n=20, budgets=(100, 1000))
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from workbench import cache, checks, data, evaluate as evaluation, experiment, experiments, metrics, paths, \
    plots, protocol, report, runs
from workbench.attacks import registry as attack_registry
from workbench.defenses import registry as defenses
from workbench.evaluate import Evaluation

BOARDS = {  # recorded leaderboards: name -> (dataset, images, budgets)
    "cifar10-worst-case": ("cifar10-jpeg", 100, (100, 1000, 2500)),
}
RULES = {  # evaluate's rules a board's numbers depend on: part of every row's protocol hash
    "eot resolution": evaluation.EOT_RESOLUTION, "eot range": list(evaluation.EOT_RANGE),
    "kappa sigmas": evaluation.KAPPA_SIGMAS, "gate slack": evaluation.GATE_SLACK, "restarts": evaluation.RESTARTS,
    "repeats": runs.REPEATS, "seed": 0,
}


def protocol_hash(dataset: str, n: int, budgets: Sequence[int], seed: int = 0, model: str | None = None,
                  refuses: bool = False, defense: str | None = None) -> str:
    """The hash of a board's exact protocol: the dataset and its threat model, the attacked images themselves,
    the budgets, the seed, the zoo model, the registry attacks' settings for the dataset and ``evaluate``'s rules
    (``RULES``). Two rows compare only when their hashes agree. The attacks of the ``stateful`` suite alone
    (OARS's) run only against a defense that refuses queries, so they enter the hash of such a row only
    (``refuses``); an attack written against one defense (``attacks.registry.against``) enters the hash of that
    ``defense``'s row only. Adding either kind left every other row's protocol as it was."""
    entry = protocol.get(dataset)
    own = attack_registry.against(defense)
    faced = [name for name in attack_registry.names()
             if (refuses or attack_registry.spec(name).suites != ("stateful",))
             and (not attack_registry.spec(name).against or name in own)]
    settings = {name: [attack_registry.spec(name).settings.get(entry.settings), attack_registry.spec(name).fixed]
                for name in faced}
    return cache.key({"dataset": entry.name, "eps": entry.eps, "settings": entry.settings, "n": n,
                      "budgets": list(budgets), "images": _images_hash(entry.name, n), "model": model or entry.model,
                      "attacks": settings, "rules": {**RULES, "seed": seed}})


@functools.cache
def _images_hash(dataset: str, n: int) -> str:
    """The SHA-256 of the first ``n`` test images and labels of ``dataset`` (shipped data: fixed per process)."""
    test = data.load(dataset)
    return hashlib.sha256(test.x[:n].numpy().tobytes() + test.y[:n].numpy().tobytes()).hexdigest()


def rank(names: Sequence[str], *, dataset: str, model: str | None = None, n: int = 100,
         budgets: Sequence[int] = (100, 1000, 2500), seed: int = 0, cache_dir: str | Path | None = None,
         progress: bool = True, images_dir: str | Path | None = None,
         defense_kwargs: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The leaderboard of the defenses ``names`` (registry names or import paths) around ``model`` (default: the
    dataset's zoo model) on the first ``n`` test images of ``dataset`` (see the module docstring). Every defense is
    set up and its plan checked (``evaluate.check_plan``) before the first attack runs: an impossible plan fails in
    seconds, not after hours of earlier defenses. ``images_dir``: write each defense's per-image records there."""
    names = list(names)
    if not names:
        raise ValueError("names: give at least one defense")
    exps, plans = {}, {}
    for name in tqdm(names, desc="set-up", unit="defense", disable=not progress):
        exps[name] = experiment.setup(name, model, dataset=dataset, n=n, budgets=budgets, seed=seed,
                                      defense_kwargs=(defense_kwargs or {}).get(name, {}))
        plans[name] = evaluation.suite(exps[name].target.probes, budget=exps[name].budget,
                                       defense=exps[name].target.defense)
        evaluation.check_plan(plans[name], exps[name], runs.REPEATS)
    first = exps[names[0]]
    reference = report.seconds_per_image(first.target.undefended, first.x, repeats=2)
    rows = []
    for name in tqdm(names, desc="defenses", unit="defense", disable=not progress):
        exp = exps[name]
        result = evaluation.run_plan(exp, plans[name], repeats=runs.REPEATS, restarts=evaluation.RESTARTS,
                                     cache_dir=cache_dir, progress=progress)
        key = protocol_hash(first.protocol.name, n, budgets, seed, first.model, exp.target.probes.refuses, name)
        rows.append(_row(name, exp, result, reference, key))
        if images_dir is not None:
            write_images(Path(images_dir), name, result.images)
    return ranked(pd.DataFrame(rows))


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """A board in its order (``final`` descending) with the 95% intervals of its accuracies (computed from
    ``n`` where a row lacks them) and ``rank``: the tie groups of ``final``'s intervals (``metrics.ties``)."""
    table = table.sort_values("final", ascending=False, kind="stable").reset_index(drop=True)
    for c in [*metrics.budget_columns(table.columns, "worst@"), "final"]:
        bounds = metrics.with_intervals(table[[c, "n"]], [c], "n")  # rows recorded before the intervals lack them
        for end in (" lo", " hi"):
            table[f"{c}{end}"] = table[f"{c}{end}"].fillna(bounds[f"{c}{end}"]) if f"{c}{end}" in table.columns \
                else bounds[f"{c}{end}"]
    table["rank"] = metrics.ties(table["final lo"], table["final hi"])
    return table


def recorded(board: str) -> pd.DataFrame:
    """The leaderboard ``board`` (one of ``BOARDS``) as last recorded by ``python -m workbench.leaderboard BOARD
    --record``, in its order (most robust first), each row with its provenance, intervals and tie rank, and
    ``current``: whether the row was recorded under the board's present protocol (``protocol_hash``)."""
    checks.choice("board", board, tuple(BOARDS))
    path = paths.tables_dir() / f"{board}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded leaderboard {board!r} at {path}; make it with "
                                f"`python -m workbench.leaderboard {board} --record`")
    table = ranked(pd.read_csv(path))
    dataset, n, budgets = BOARDS[board]
    stored = table["protocol"] if "protocol" in table.columns else pd.Series("", index=table.index)
    refuses = table["refuses"].fillna(False).astype(bool) if "refuses" in table.columns else \
        pd.Series(False, index=table.index)
    table["current"] = stored == [protocol_hash(dataset, n, budgets, refuses=bool(r), defense=str(d))
                                  for r, d in zip(refuses, table["defense"])]
    return table


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """The recorded board with the rows of ``new`` in place of the same defenses' (a board is recorded a few
    defenses at a time: each row keeps its own provenance), ranked (``ranked``)."""
    if old is None:
        return ranked(new)
    kept = old[~old["defense"].isin(new["defense"])]
    return ranked(pd.concat([kept, new], ignore_index=True))


def _row(name: str, exp: experiment.Experiment, result: Evaluation, reference: float,
         protocol_key: str) -> dict[str, object]:
    clean = exp.clean()
    first_runs = result.attacks.set_index("attack")["final"]
    worst = result.attacks.set_index("attack").loc[[first_runs.idxmin()]].iloc[0]
    detection = {f"worst attack {c}": float(worst[c]) for c in ("detected", "detected lo", "detected hi",
                                                                 "undetected success", "first detection")
                 if c in worst.index}  # against a detector: how the worst attack fared with it
    cost = report.seconds_per_image(exp.target.defended, exp.x, repeats=2) / reference
    probes, restarts = exp.target.probes, result.settings["restarts"]
    worst_cols = {}
    for b in result.budgets:
        worst_cols.update({f"worst@{b}": result.worst[f"robust@{b}"], f"worst@{b} lo": result.worst[f"robust@{b} lo"],
                           f"worst@{b} hi": result.worst[f"robust@{b} hi"]})
    return {"defense": name, "clean acc": clean["clean acc"], "agreement": clean["agreement"], "ECE": clean["ECE"],
            **worst_cols, "final": result.worst["final"], "final lo": result.worst["final lo"],
            "final hi": result.worst["final hi"], "worst attack": str(first_runs.idxmin()),
            "worst attack final": float(first_runs.min()),
            "attacks": len(result.attacks), "restart attack": restarts["attack"],
            "restart seeds": " ".join(map(str, restarts["seeds"])), "kappa": result.settings["kappa"],
            "re-evaluated": result.reevaluated, "cost per query": cost, "randomized": probes.randomized,
            "keeps predictions": probes.keeps_predictions, "refuses": probes.refuses, **detection,
            "eot": result.settings["eot"], "model": exp.model,
            "n": len(exp.x), "seed": exp.seed,
            "fingerprint": runs.fingerprint(exp.model, variant=defenses.variant(name)),
            "protocol": protocol_key, **runs.provenance(next(exp.target.defended.parameters()).device)}


IMAGE_COLUMNS = ("image", "label", "clean correct", "broken by", "seed", "at query", "final")
REQUIRED = ("defense", "final", "final lo", "final hi", "n", "model", "fingerprint", "protocol", "workbench",
            "git commit", "torch", "device")


def images_dir(table_path: Path) -> Path:
    """Where a board table's per-image records live: ``<table>-images/`` beside it, one CSV per defense."""
    return table_path.with_name(table_path.stem + "-images")


def write_images(folder: Path, name: str, images: pd.DataFrame) -> Path:
    """A row's per-image records (which attack at which seed broke each image, at which query) as
    ``folder/<name>.csv``, written atomically."""
    out = cache.writable(folder, "images_dir") / f"{_file_name(name)}.csv"
    table = images[list(IMAGE_COLUMNS)]
    paths.atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    return out


def _file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def record(board: str, table: pd.DataFrame, folder: Path | None = None) -> Path:
    """Merge the rows of ``table`` into the recorded ``board`` (``merge``) and write it atomically."""
    out = (folder or paths.tables_dir()) / f"{board}.csv"
    with FileLock(str(out) + ".lock"):  # two recordings of one board (a few defenses each) merge one at a time
        merged = merge(pd.read_csv(out) if out.is_file() else None, table)
        paths.atomic_write(out, lambda tmp: merged.drop(columns=["current"], errors="ignore").to_csv(tmp,
                                                                                                     index=False))
    return out


# -------------------------------------------------------------------------------------------- submissions
def submit(board: str, defense: str, *, out: str | Path, kwargs: dict[str, Any] | None = None,
           cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Evaluate ``defense`` (an import path ``package.module:factory``, or a registry name) with the arguments
    ``kwargs`` under the exact protocol of ``board``, and write its row as ``out/<board>.csv`` (with its provenance
    and protocol hash) and its per-image records as ``out/<board>-images/<defense>.csv``: what ``accept`` takes.
    Returns the row's path."""
    checks.choice("board", board, tuple(BOARDS))
    dataset, n, budgets = BOARDS[board]
    folder = cache.writable(Path(out), "out")
    row = folder / f"{board}.csv"
    table = rank([defense], dataset=dataset, n=n, budgets=budgets, cache_dir=cache_dir, progress=progress,
                 images_dir=images_dir(row), defense_kwargs={defense: dict(kwargs or {})})
    table["kwargs"] = json.dumps(kwargs or {}, sort_keys=True)
    paths.atomic_write(row, lambda tmp: table.to_csv(tmp, index=False))
    return row


def check_submission(board: str, row_path: str | Path) -> pd.DataFrame:
    """The submitted rows of ``row_path`` (``submit``'s output) if every one is valid for ``board``, else a
    ValueError naming the row and what is wrong: its columns, its protocol hash (the board's exact protocol and
    rules, under this workbench's attacks), its model and weights fingerprint (the board's zoo weights), its image
    count, and its per-image records (present, complete, and agreeing with the row's ``final`` and interval)."""
    checks.choice("board", board, tuple(BOARDS))
    path = Path(row_path)
    if not path.is_file():
        raise ValueError(f"row_path={str(path)!r} is not a file (give the CSV that `leaderboard submit` wrote)")
    table = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing or not len(table):
        raise ValueError(f"row_path={str(path)!r}: not a board row (missing columns {missing} or no rows)")
    dataset, n, budgets = BOARDS[board]
    entry = protocol.get(dataset)
    for _, row in table.iterrows():
        where = f"row {row['defense']!r} of {path}"
        expected = protocol_hash(dataset, n, budgets, refuses=bool(row.get("refuses", False)),
                                 defense=str(row["defense"]))
        if row["protocol"] != expected:
            raise ValueError(f"{where}: recorded under protocol {row['protocol']}, not the board's {expected} "
                             f"(another image set, budget, seed, rule or workbench version): run `leaderboard "
                             f"submit {board} ...` with this workbench")
        weights = runs.fingerprint(entry.model, variant=defenses.variant(str(row["defense"])))
        if row["model"] != entry.model or row["fingerprint"] != weights:
            raise ValueError(f"{where}: evaluated on {row['model']} with weights {row['fingerprint']}, not the "
                             f"board's {entry.model} with {weights}")
        if int(row["n"]) != n:
            raise ValueError(f"{where}: {row['n']} images, the board attacks {n}")
        records = images_dir(path) / f"{_file_name(str(row['defense']))}.csv"
        if not records.is_file():
            raise ValueError(f"{where}: its per-image records {records} are missing")
        images = pd.read_csv(records)
        if list(images.columns) != list(IMAGE_COLUMNS) or len(images) != n or \
                list(images["image"]) != list(range(n)):
            raise ValueError(f"{where}: its per-image records {records} must have the columns {list(IMAGE_COLUMNS)} "
                             f"and one row per image 0..{n - 1}")
        final = float(images["final"].astype(bool).mean())
        lo, hi = metrics.interval(final, n)
        if not np.allclose([final, lo, hi], [row["final"], row["final lo"], row["final hi"]], atol=1e-9):
            raise ValueError(f"{where}: final {row['final']} [{row['final lo']}, {row['final hi']}] does not match "
                             f"its per-image records ({final} [{lo:.4f}, {hi:.4f}])")
    return table


def accept(board: str, row_path: str | Path, folder: Path | None = None) -> Path:
    """Merge a submission into the recorded ``board`` once ``check_submission`` finds it valid: its rows join the
    table (replacing a row of the same name) and its per-image records go beside the table's."""
    table = check_submission(board, row_path)
    out = (folder or paths.tables_dir()) / f"{board}.csv"
    for name in table["defense"]:
        source = images_dir(Path(row_path)) / f"{_file_name(str(name))}.csv"
        write_images(images_dir(out), str(name), pd.read_csv(source))
    return record(board, table, folder)


# ------------------------------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["submit"]:
        return _submit_main(argv[1:])
    if argv[:1] == ["accept"]:
        return _accept_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m workbench.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board", help=f"a recorded board ({', '.join(BOARDS)}) or a protocol ({', '.join(protocol.names())}); "
                        "or the commands submit / accept (see --help of each)")
    parser.add_argument("--defenses", nargs="*", default=None, help="registry names (default: every one)")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--budgets", type=int, nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="default <data>/experiments, shared with the grids")
    parser.add_argument("--record", action="store_true", help="merge into data/tables/<board>.csv (recorded boards "
                        "only, at their own n, budgets and seed)")
    args = parser.parse_args(argv)
    if args.board in BOARDS:
        dataset, n, budgets = BOARDS[args.board]
        if args.record and (args.n not in (None, n) or args.budgets not in (None, list(budgets)) or args.seed):
            parser.error(f"--record keeps {args.board}'s protocol: n {n}, budgets {list(budgets)}, seed 0")
    else:
        checks.choice("board", args.board, tuple(BOARDS) + protocol.names())
        dataset, n, budgets = args.board, 100, (100, 1000)
        if args.record:
            parser.error(f"--record writes the recorded boards only ({', '.join(BOARDS)})")
    names = args.defenses or list(defenses.names())
    folder = images_dir(paths.tables_dir() / f"{args.board}.csv") if args.record else None
    table = rank(names, dataset=dataset, n=args.n or n, budgets=args.budgets or budgets, seed=args.seed,
                 cache_dir=args.cache_dir or experiments.cache_dir_default(), images_dir=folder)
    print(_shown(table))
    if args.record:
        out = record(args.board, table)
        print(f"\nrecorded: {out}")
    return 0


def _shown(table: pd.DataFrame) -> str:
    hidden = ["git commit", "workbench", "torch", "device", "fingerprint", "protocol"]
    return plots.with_intervals(table.drop(columns=hidden, errors="ignore")).to_markdown(index=False, floatfmt=".3f")


def _submit_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.leaderboard submit",
                                     description="Evaluate your defense under a board's exact protocol and write "
                                     "its row and per-image records (docs/submitting.md).")
    parser.add_argument("board", choices=tuple(BOARDS))
    parser.add_argument("defense", help="an import path package.module:factory (factory(model, **kwargs) -> module)")
    parser.add_argument("--kwargs", default="{}", help="the factory's arguments as JSON")
    parser.add_argument("--out", required=True, help="folder for <board>.csv and <board>-images/")
    parser.add_argument("--cache-dir", default=None, help="default <data>/experiments")
    args = parser.parse_args(argv)
    row = submit(args.board, args.defense, out=args.out, kwargs=json.loads(args.kwargs),
                 cache_dir=args.cache_dir or experiments.cache_dir_default())
    print(_shown(pd.read_csv(row)))
    print(f"\nwritten: {row} and {images_dir(row)}/; send both (docs/submitting.md)")
    return 0


def _accept_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.leaderboard accept",
                                     description="Check a submitted row and merge it into the recorded board.")
    parser.add_argument("board", choices=tuple(BOARDS))
    parser.add_argument("row", help="the <board>.csv that `leaderboard submit` wrote")
    args = parser.parse_args(argv)
    print(f"accepted: {accept(args.board, args.row)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
