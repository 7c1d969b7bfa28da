"""Every numbered notebook runs top to bottom in fast mode and writes its figures."""

from __future__ import annotations

import os
import time

import pytest

from workbench import paths
from workbench.course import notebooks


@pytest.mark.notebook
@pytest.mark.parametrize("path", notebooks.notebooks(), ids=lambda p: p.name)
def test_notebook_runs_in_fast_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FIGURES", str(tmp_path))
    start = time.perf_counter()
    notebooks.execute(path, fast=True, timeout=300)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s in fast mode")
    number = path.name[:2]
    written = sorted(p.name for p in tmp_path.glob(f"{number}_*.png"))
    assert written, f"{path.name} wrote no figure named {number}_*.png"
    assert os.environ["WORKBENCH_FAST"] == "1" and paths.fast_mode()


def test_the_runner_names_a_bad_job_count():
    with pytest.raises(ValueError, match="jobs"):
        notebooks.main(["--fast", "00", "--jobs", "0"])
