"""The worst-case leaderboard: one row per defense from ``evaluate``'s per-image worst case, sorted, with the
columns the issue asks for."""

from __future__ import annotations

import pytest

from workbench import leaderboard


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return leaderboard.rank(["none", "rls", "aaa-linear"], dataset="mnist", n=8, budgets=(20, 50),
                            cache_dir=tmp_path_factory.mktemp("evaluations"), progress=False)


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
