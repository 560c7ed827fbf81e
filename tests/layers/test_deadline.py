"""The receive deadline helpers that the memory and SQLite layers share."""

from __future__ import annotations

import time

from chanlite.layers._deadline import deadline_after, past, pause


def test_no_timeout_means_no_deadline_and_the_full_pause() -> None:
    deadline = deadline_after(None)
    assert deadline is None
    assert not past(deadline)
    assert pause(deadline, 0.25) == 0.25


def test_a_negative_timeout_is_a_deadline_already_come() -> None:
    deadline = deadline_after(-5)
    assert deadline is not None and deadline <= time.monotonic()
    assert past(deadline)
    assert pause(deadline, 0.25) == 0.0


def test_a_pause_is_cut_to_the_time_left() -> None:
    far, near = deadline_after(60), deadline_after(0.01)
    assert not past(far)
    assert pause(far, 0.25) == 0.25
    assert 0.0 <= pause(near, 0.25) <= 0.01
