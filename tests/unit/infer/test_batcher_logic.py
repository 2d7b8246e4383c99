"""Pure logic of the batcher: deadline, capacity, latest-only slots, camera liveness."""

from __future__ import annotations

import av
import pytest

from edge.infer.batch_policy import (
    DEFAULT_FPS,
    BatchQueue,
    CameraActivity,
    LatestSlots,
    batch_capacity,
    batch_deadline_s,
)
from edge.types import Frame

_IMAGE = av.VideoFrame(32, 32, "yuv420p")


def frame(camera: str, seq: int, received_at: float = 0.0) -> Frame:
    return Frame(camera_id=camera, seq=seq, pts=None, received_at=received_at, image=_IMAGE)


def test_deadline_is_configured_value_when_set() -> None:
    assert batch_deadline_s([25.0, 30.0], deadline_ms=15.0) == pytest.approx(0.015)


def test_deadline_is_one_frame_of_fastest_camera() -> None:
    assert batch_deadline_s([12.5, 29.97, None, 25.0], deadline_ms=None) == pytest.approx(1 / 29.97)


def test_deadline_falls_back_to_default_rate_without_known_rates() -> None:
    assert batch_deadline_s([None, 0.0], deadline_ms=None) == pytest.approx(1 / DEFAULT_FPS)
    assert batch_deadline_s([], deadline_ms=None) == pytest.approx(1 / DEFAULT_FPS)


def test_deadline_never_below_limit_for_absurd_rates() -> None:
    assert batch_deadline_s([10_000.0], deadline_ms=None) >= 1 / 120


@pytest.mark.parametrize(
    ("streaming", "max_batch", "dynamic", "expected"),
    [(4, 8, True, 4), (10, 8, True, 8), (0, 8, True, 1), (4, 8, False, 1), (1, 1, True, 1)],
)
def test_capacity(streaming: int, max_batch: int, dynamic: bool, expected: int) -> None:
    assert batch_capacity(streaming, max_batch, dynamic) == expected


def test_slots_keep_only_latest_frame_per_camera() -> None:
    slots = LatestSlots()
    assert slots.put(frame("a", 1), now=1.0) is None
    superseded = slots.put(frame("a", 2), now=2.0)
    assert superseded is not None and superseded.seq == 1
    assert slots.put(frame("b", 1), now=2.5) is None
    assert len(slots) == 2
    taken = {p.frame.camera_id: p for p in slots.take(8)}
    assert taken["a"].frame.seq == 2
    assert taken["a"].submitted_at == 2.0
    # the slot's wait started with the first frame: superseding never postpones the deadline
    assert taken["a"].waiting_since == 1.0
    assert len(slots) == 0


def test_slots_take_longest_waiting_first_and_at_most_n() -> None:
    slots = LatestSlots()
    for i, cam in enumerate(["c", "a", "d", "b"]):
        slots.put(frame(cam, 1), now=float(i))
    first = slots.take(2)
    assert [p.frame.camera_id for p in first] == ["c", "a"]
    assert slots.oldest_waiting_since() == 2.0
    assert [p.frame.camera_id for p in slots.take(5)] == ["d", "b"]
    assert slots.oldest_waiting_since() is None


def test_slots_pop_stale_by_receive_time() -> None:
    slots = LatestSlots()
    slots.put(frame("old", 1, received_at=10.0), now=10.6)
    slots.put(frame("fresh", 1, received_at=10.4), now=10.6)
    stale = slots.pop_stale(now=10.7, stale_s=0.5)
    assert [f.camera_id for f in stale] == ["old"]
    assert "fresh" in slots and "old" not in slots


def test_slots_pop_all_empties_them() -> None:
    slots = LatestSlots()
    assert slots.pop_all() == []
    slots.put(frame("a", 1), now=1.0)
    slots.put(frame("a", 2), now=1.1)
    slots.put(frame("b", 1), now=1.2)
    assert sorted((f.camera_id, f.seq) for f in slots.pop_all()) == [("a", 2), ("b", 1)]
    assert len(slots) == 0 and slots.oldest_waiting_since() is None


def test_slot_after_take_starts_a_new_wait() -> None:
    slots = LatestSlots()
    slots.put(frame("a", 1), now=1.0)
    slots.take(1)
    slots.put(frame("a", 2), now=5.0)
    assert slots.oldest_waiting_since() == 5.0


def test_activity_estimates_rate_from_submissions() -> None:
    cam = CameraActivity()
    assert cam.rate() is None
    for i in range(20):
        cam.record_submit(i * 0.04)
    assert cam.rate() == pytest.approx(25.0)
    cam.fps = 12.5  # an advertised rate wins over the estimate
    assert cam.rate() == 12.5


def test_activity_streaming_until_silent_for_stale_budget() -> None:
    cam = CameraActivity()
    assert not cam.is_streaming(now=0.0, stale_s=0.5)
    for i in range(5):
        cam.record_submit(i * 0.04)
    assert cam.is_streaming(now=0.16 + 0.49, stale_s=0.5)
    assert not cam.is_streaming(now=0.16 + 0.51, stale_s=0.5)


def test_activity_slow_camera_counts_for_several_of_its_intervals() -> None:
    cam = CameraActivity(fps=1.0)
    cam.record_submit(0.0)
    assert cam.is_streaming(now=2.0, stale_s=0.5)
    assert not cam.is_streaming(now=2.6, stale_s=0.5)


def test_activity_disabled_is_never_streaming() -> None:
    cam = CameraActivity()
    cam.record_submit(0.0)
    cam.enabled = False
    assert not cam.is_streaming(now=0.0, stale_s=0.5)


def test_batch_queue_is_due_when_full_or_after_a_deadline_and_runs_a_camera_once() -> None:
    """Two streaming cameras at 25 fps, batches of up to 2 on one worker: one pending frame waits
    (at most one frame interval), two make a batch at once; a running camera's next frame waits
    for the end of its batch, and a frame past `stale_s` is taken out as stale."""
    q = BatchQueue(max_batch=2, workers=1, dynamic=True, stale_s=1.0, deadline_ms=None)
    assert q.due(0.0) == (0, None)  # nothing pending
    for cam in ("a", "b"):
        q.set_streaming(cam, True, 25.0)
        assert q.offer(frame(cam, 0, 10.0), 10.0) is None
    assert q.due(10.0) == (2, 0.0)  # full
    batch, stale = q.take(2, 10.0)
    assert [p.frame.camera_id for p in batch] == ["a", "b"] and stale == []
    assert q.busy == {"a", "b"} and q.running == 1
    q.offer(frame("a", 1, 10.02), 10.02)
    assert q.due(10.03)[1] is None  # "a" runs: its frame waits for the batch's end
    q.finish(["a", "b"])
    assert q.running == 0 and not q.busy
    capacity, wait = q.due(10.03)  # "b" streams too: a batch of 2 is worth one frame's wait
    assert capacity == 2 and wait == pytest.approx(0.03)
    assert q.due(10.07) == (2, 0.0)  # the deadline passed
    assert q.offer(frame("a", 2, 10.5), 10.5) is not None  # supersedes frame 1
    batch, stale = q.take(2, 11.6)  # received at 10.5: past stale_s
    assert batch == [] and [f.seq for f in stale] == [2]
