"""A grid's cells: the schema (:class:`Cell`: everything a run depends on, and its key), the ways to make them
(``cell``, ``grid``) and their validation before anything runs (``validate``)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from workbench import cache, checks, protocol, setting
from workbench.attacks import registry as attacks
from workbench.defenses import registry as defenses

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a grid. ``eps=None`` takes the dataset's preset; ``weights`` is a local checkpoint for models
    without shipped weights (CIFAR-10 / ImageNet). A cell needs ``dataset`` or ``model``: the other is the zoo
    model's dataset, or the dataset's standard model (``setting.resolve``; there is no default dataset)."""

    dataset: str | None = None
    model: str | None = None
    defense: str = "none"
    defense_kwargs: tuple[tuple[str, Any], ...] = ()
    attack: str = "square"
    attack_kwargs: tuple[tuple[str, Any], ...] = ()
    norm: str = "linf"
    eps: float | None = None
    budgets: tuple[int, ...] = (100, 1000, 2500)
    n: int = 500
    seed: int = 0
    targeted: bool = False
    weights: str | None = None
    fingerprint: str = ""  # of the weights files, filled in by ``run``: a retrained model never reuses old cells

    def __post_init__(self) -> None:
        if self.dataset is None and self.model is None:
            raise ValueError("a cell needs dataset= or model= (a zoo model, whose dataset is then used)")
        if self.dataset is None:
            object.__setattr__(self, "dataset", setting.resolve(model=self.model, needed_by="a cell").name)
        if self.model is None and self.dataset in protocol.names():  # an unknown dataset: validate() names it
            object.__setattr__(self, "model", setting.resolve(self.dataset).model)

    def config(self) -> dict[str, Any]:
        """The cell as plain JSON-able data."""
        cfg = dataclasses.asdict(self)
        cfg["defense_kwargs"] = dict(self.defense_kwargs)
        cfg["attack_kwargs"] = dict(self.attack_kwargs)
        cfg["budgets"] = list(self.budgets)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Cell:
        """The cell a recorded row's ``config`` (the JSON of :meth:`config`) describes; keys that are not cell
        fields (none today) are ignored."""
        return cell(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})

    def key(self) -> str:
        """The cell's identity: a hash of the configuration and the workbench version."""
        return cache.key({**self.config(), "workbench": cache.version()})


def cell(**fields: Any) -> Cell:
    """A :class:`Cell` from keyword arguments; dict-valued ``defense_kwargs`` / ``attack_kwargs`` and list
    budgets are turned into their hashable forms."""
    for name in ("defense_kwargs", "attack_kwargs"):
        if isinstance(fields.get(name), dict):
            fields[name] = tuple(sorted(fields[name].items()))
    if "budgets" in fields:
        fields["budgets"] = checks.sequence("budgets", fields["budgets"])  # validate() checks them
    for name in ("n", "seed"):
        if name in fields:
            fields[name] = checks.integer(name, fields[name])
    if fields.get("eps") is not None:
        fields["eps"] = checks.number("eps", fields["eps"])
    unknown = set(fields) - set(Cell.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown cell fields {sorted(unknown)}; choose from {', '.join(Cell.__dataclass_fields__)}")
    return Cell(**fields)


def grid(*, defenses: Sequence[str], attacks: Sequence[str], seeds: Sequence[int] = (0,), **common: Any) -> list[Cell]:
    """The cross product defenses x attacks x seeds, with ``common`` fields shared by every cell."""
    return [cell(defense=d, attack=a, seed=s, **common) for d, a, s in itertools.product(defenses, attacks, seeds)]


def validate(cells: Sequence[Cell], cache_dir: str | Path | None = None) -> None:
    """Fail before anything runs, naming the cell (its index) and the field: every field is checked, every attack
    and defense is built with its keyword arguments (defenses on a tiny dummy classifier), every budget must pay
    for the clean query and one step of its attack (an EOT point of ``eot`` queries included:
    ``attacks.affordable``), and the cache folder must be writable."""

    if not cells:
        raise ValueError("the grid has no cells")
    for i, c in enumerate(cells):
        where = f"cell {i} ({c.defense} x {c.attack})"
        if not isinstance(c, Cell):
            raise ValueError(f"cell {i} must be a Cell (experiments.cell(...)), got {type(c).__name__}")
        entry = _field(where, "dataset", lambda: setting.resolve(c.dataset))
        if c.model is None:
            raise ValueError(f"{where}: field model: dataset {c.dataset!r} names no standard model; give model=")
        _field(where, "defense", lambda: defenses.factory(c.defense))
        _field(where, "attack", lambda: checks.choice("attack", c.attack, attacks.names()))
        _field(where, "norm", lambda: checks.choice("norm", c.norm, checks.NORMS))
        if c.eps is not None:
            _field(where, "eps", lambda: checks.positive("eps", c.eps))
        _field(where, "n", lambda: checks.at_least("n", c.n, 1))
        _field(where, "seed", lambda: checks.at_least("seed", c.seed, 0))
        _field(where, "targeted", lambda: checks.flag("targeted", c.targeted))
        if c.n > entry.attacked:
            raise ValueError(f"{where}: n={c.n} would reach the last {entry.held_out} of the {entry.test_size} "
                             f"{c.dataset} test images, held out for calibration (at most {entry.attacked})")
        _field(where, "budgets", lambda: checks.budgets("budgets", c.budgets))
        allowed = attacks.parameters(c.attack) + ("eot",)
        for key, _ in c.attack_kwargs:
            if key not in allowed or key in ("norm", "eps", "seed", "progress"):
                raise ValueError(f"{where}: attack_kwargs has {key!r}, not an argument of attack {c.attack!r} "
                                 f"(norm, eps and seed are cell fields)")
        kwargs = {**dict(c.attack_kwargs), **({"eps": c.eps} if c.eps is not None else {})}
        built = _field(where, "attack_kwargs", lambda: attacks.build(c.attack, dataset=entry, norm=c.norm,
                                                                     seed=c.seed, progress=False, **kwargs))
        _field(where, "budgets", lambda: attacks.affordable(built, c.budgets[-1], c.attack))
        _field(where, "defense_kwargs", lambda: defenses.check(c.defense, entry, **dict(c.defense_kwargs)))
    if cache_dir is not None:
        cache.writable(Path(cache_dir))


def _field(where: str, name: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except ValueError as err:
        raise ValueError(f"{where}: field {name}: {err}") from None
