"""Which camera worker takes a camera that a config reload adds (`edge.worker_placement`)."""

from __future__ import annotations

from edge.worker_placement import place_cameras


def test_added_cameras_join_the_running_workers_once_there_are_enough() -> None:
    assert place_cameras([1], 1, limit=1) == [0]
    assert place_cameras([1], 3, limit=1) == [0, 0, 0]  # one at a time or together, one worker
    assert place_cameras([3, 1, 2], 2, limit=3) == [1, 1]
    assert place_cameras([2, 2], 3, limit=2) == [0, 1, 0]  # the first of the fewest


def test_a_new_worker_only_while_fewer_than_the_limit_run() -> None:
    assert place_cameras([2], 2, limit=2) == [1, 1]  # the new one has the fewest then
    assert place_cameras([], 2, limit=1) == [0, 0]
    assert place_cameras([], 1, limit=0) == [0]  # cameras need a worker: at least one
    assert place_cameras([5, 5], 1, limit=1) == [0]  # more than the limit run: none is added
