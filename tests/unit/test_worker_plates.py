"""A camera worker's plate reads on the service's pool, both ends joined in one process: the
crops cross as bytes and come back the same; a read refused by a busy pool is given back to its
track and counted as skipped; a read that goes through is voted; snapshots reach the writer; a
stopping worker's last events carry the reads that were in flight."""

from __future__ import annotations

import asyncio
import pickle
import threading
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from edge.config import OcrConfig, SnapshotConfig, TrackerConfig
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, metric_value
from edge.track.camera import CameraTracking
from edge.track.crops import cut
from edge.track.events import VehicleEvent
from edge.track.ocr_pool import OcrPool
from edge.track.plate_scheduler import PlateScheduler
from edge.track.plates import PlateRead
from edge.track.snapshots import SnapshotWriter
from edge.types import Detections, Frame
from edge.worker_plates import (
    REFUSED_WAIT_S,
    PlateRelay,
    RemoteOcrPool,
    RemoteSnapshots,
    WorkerPlates,
    pack_crop,
    unpack_crop,
)

BOX = (100, 100, 300, 200)


def frame(seq: int = 0) -> Frame:
    img = np.full((360, 640, 3), 90, dtype=np.uint8)
    img[100:200, 100:300] = np.random.default_rng(seq).integers(0, 256, (100, 200, 3))
    return Frame("cam1", seq, None, 0.0, av.VideoFrame.from_ndarray(img, format="bgr24")
                 .reformat(format="yuv420p"))  # fmt: skip


def tracks() -> Detections:
    return Detections(np.array([BOX], dtype=np.float32), np.array([0.9], dtype=np.float32),
                      np.array([2]), track_id=np.array([1]))  # fmt: skip


def test_a_crop_crosses_the_pipe_as_bytes_and_converts_back_the_same() -> None:
    crop = cut(frame(), BOX)
    assert crop is not None
    back = unpack_crop(pickle.loads(pickle.dumps(pack_crop(crop))))
    assert (back.seq, back.box, back.kind) == (crop.seq, crop.box, crop.kind)
    assert np.array_equal(back.to_bgr(), crop.to_bgr())


async def test_a_refused_read_is_given_back_and_counted_then_read_when_the_pool_has_room(
    tmp_path: Path,
) -> None:
    release, started = threading.Event(), threading.Event()

    def slow(bgr: np.ndarray) -> PlateRead | None:
        started.set()
        release.wait(10)
        return PlateRead("AB1234", 0.9, "AB 1234", (2.0, 2.0, 40.0, 20.0))

    service_pool = OcrPool(1)
    writer = SnapshotWriter(SnapshotConfig(dir=tmp_path), EdgeMetrics())
    writer.start()
    relay = PlateRelay(service_pool, slow, writer)
    sent: list[str] = []

    def send(msg: tuple[Any, ...]) -> None:  # the pipe, both ways
        sent.append(msg[0])
        if msg[0] == "ocr":
            relay.read(*msg[1], reply=lambda m: remote.answer(m[1], m[2]))
        else:
            relay.snapshot(*msg[1])

    remote = RemoteOcrPool(send)
    cfg = OcrConfig(enabled=True, min_box_width=40, agree=0, attempts=3)
    s = PlateScheduler("cam1", cfg, slow, EdgeMetrics(), pool=remote,
                       snapshots=RemoteSnapshots(send))  # fmt: skip
    other = cut(frame(), BOX)
    assert other is not None
    busy = service_pool.try_read([other], slow)  # another worker's camera holds the only process
    assert busy is not None
    await asyncio.to_thread(started.wait, 10)
    assert s.submit(frame(), tracks())
    await s.drain()
    assert s.attempts(1) == 0 and s.best(1) is None  # refused: the budget is not spent
    assert metric_value(s.metrics, "edge_ocr_skipped_total", camera="cam1") == 1
    assert metric_value(s.metrics, "edge_ocr_attempts_total", camera="cam1") == 0
    assert not remote.has_room()  # no asking again at once
    assert not s.submit(frame(1), tracks())  # an attempt is due: skipped, as in the service
    release.set()
    await asyncio.wrap_future(busy)
    await asyncio.sleep(REFUSED_WAIT_S)
    assert s.submit(frame(2), tracks())
    await s.drain()
    assert s.attempts(1) == 1 and s.best(1) is not None and s.best(1).text == "AB1234"
    assert metric_value(s.metrics, "edge_ocr_attempts_total", camera="cam1") == 1
    info = s.info(1, ended=True)
    assert info is not None and info.plate == "AB1234" and info.snapshot and info.plate_snapshot
    await async_wait_for(lambda: (tmp_path / info.snapshot).exists(), 10)
    assert cv2.imread(str(tmp_path / info.snapshot)).shape[:2] == (100, 200)
    assert sent.count("snapshot") == 2
    writer.close()
    service_pool.shutdown()


async def test_a_stopping_worker_waits_for_its_reads_in_flight_before_its_tracks_end() -> None:
    requests: list[tuple[Any, ...]] = []
    plates = WorkerPlates(OcrConfig(enabled=True, min_box_width=40), False, requests.append,
                          EdgeMetrics())  # fmt: skip
    ended: list[VehicleEvent] = []
    tracking = CameraTracking("cam1", TrackerConfig(min_hits=1), [], ["car", "car", "car"],
                              emit=ended.append, metrics=plates.metrics,
                              **plates.add("cam1"))  # fmt: skip
    tracked = tracking.update(tracks())
    plates.tracked("cam1", frame(), tracked)
    await asyncio.sleep(0)  # the attempt starts: its crops go to the service
    [(kind, (request, crops), _, _)] = requests
    assert kind == "ocr" and len(crops) == 1
    drained = asyncio.create_task(plates.drain())
    await asyncio.sleep(0.1)
    assert not drained.done()  # the answer is still out
    plates.answer(request, [(PlateRead("AB1234", 0.9, "AB 1234"), None)])
    await drained
    tracking.finish()
    assert [(e.kind, e.plate) for e in ended] == [("track_end", "AB1234")]
    assert plates.texts("cam1") == {1: "AB1234"}


async def test_a_lost_track_s_end_event_waits_for_its_read_even_without_another_frame() -> None:
    requests: list[tuple[Any, ...]] = []
    plates = WorkerPlates(OcrConfig(enabled=True, min_box_width=40), False, requests.append,
                          EdgeMetrics())  # fmt: skip
    ended: list[VehicleEvent] = []
    tracking = CameraTracking("cam1", TrackerConfig(min_hits=1, max_age=1), [], ["car"] * 3,
                              emit=ended.append, metrics=plates.metrics,
                              **plates.add("cam1"))  # fmt: skip
    plates.follow({"cam1": tracking})
    plates.tracked("cam1", frame(), tracking.update(tracks()))
    await asyncio.sleep(0)
    [(_, (request, _), _, _)] = requests
    for _ in range(3):  # the vehicle is gone, then the stream ends
        plates.tracked("cam1", frame(), tracking.update(Detections.empty()))
    assert ended == []  # its end event waits for the read
    plates.answer(request, [(PlateRead("AB1234", 0.9, "AB 1234"), None)])
    await async_wait_for(lambda: ended, 5)
    assert [(e.kind, e.track_id, e.plate) for e in ended] == [("track_end", 1, "AB1234")]
    assert plates.texts("cam1") == {}  # forgotten once its event went
