"""The worst-case leaderboard: one row per defense from ``evaluate``'s per-image worst case, sorted, with the
columns the issue asks for."""

from __future__ import annotations

import json

import pytest

from workbench import experiments, leaderboard, paths


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def board(records):
    return leaderboard.rank(["none", "rls", "aaa-linear"], dataset="mnist", n=8, budgets=(20, 50),
                            cache_dir=records, progress=False)


def test_the_board_ranks_by_the_worst_case_and_names_the_worst_attack(board):
    assert list(board["final"]) == sorted(board["final"], reverse=True)
    assert set(board["defense"]) == {"none", "rls", "aaa-linear"}
    for _, row in board.iterrows():
        assert row["final"] <= row["worst attack final"] + 1e-12  # per image over every attack: never above one
        assert row["worst@20"] >= row["worst@50"] and row["cost per query"] > 0
        assert row["attacks"] >= 5 and len(row["git commit"]) > 0
    rls = board.set_index("defense").loc["rls"]
    assert rls["randomized"] and rls["keeps predictions"] and rls["agreement"] == 1.0 and rls["re-evaluated"]
    aaa = board.set_index("defense").loc["aaa-linear"]
    assert aaa["attacks"] == 9 and not aaa["re-evaluated"]  # 5 standard, op, bi, switch, DLR


def test_the_command_line_records_only_the_recorded_boards():
    with pytest.raises(SystemExit):
        leaderboard.main(["mnist", "--record", "--defenses", "none"])


def test_recording_a_few_defenses_replaces_their_rows_and_keeps_the_others(board):
    old = board.assign(final=board["final"] * 0)  # an older recording of all three
    new = board[board["defense"] == "rls"]
    merged = leaderboard.merge(old, new)
    assert sorted(merged["defense"]) == sorted(board["defense"])
    assert float(merged.set_index("defense").loc["rls", "final"]) == float(new["final"].iloc[0])
    assert (merged.set_index("defense").drop("rls")["final"] == 0).all()


@pytest.mark.parametrize("defense, attack", [("rls", "square"), ("aaa-linear", "square-op")])
def test_a_grid_cell_in_the_boards_setting_reads_the_boards_record(board, records, defense, attack):
    """The board and the grids share one record cache and one key: a cell of the same defense, attack, images,
    budget and seed is read from the board's record (no new file), with the same per-image outcome."""
    before = sorted(records.iterdir())
    c = experiments.cell(dataset="mnist", model="mnist-cnn", defense=defense, attack=attack, n=8, budgets=(20, 50))
    row = experiments.run_cell(c, cache_dir=records)
    assert sorted(records.iterdir()) == before
    assert row["robust@50"] >= float(board.set_index("defense").loc[defense, "worst@50"])


def test_the_site_shows_a_recorded_board_with_its_figure_and_provenance(board, tmp_path, monkeypatch):
    from workbench import paths
    from workbench.course import site

    monkeypatch.setattr(leaderboard, "BOARDS", {"tiny": ("mnist", 8, (20, 50))})
    monkeypatch.setattr(paths, "tables_dir", lambda: tmp_path)
    assert site.boards_page(tmp_path / "leaderboard.html") == []  # nothing recorded: no page
    assert not (tmp_path / "leaderboard.html").exists()
    board.to_csv(tmp_path / "tiny.csv", index=False)
    assert site.boards_page(tmp_path / "leaderboard.html") == ["tiny"]
    page = (tmp_path / "leaderboard.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "worst@50" in page
    assert all(name in page for name in board["defense"]) and board["git commit"].iloc[0][:7] in page
    final = board.iloc[0]
    assert "95% Wilson interval" in page and f"[{100 * final['final lo']:.1f}, {100 * final['final hi']:.1f}]" in page
    assert site.submitting_page(tmp_path / "submitting.html").read_text().count("Protocol hash") == 1


def test_a_board_that_is_not_recorded_is_asked_for_by_name():
    with pytest.raises(ValueError, match="board"):
        leaderboard.recorded("cifar10-best-case")


def test_the_recorded_board_is_no_higher_than_any_recorded_adaptive_cell():
    """The recorded ``cifar10-worst-case`` board takes the per-image worst case over a suite that holds every
    recorded ``cifar10-adaptive`` attack of the same setting (the first 100 images, seed 0, the shipped weights):
    its worst case at each budget is no higher than any of those cells' robust accuracy, its ``final`` no higher
    than their re-evaluated one. This covers AAA-sine against the switch rule and RLS against the DLR Square (the
    issue's acceptance) on the recorded numbers: the board and the grid share one record cache, so the
    inequality holds per image, with no spread over seeds to clear. The 1e-6 slack covers only the cells'
    float32 means against the board's float64 ones (0.06999999 against 0.07 for RLS at 1000), far below one
    image in 100 (0.01)."""
    board = leaderboard.recorded("cifar10-worst-case").set_index("defense")
    cells = experiments.recorded("cifar10-adaptive")
    cells = cells[cells["defense"].isin(board.index) & (cells["n"] == 100) & (cells["seed"] == 0)]
    cells = cells[[max(json.loads(c)["budgets"]) <= 2500 for c in cells["config"]]]  # a longer run may go lower
    checked = set()
    for _, cell in cells.iterrows():
        row = board.loc[cell["defense"]]
        for budget in (100, 1000, 2500):
            if f"robust@{budget}" in cell and cell[f"robust@{budget}"] == cell[f"robust@{budget}"]:  # not NaN
                assert row[f"worst@{budget}"] <= cell[f"robust@{budget}"] + 1e-6, (cell["defense"], cell["attack"])
        assert row["final"] <= cell["re-evaluated"] + 1e-6, (cell["defense"], cell["attack"])
        checked.add((cell["defense"], cell["attack"]))
    assert {("aaa-sine", "square-switch"), ("rls", "square-dlr")} <= checked


@pytest.mark.numerics
def test_a_recorded_restart_recomputes():
    """A restarted cell of the recorded board is a measurement anyone can repeat: AAA-sine's first restart (its
    restart attack at seed 1, on the images the seed-0 suite left robust), recomputed at 100 queries, breaks the
    images the per-image records say it broke (``scenarios.RESTARTED``). On the recording machine the difference is
    0 at the recorded seed; over attack seeds 0-4 (``python -m benchmarks.threshold_spread recorded-restart``) it
    is 0.018 +- 0.013 (max 0.036) of the 56 restarted images, against the bound 0.1."""
    from tests import scenarios

    board, defense = scenarios.RESTARTED
    try:
        row = leaderboard.recorded(board).set_index("defense").loc[defense]
    except (FileNotFoundError, KeyError):
        pytest.skip(f"{board} has no recorded {defense} row")
    records = leaderboard.images_dir(paths.tables_dir() / f"{board}.csv") / f"{defense}.csv"
    if not row["current"] or not records.is_file() or len(str(row["restart seeds"]).split()) < 2:
        pytest.skip(f"{defense}'s row on {board} was recorded without restarts or per-image records")
    scenarios.check("recorded-restart")
