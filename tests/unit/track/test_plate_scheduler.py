"""Which crops get read: largest, sharpest, inside the picture; attempts, agreement, busy pool.

Real decoded-format frames (YUV 4:2:0) with textured boxes; the OCR is a scripted callable whose
answer depends on the crop it is given, so that tests can tell which crop was read."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np

from edge.config import OcrConfig, SnapshotConfig
from edge.metrics import EdgeMetrics
from edge.testing import metric_value
from edge.track.crops import cut, quality, sharpness
from edge.track.ocr_pool import OCR_NICE, OcrPool
from edge.track.plate_scheduler import PlateScheduler
from edge.track.plates import PlateRead
from edge.track.snapshots import SnapshotWriter
from edge.types import Detections, Frame

W, H = 640, 360
RNG = np.random.default_rng(7)
TEXTURE = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def frame(boxes: dict[int, tuple[int, int, int, int]], blur: set[int] = frozenset(), seq: int = 0
          ) -> Frame:  # fmt: skip
    """A grey frame; each box holds sharp noise (blurred for the track ids in `blur`)."""
    img = np.full((H, W, 3), 90, dtype=np.uint8)
    for tid, (x1, y1, x2, y2) in boxes.items():
        patch = TEXTURE[y1:y2, x1:x2]
        img[y1:y2, x1:x2] = cv2.GaussianBlur(patch, (0, 0), 6) if tid in blur else patch
    image = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    return Frame("cam1", seq, None, 0.0, image)


def tracks(boxes: dict[int, tuple[int, int, int, int]]) -> Detections:
    return Detections(
        xyxy=np.array(list(boxes.values()), dtype=np.float32).reshape(-1, 4),
        score=np.full(len(boxes), 0.9, dtype=np.float32),
        class_id=np.full(len(boxes), 2, dtype=np.int64),
        track_id=np.array(list(boxes), dtype=np.int64),
    )


def by_width(bgr: np.ndarray) -> PlateRead | None:
    """Scripted OCR: the plate text tells the crop's width."""
    return PlateRead(f"AB{bgr.shape[1]:04d}", 0.9, "AB", (2.0, 2.0, 20.0, 10.0))


def scheduler(read=by_width, **ocr: object) -> PlateScheduler:  # type: ignore[no-untyped-def]
    cfg = OcrConfig(enabled=True, **{"min_box_width": 40, **ocr})  # type: ignore[arg-type]
    return PlateScheduler("cam1", cfg, read, metrics=EdgeMetrics(), pool=OcrPool(1))


def test_crops_are_cut_in_yuv_and_convert_back_to_the_picture() -> None:
    f = frame({1: (100, 50, 300, 200)})
    crop = cut(f, (100.4, 50.6, 299.7, 200.2))
    assert crop is not None and crop.kind == "i420" and crop.box == (100, 50, 300, 200)
    bgr = crop.to_bgr()
    expected = f.to_bgr()[50:200, 100:300]
    assert bgr.shape == expected.shape
    assert np.abs(bgr.astype(int) - expected.astype(int)).mean() < 8  # colour-conversion rounding
    assert crop.nbytes == 200 * 150 * 3 // 2
    assert cut(f, (700, 10, 800, 50)) is None  # outside the picture


def test_sharpness_and_quality_prefer_crisp_crops() -> None:
    f = frame({1: (20, 20, 220, 170), 2: (300, 20, 500, 170)}, blur={2})
    sharp, blurred = cut(f, (20, 20, 220, 170)), cut(f, (300, 20, 500, 170))
    assert sharp is not None and blurred is not None
    assert sharpness(sharp.gray()) > 10 * sharpness(blurred.gray())
    assert quality(sharp) > 2 * quality(blurred)


async def test_attempts_go_to_the_largest_views_not_the_first_frames() -> None:
    """A vehicle approaching for 8 frames while OCR is busy elsewhere: the kept crops are the
    three largest, read largest first; the next attempt waits for a clearly better view, or
    `reread_after_frames`."""
    s = scheduler(attempts=3, candidates=3, agree=0)
    s.reread_after_frames = 3
    sizes = [60, 80, 100, 120, 140, 160, 180, 200]
    for i, w in enumerate(sizes):
        boxes = {1: (100, 100, 100 + w, 100 + w // 2)}
        s.observe(frame(boxes, seq=i), tracks(boxes))
    assert [c.crop.width for c in s._tracks[1].candidates] == [200, 180, 160]
    first = await s.maybe_read(frame({}), tracks({}))
    assert first[1].text == "AB0200"
    assert s.plan() == []  # 180 px is no better than what was read
    bigger = {1: (100, 100, 400, 250)}
    s.observe(frame(bigger), tracks(bigger))
    assert [j.crop.width for j in s.plan()] == [300]  # a clearly larger view: read at once
    for _ in range(3):
        s.observe(frame({}), tracks({}))
    assert [j.crop.width for j in s.plan()] == [200 - 20]  # no better view came: read again
    assert s.attempts(1) == 3 and s.plan() == []  # the attempt budget is spent


def test_a_box_cut_by_the_border_loses_to_a_smaller_one_inside() -> None:
    s = scheduler(candidates=1)
    cut_off = {1: (0, 100, 300, 250)}  # touches the left border
    inside = {1: (200, 100, 400, 200)}
    s.observe(frame(cut_off), tracks(cut_off))
    s.observe(frame(inside), tracks(inside))
    assert s.best_crop(1) is not None and s.best_crop(1).box == (200, 100, 400, 200)
    s.observe(frame(cut_off), tracks(cut_off))
    assert s.best_crop(1).box == (200, 100, 400, 200)


def test_a_blurred_frame_loses_to_a_sharp_one_of_the_same_size() -> None:
    s = scheduler(candidates=1)
    box = {1: (100, 100, 300, 220)}
    s.observe(frame(box, blur={1}), tracks(box))
    blurred_q = s._tracks[1].candidates[0].quality
    s.observe(frame(box), tracks(box))
    assert s._tracks[1].candidates[0].quality > 2 * blurred_q


def test_kept_crops_are_bounded_per_track() -> None:
    s = scheduler(candidates=2, attempts=100)
    for i in range(30):
        boxes = {t: (10 + 60 * t, 10, 10 + 60 * t + 50 + i, 60 + i) for t in range(1, 5)}
        s.observe(frame(boxes, seq=i), tracks(boxes))
    assert all(len(st.candidates) <= 2 for st in s._tracks.values())
    assert s.kept_bytes() <= 4 * 2 * (80 * 80 * 3 // 2)


async def test_reads_stop_once_enough_agree_and_the_event_gets_the_vote() -> None:
    s = scheduler(attempts=5, agree=2, read=lambda bgr: PlateRead("4XXF538", 0.9, "4XXF 538"))
    for i in range(6):
        boxes = {1: (100, 100, 160 + 20 * i, 160 + 10 * i)}
        await s.maybe_read(frame(boxes, seq=i), tracks(boxes))
    assert s.attempts(1) == 2
    info = s.info(1, ended=True)
    assert info is not None
    assert (info.plate, info.plate_reads, info.plate_confidence) == ("4XXF538", 2, 0.9)
    assert info.snapshot is None  # no snapshot folder configured
    assert s.forget([1])[1].text == "4XXF538" and s.info(1, ended=True) is None


async def test_reads_are_voted_per_character() -> None:
    answers = iter(["4XXF538", "4XXF53B", "4XF538", "4XXF538"])
    s = scheduler(attempts=4, agree=0, read=lambda bgr: PlateRead(next(answers), 0.9, ""))
    for i in range(8):
        boxes = {1: (100, 100, 160 + 20 * i, 160 + 10 * i)}
        await s.maybe_read(frame(boxes, seq=i), tracks(boxes))
    voted = s.best(1)
    assert voted is not None and (voted.text, voted.agreed, voted.reads) == ("4XXF538", 2, 4)


async def test_failing_ocr_costs_the_attempt_and_nothing_else() -> None:
    def broken(bgr: np.ndarray) -> PlateRead | None:
        raise RuntimeError("model exploded")

    s = scheduler(read=broken)
    boxes = {1: (100, 100, 300, 200)}
    assert await s.maybe_read(frame(boxes), tracks(boxes)) == {}
    assert s.attempts(1) == 1
    assert metric_value(s.metrics, "edge_ocr_attempts_total", camera="cam1") == 1
    assert metric_value(s.metrics, "edge_ocr_reads_total", camera="cam1") == 0


async def test_a_busy_pool_skips_the_attempt_counts_it_and_never_waits() -> None:
    release, started = threading.Event(), threading.Event()

    def slow(bgr: np.ndarray) -> PlateRead | None:
        started.set()
        release.wait(10)
        return by_width(bgr)

    pool = OcrPool(1)
    cfg = OcrConfig(enabled=True, min_box_width=40, agree=0)
    one = PlateScheduler("cam1", cfg, slow, metrics=EdgeMetrics(), pool=pool)
    two = PlateScheduler("cam2", cfg, slow, metrics=one.metrics, pool=pool)
    boxes = {1: (100, 100, 300, 200)}
    assert one.submit(frame(boxes), tracks(boxes))
    await asyncio.to_thread(started.wait, 10)
    assert not two.submit(frame(boxes), tracks(boxes))  # the pool's only thread is taken
    bigger = {1: (100, 100, 400, 250)}  # a better view: an attempt is due
    assert not one.submit(frame(bigger, seq=1), tracks(bigger))  # its own attempt still runs
    assert two.attempts(1) == 0 and one.attempts(1) == 1
    assert metric_value(one.metrics, "edge_ocr_skipped_total", camera="cam2") == 1
    assert metric_value(one.metrics, "edge_ocr_skipped_total", camera="cam1") == 1
    release.set()
    await one.drain()
    assert one.best(1) is not None and one.best(1).text == "AB0200"
    assert two.submit(frame(boxes), tracks(boxes)) and two.attempts(1) == 1
    await two.drain()
    pool.shutdown()


def test_tracks_not_seen_for_long_are_evicted() -> None:
    s = PlateScheduler("cam1", OcrConfig(enabled=True, min_box_width=40), by_width,
                       EdgeMetrics(), stale_after_frames=3)  # fmt: skip
    s.observe(frame({1: (10, 10, 100, 100)}), tracks({1: (10, 10, 100, 100)}))
    for _ in range(3):
        s.observe(frame({2: (10, 10, 100, 100)}), tracks({2: (10, 10, 100, 100)}))
    assert s.best_crop(1) is not None
    s.observe(frame({2: (10, 10, 100, 100)}), tracks({2: (10, 10, 100, 100)}))
    assert s.best_crop(1) is None


def test_ocr_threads_run_below_the_video_s_priority() -> None:
    """On a busy CPU, OCR gets the time detection leaves (Linux niceness is per thread)."""

    def priority(bgr: np.ndarray) -> PlateRead:
        return PlateRead(str(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())), 1, "")

    pool = OcrPool(1)
    crop = cut(frame({1: (10, 10, 100, 100)}), (10, 10, 100, 100))
    assert crop is not None
    fut = pool.try_read([crop], priority)
    assert fut is not None
    [(read, error)] = fut.result(10)
    assert error is None and read is not None and read.text == str(OCR_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < OCR_NICE
    pool.shutdown()


async def test_a_track_end_saves_its_best_crop_and_its_plate(tmp_path: Path) -> None:
    snaps = SnapshotWriter(SnapshotConfig(dir=tmp_path), EdgeMetrics())
    snaps.start()
    cfg = OcrConfig(enabled=True, min_box_width=40, attempts=1)
    s = PlateScheduler("cam1", cfg, by_width, snaps.metrics, pool=OcrPool(1), snapshots=snaps)
    for i, w in enumerate([100, 200, 150]):  # read on the first frame; the best view comes later
        boxes = {1: (100, 100, 100 + w, 100 + w // 2)}
        await s.maybe_read(frame(boxes, seq=i), tracks(boxes))
    info = s.info(1, ended=True, when=datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    snaps.close()
    assert info is not None and info.plate == "AB0100" and info.plate_reads == 1
    assert info.snapshot == "cam1-1-20261203T100000000Z.jpg"
    assert info.plate_snapshot == "cam1-1-20261203T100000000Z-plate.jpg"
    vehicle = cv2.imread(str(tmp_path / info.snapshot))
    plate = cv2.imread(str(tmp_path / info.plate_snapshot))
    assert vehicle is not None and vehicle.shape[:2] == (100, 200)  # the largest view
    assert plate is not None and plate.shape[:2] == (8, 18)  # the read's box, on its own crop
