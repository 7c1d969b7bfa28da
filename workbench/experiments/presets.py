"""The preset grids, as data: ``presets.json`` beside this file names each preset's grids (``note`` says what it
is for). A grid is the product defenses x attacks x seeds with its other fields shared by every cell
(``cells.grid``); ``"every"`` stands for every registered defense and ``"standard"`` for the standard attack suite
in its order; ``overrides`` sets fields of one defense's cells (DENT's fewer images)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from workbench import checks
from workbench.attacks import registry as attacks
from workbench.defenses import registry as defenses
from workbench.experiments.cells import Cell, grid

_FILE = Path(__file__).with_name("presets.json")


def _table() -> dict[str, dict[str, Any]]:
    return json.loads(_FILE.read_text())


def presets() -> tuple[str, ...]:
    """The preset names."""
    return tuple(_table())


def note(name: str) -> str:
    """What the preset ``name`` is for."""
    checks.choice("name", name, presets())
    return _table()[name]["note"]


def preset(name: str) -> list[Cell]:
    """The cells of the preset grid ``name``."""
    checks.choice("name", name, presets())
    return [c for spec in _table()[name]["grids"] for c in _cells(dict(spec))]


def _cells(spec: dict[str, Any]) -> list[Cell]:
    """The cells of one grid of the file."""
    if spec["defenses"] == "every":  # every defense for the dataset, detectors aside (workbench.detection has them)
        spec["defenses"] = [n for n in defenses.names()
                            if defenses.applies(n, spec["dataset"]) and not defenses.keeps_state(n)]
    if spec["attacks"] == "standard":
        spec["attacks"] = list(attacks.suite("standard"))
    overrides = spec.pop("overrides", {})
    return [dataclasses.replace(c, **overrides.get(c.defense, {})) for c in grid(**spec)]
