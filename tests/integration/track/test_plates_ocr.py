"""The real OCR boundary: rapidocr's bundled ONNX models on real plate photos and a real clip."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import av
import cv2
import numpy as np
import pytest

from edge.assets import asset
from edge.config import OcrConfig
from edge.metrics import EdgeMetrics
from edge.testing import box_iou, metric_value
from edge.track.crops import cut
from edge.track.ocr_pool import OCR_NICE, OcrPool, ProcessOcrPool
from edge.track.plate_scheduler import PlateScheduler
from edge.track.plates import PlateReader
from edge.types import Detections, Frame

PLATES = json.loads(asset("plates", "plates.json").read_text())
CZ = next(p for p in PLATES if p["plate"] == "5AU5341")


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    r = PlateReader()
    r.warm_up()
    return r


def photo(name: str) -> np.ndarray:
    img = cv2.imread(str(asset("plates", name)))
    assert img is not None, name
    return img


@pytest.mark.parametrize("truth", PLATES, ids=[p["plate"] for p in PLATES])
def test_reads_the_plate_on_the_whole_photo(reader: PlateReader, truth: dict) -> None:
    """The photos carry other text too (`California`): only the plate comes back."""
    read = reader.read(photo(truth["file"]))
    assert read is not None
    assert read.text == truth["plate"]
    assert read.confidence > 0.9
    if truth["plate_bbox_xywh"]:
        x, y, w, h = truth["plate_bbox_xywh"]
        assert read.box is not None and box_iou(read.box, (x, y, x + w, y + h)) > 0.5


def test_reads_a_tight_plate_crop(reader: PlateReader) -> None:
    x, y, w, h = CZ["plate_bbox_xywh"]
    read = reader.read(photo(CZ["file"])[y : y + h, x : x + w])
    assert read is not None and read.text == "5AU5341"


def test_text_that_is_not_a_plate_gives_none(reader: PlateReader) -> None:
    """The highway CCTV clip has a date/time overlay and no legible plate (320×240)."""
    with av.open(str(asset("video", "traffic_highway_cctv.mp4"))) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 60)
    bgr = frame.to_ndarray(format="bgr24")
    assert reader.candidates(bgr), "the overlay should be read as text"
    assert reader.read(bgr) is None
    assert reader.read(np.full((200, 300, 3), 127, dtype=np.uint8)) is None


def test_rejects_what_is_not_a_bgr_image(reader: PlateReader) -> None:
    with pytest.raises(ValueError, match="BGR"):
        reader.read(np.zeros((100, 100), dtype=np.uint8))


async def test_scheduler_reads_a_tracked_car_on_a_decoded_frame(reader: PlateReader) -> None:
    """Full pipeline shape: a YUV 4:2:0 frame as the decoder gives it, one confirmed track; the
    crop is cut in YUV and converted in the OCR thread."""
    img = photo(CZ["file"])
    h, w = img.shape[:2]
    yuv = av.VideoFrame.from_ndarray(img[: h // 2 * 2, : w // 2 * 2], format="bgr24")
    frame = Frame("cam1", 1, 0.0, 0.0, yuv.reformat(format="yuv420p"))
    car = Detections(
        xyxy=np.array([[200, 100, 500, 328]], dtype=np.float32),
        score=np.array([0.9], dtype=np.float32),
        class_id=np.array([2]),
        track_id=np.array([42]),
    )
    metrics = EdgeMetrics()
    pool = OcrPool(1)
    s = PlateScheduler("cam1", OcrConfig(enabled=True, attempts=1), reader.read, metrics=metrics,
                       pool=pool)  # fmt: skip
    got = await s.maybe_read(frame, car)
    assert list(got) == [42] and got[42].text == "5AU5341"
    crop_read = s.plate_crop(42)
    assert crop_read is not None
    x, y, bw, bh = CZ["plate_bbox_xywh"]
    assert crop_read[1].box is not None
    assert box_iou(crop_read[1].box, (x, y, x + bw, y + bh)) > 0.5  # frame pixels
    assert await s.maybe_read(frame, car) == {}  # the single attempt is spent
    assert metric_value(metrics, "edge_ocr_attempts_total", camera="cam1") == 1
    assert metric_value(metrics, "edge_ocr_reads_total", camera="cam1") == 1
    assert s.forget([42])[42].text == "5AU5341"
    pool.shutdown()


def test_ocr_worker_process_reads_crops_refuses_when_busy_and_runs_niced() -> None:
    """The service's pool: a spawned process with its own rapidocr, at a lower priority."""
    img = photo(CZ["file"])
    h, w = img.shape[:2]
    yuv = av.VideoFrame.from_ndarray(img[: h // 2 * 2, : w // 2 * 2], format="bgr24")
    frame = Frame("cam1", 1, 0.0, 0.0, yuv.reformat(format="yuv420p"))
    crop = cut(frame, (200, 100, 500, 328))
    assert crop is not None
    pool = ProcessOcrPool(OcrConfig(enabled=True), workers=1)
    try:
        pool.start()
        fut = pool.try_read([crop, crop], lambda bgr: None)  # its own reader, not this callable
        assert fut is not None
        assert pool.try_read([crop], lambda bgr: None) is None  # busy: refused at once
        reads = fut.result(120)
        assert [(r.text if r else None, e) for r, e in reads] == [("5AU5341", None)] * 2
        assert pool.has_room()
        nice = pool._executor.submit(os.getpriority, os.PRIO_PROCESS, 0).result(30)
        assert nice == OCR_NICE
    finally:
        pool.shutdown()


def test_a_dead_ocr_worker_is_replaced_and_only_its_reads_are_lost() -> None:
    img = photo(CZ["file"])
    x, y, w, h = CZ["plate_bbox_xywh"]
    plate = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    crop = cut(Frame("cam1", 1, 0.0, 0.0, plate), (x - 20, y - 10, x + w + 20, y + h + 10))
    assert crop is not None
    pool = ProcessOcrPool(OcrConfig(enabled=True), workers=1)
    try:
        pool.start()
        for pid in list(pool._executor._processes):  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        first = pool.try_read([crop], lambda bgr: None)
        try:
            assert first is not None and first.result(120)  # queued before the death was seen
        except BrokenProcessPool:
            pass  # lost with the dead worker
        again = pool.try_read([crop], lambda bgr: None)
        assert again is not None
        [(read, error)] = again.result(120)
        assert error is None and read is not None and read.text == "5AU5341"
        assert pool.restarts == 1
    finally:
        pool.shutdown()
