"""Plate-string picking and the per-track OCR schedule (pure logic; a scripted OCR callable)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest

from edge.config import OcrConfig
from edge.metrics import EdgeMetrics
from edge.track.plates import (
    PlateRead,
    PlateScheduler,
    TextCandidate,
    normalise_plate,
    pick_plate,
)
from edge.types import Detections, Frame


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("EAZ-6913", "EAZ6913"), ("5au 5341", "5AU5341"), ("AB·123·CD", "AB123CD"), ("", "")],
)
def test_normalise_plate(raw: str, expected: str) -> None:
    assert normalise_plate(raw) == expected


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], None),
        ([("California", 0.99)], None),
        ([('"California', 0.96), ("4XXF538", 0.99)], "4XXF538"),
        ([("EAZ-6913", 0.9)], "EAZ6913"),
        ([("TEXAS", 0.99), ("ABC 1234", 0.8)], "ABC1234"),
        ([("A1B2", 0.99)], None),  # too short
        ([("PR8101052", 0.99)], None),  # too long
        ([("17/09/07 12:06:18", 0.99)], None),  # a date overlay
        ([("12345", 0.9)], "12345"),  # digits only, as a fallback
        ([("12345", 0.99), ("AB1234", 0.7)], "AB1234"),  # mixed beats digits only
        ([("AB1234", 0.7), ("XY9876", 0.95)], "XY9876"),  # highest confidence wins
        ([("Land of Lincoln", 0.99), ("ab 12 cd", 0.8)], "AB12CD"),
    ],
)
def test_pick_plate(candidates: list[tuple[str, float]], expected: str | None) -> None:
    read = pick_plate(candidates)
    assert (read.text if read else None) == expected


def test_pick_plate_ignores_lines_below_min_confidence() -> None:
    candidates = [("08 P0D 2", 0.55), ("AB 1234", 0.85), ("XY98765", 0.6)]
    assert pick_plate(candidates, min_confidence=0.9) is None
    read = pick_plate(candidates, min_confidence=0.8)
    assert read is not None and read.text == "AB1234"


def test_pick_plate_keeps_confidence_and_raw_text() -> None:
    read = pick_plate([TextCandidate("EAZ-6913", 0.87, (1.0, 2.0, 3.0, 4.0))])
    assert read == PlateRead("EAZ6913", 0.87, "EAZ-6913", (1.0, 2.0, 3.0, 4.0))


def test_pick_plate_joins_fragments_on_one_line() -> None:
    read = pick_plate(
        [
            TextCandidate("5341", 0.99, (40.0, 10.0, 75.0, 30.0)),
            TextCandidate("5AU", 0.98, (5.0, 11.0, 33.0, 31.0)),
        ]
    )
    assert read is not None
    assert (read.text, read.confidence, read.box) == ("5AU5341", 0.98, (5.0, 10.0, 75.0, 31.0))


def test_pick_plate_does_not_join_overlapping_fragments() -> None:
    """rapidocr's real split of `5AU 5341`: both boxes hold the middle `5`."""
    left = TextCandidate("5AU5", 0.99, (17.0, 10.0, 60.0, 33.0))
    right = TextCandidate("5341", 0.99, (49.0, 12.0, 87.0, 31.0))
    assert pick_plate([left, right]) is None


def test_pick_plate_does_not_join_separate_lines() -> None:
    above = TextCandidate("5AU5", 0.98, (5.0, 0.0, 36.0, 20.0))
    below = TextCandidate("5341", 0.99, (40.0, 40.0, 75.0, 60.0))
    assert pick_plate([above, below]) is None


def test_pick_plate_prefers_a_whole_line_over_joined_fragments() -> None:
    read = pick_plate(
        [
            TextCandidate("AB12", 0.99, (0.0, 0.0, 30.0, 20.0)),
            TextCandidate("34", 0.99, (35.0, 0.0, 50.0, 20.0)),
            TextCandidate("XY9876", 0.6, (0.0, 50.0, 60.0, 70.0)),
        ]
    )
    assert read is not None and read.text == "XY9876"


def tracks(*rows: tuple[int, float, float, float, float]) -> Detections:
    """Confirmed tracks as (track id, x1, y1, x2, y2)."""
    arr = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 4)
    return Detections(
        xyxy=arr,
        score=np.full(len(rows), 0.9, dtype=np.float32),
        class_id=np.full(len(rows), 2, dtype=np.int64),
        track_id=np.array([r[0] for r in rows], dtype=np.int64),
    )


def scheduler(attempts: int = 5, min_width: int = 80, **kw: object) -> PlateScheduler:
    return PlateScheduler(
        "cam1",
        OcrConfig(enabled=True, attempts=attempts, min_box_width=min_width),
        read=lambda bgr: None,
        **kw,  # type: ignore[arg-type]
    )


def test_attempts_per_track_are_capped() -> None:
    s = scheduler(attempts=3)
    planned = [len(s.plan(tracks((7, 0, 0, 200, 100)))) for _ in range(10)]
    assert planned == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert s.attempts(7) == 3


def test_boxes_narrower_than_min_width_are_skipped() -> None:
    s = scheduler(min_width=100)
    assert s.plan(tracks((1, 10, 10, 109, 80))) == []
    jobs = s.plan(tracks((1, 10, 10, 110, 80)))
    assert [(j.track_id, j.xyxy) for j in jobs] == [(1, (10, 10, 110, 80))]


def test_attempts_per_frame_are_bounded_widest_and_least_tried_first() -> None:
    s = scheduler(max_per_frame=2)
    t = tracks((1, 0, 0, 100, 50), (2, 0, 0, 300, 50), (3, 0, 0, 200, 50), (4, 0, 0, 150, 50))
    assert [j.track_id for j in s.plan(t)] == [2, 3]
    assert [j.track_id for j in s.plan(t)] == [4, 1]
    assert [j.track_id for j in s.plan(t)] == [2, 3]


def test_no_track_ids_no_attempts() -> None:
    s = scheduler()
    dets = Detections(
        xyxy=np.array([[0, 0, 300, 200]], dtype=np.float32),
        score=np.array([0.9], dtype=np.float32),
        class_id=np.array([2]),
    )
    assert s.plan(dets) == [] and s.plan(Detections.empty()) == []


def test_best_read_is_kept() -> None:
    s = scheduler()
    s.plan(tracks((5, 0, 0, 200, 100)))
    assert s.record(5, PlateRead("AB1234", 0.7, "AB 1234"))
    assert not s.record(5, PlateRead("A81234", 0.6, "A81234"))
    assert not s.record(5, None)
    assert s.record(5, PlateRead("AB1234", 0.9, "AB-1234"))
    assert s.best(5) == PlateRead("AB1234", 0.9, "AB-1234")
    assert s.plates == {5: PlateRead("AB1234", 0.9, "AB-1234")}
    assert not s.record(99, PlateRead("ZZ9999", 0.99, "ZZ9999"))  # unknown track


def test_confident_read_ends_the_attempts() -> None:
    s = scheduler(attempts=5, done_confidence=0.95)
    t = tracks((5, 0, 0, 200, 100))
    s.plan(t)
    s.record(5, PlateRead("AB1234", 0.8, "AB1234"))
    assert len(s.plan(t)) == 1  # not sure enough yet
    s.record(5, PlateRead("AB1234", 0.97, "AB1234"))
    assert s.plan(t) == [] and s.attempts(5) == 2


def test_ended_tracks_are_forgotten() -> None:
    s = scheduler(attempts=1)
    s.plan(tracks((1, 0, 0, 200, 100), (2, 0, 0, 200, 100)))
    s.record(1, PlateRead("AB1234", 0.9, "AB1234"))
    assert s.forget([1, 2, 3]) == {1: PlateRead("AB1234", 0.9, "AB1234")}
    assert s.plates == {} and s.best(1) is None and s.attempts(2) == 0
    assert len(s.plan(tracks((2, 0, 0, 200, 100)))) == 1  # a reused id starts afresh


def test_tracks_not_seen_for_long_are_evicted() -> None:
    s = scheduler(attempts=1, stale_after_frames=3)
    s.plan(tracks((1, 0, 0, 200, 100)))
    s.record(1, PlateRead("AB1234", 0.9, "AB1234"))
    for _ in range(3):
        s.plan(tracks((2, 0, 0, 200, 100)))
    assert 1 in s.plates
    s.plan(tracks((2, 0, 0, 200, 100)))
    assert 1 not in s.plates and s.attempts(2) == 1


def painted_frame() -> tuple[Frame, dict[int, tuple[int, int, int, int]]]:
    """A 640×360 frame with each vehicle box filled with a grey level equal to its track id × 40."""
    img = np.zeros((360, 640, 3), dtype=np.uint8)
    boxes = {1: (20, 30, 220, 150), 2: (300, 100, 600, 340)}
    for tid, (x1, y1, x2, y2) in boxes.items():
        img[y1:y2, x1:x2] = tid * 40
    frame = Frame("cam1", 0, 0.0, 0.0, av.VideoFrame.from_ndarray(img, format="bgr24"))
    return frame, boxes


def read_by_grey(bgr: np.ndarray) -> PlateRead | None:
    """Scripted OCR: a crop's grey level says which vehicle it is; track 2 has no plate."""
    grey = int(np.median(bgr))
    if grey == 40:
        return PlateRead(f"AB{bgr.shape[1]:04d}", 0.9, "AB", (10.0, 20.0, 50.0, 30.0))
    return None


async def test_maybe_read_crops_full_resolution_and_counts_metrics() -> None:
    frame, boxes = painted_frame()
    metrics = EdgeMetrics()
    s = PlateScheduler("cam1", OcrConfig(enabled=True), read_by_grey, metrics=metrics)
    t = tracks(*((tid, *map(float, box)) for tid, box in boxes.items()))
    got = await s.maybe_read(frame, t)
    # track 1's crop was 200 px wide; its plate box comes back in frame pixels
    assert got == {1: PlateRead("AB0200", 0.9, "AB", (30.0, 50.0, 70.0, 60.0))}
    assert s.plates == got
    assert metrics.ocr_attempts.labels(camera="cam1")._value.get() == 2
    assert metrics.ocr_reads.labels(camera="cam1")._value.get() == 1
    assert await s.maybe_read(frame, t) == {}  # same confidence again: nothing improved
    assert s.attempts(1) == 2 and s.attempts(2) == 2


async def test_failing_ocr_costs_the_attempt_and_nothing_else() -> None:
    frame, _ = painted_frame()

    def broken(bgr: np.ndarray) -> PlateRead | None:
        raise RuntimeError("model exploded")

    metrics = EdgeMetrics()
    s = PlateScheduler("cam1", OcrConfig(enabled=True), broken, metrics=metrics)
    assert await s.maybe_read(frame, tracks((1, 20, 30, 220, 150))) == {}
    assert s.attempts(1) == 1
    assert metrics.ocr_attempts.labels(camera="cam1")._value.get() == 1
    assert metrics.ocr_reads.labels(camera="cam1")._value.get() == 0


async def test_submit_never_waits_and_skips_frames_while_ocr_is_busy() -> None:
    frame, _ = painted_frame()
    release = threading.Event()
    started = threading.Event()

    def slow(bgr: np.ndarray) -> PlateRead | None:
        started.set()
        release.wait(10)
        return read_by_grey(bgr)

    with ThreadPoolExecutor(1) as pool:
        s = PlateScheduler("cam1", OcrConfig(enabled=True), slow, executor=pool)
        t = tracks((1, 20, 30, 220, 150))
        assert s.submit(frame, t)
        await asyncio.to_thread(started.wait, 10)
        assert not s.submit(frame, t)  # busy: this frame is skipped
        assert s.attempts(1) == 1 and s.plates == {}
        release.set()
        await s.drain()
    assert s.best(1) is not None and s.best(1).text == "AB0200"
