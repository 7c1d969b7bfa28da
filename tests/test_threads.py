"""Thread settings: restored after every block, fixed by default, the opt-in adaptive choice follows the measured
cost, and the zoo CNN's results do not depend on the number of threads."""

from __future__ import annotations

import hashlib

import torch

from workbench.attacks.square import Square
from workbench.oracle import Oracle
from workbench.threads import Adaptive, one_thread, threads


def test_blocks_restore_the_setting():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_thread():
            assert torch.get_num_threads() == 1
            with threads(2):
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_oracle_fixes_the_threads_unless_asked_to_adapt(cnn, test_set):
    x, y = test_set[:4]
    fixed, adaptive = Oracle(cnn, x, y, budget=3), Oracle(cnn, x, y, budget=3, threads="auto")
    assert not fixed.adaptive and fixed.threads.options == (torch.get_num_threads(),)
    assert adaptive.adaptive and Oracle(cnn, x, y, budget=3, threads=3).threads.options == (3,)


def test_adaptive_takes_the_cheaper_setting_and_keeps_probing_the_other():
    choice = Adaptive(4, probe=4)
    first = [choice.pick(), choice.pick()]
    assert first == [4, 4]  # nothing measured yet: the user's setting until it has a cost
    choice.record(4, 1.0, 10)
    assert choice.pick() == 1  # the untried one next
    choice.record(1, 0.5, 10)
    picks = [choice.pick() for _ in range(8)]
    assert picks.count(4) == 2 and picks.count(1) == 6  # every 4th call probes the slower setting
    for _ in range(10):  # one thread becomes slow (another process took a core... or was freed): it follows
        choice.record(1, 3.0, 10)
    assert [choice.pick() for _ in range(3)].count(4) >= 2
    assert Adaptive(1).options == (1,) and Adaptive(3, probe=0).options == (3,)


def _fingerprint(result) -> str:
    return hashlib.sha256(result.x_adv.numpy().tobytes() + result.queries.numpy().tobytes()).hexdigest()


def test_results_do_not_depend_on_the_threads(cnn, test_set):
    """The same attack with the forwards on one thread, on two, and adaptive (loop on one thread): bit-identical
    results for the zoo CNN, and the process's setting is restored afterwards."""
    x, y = test_set[:80]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        found = {threads_: _fingerprint(Square(eps=0.3, seed=0, progress=False).run(
            Oracle(cnn, x, y, budget=60, threads=threads_))) for threads_ in (1, 2, "auto")}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(set(found.values())) == 1, found
