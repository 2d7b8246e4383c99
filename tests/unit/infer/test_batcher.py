"""The batcher with the real detector on decoded frames of the shared clips (no RTSP here)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, metric_value
from edge.types import DetectedFrame, Detections, Frame

YOLOX = asset("models", "yolox_nano.onnx")
CLIPS = ["traffic_highway_cctv.mp4", "traffic_highway_overpass.mp4", "car-detection.mp4"]


@pytest.fixture(scope="module")
def clip_images() -> dict[str, list[av.VideoFrame]]:
    """The first 12 decoded pictures of each clip (every 5th, so they differ)."""
    out: dict[str, list[av.VideoFrame]] = {}
    for name in CLIPS:
        with av.open(str(asset("video", name))) as container:
            images = list(itertools.islice(container.decode(video=0), 0, 60, 5))
        out[name] = images
    return out


def make_frames(images: list[av.VideoFrame], camera: str) -> Iterator[Frame]:
    """Frames as a camera would hand them over: received just now."""
    for seq, image in enumerate(images):
        yield Frame(camera, seq, float(image.time), time.monotonic(), image)


def fresh(frame: Frame) -> Frame:
    return dataclasses.replace(frame, received_at=time.monotonic())


def detector_for(model: Path, metrics: EdgeMetrics, **overrides: object) -> Detector:
    """A generous stale budget unless a test sets one: a loaded CI box must not turn a slow first
    inference into dropped frames in tests that are about something else. One worker and batches
    of up to 8 (the GPU plan) unless a test says otherwise, so that batch sizes do not depend on
    the machine's provider or core count."""
    overrides.setdefault("stale_s", 10.0)
    overrides.setdefault("workers", 1)
    overrides.setdefault("max_batch", 8)
    return Detector(DetectorConfig(model=model, **overrides), metrics)


async def test_one_batch_for_all_cameras_equals_single_runs(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    cams = {f"cam{i}": clip_images[CLIPS[i % 3]][i] for i in range(4)}
    results: list[DetectedFrame] = []
    async with Batcher(det, det.config, metrics, on_result=results.append) as batcher:
        for cam, image in cams.items():
            batcher.submit(Frame(cam, 7, None, time.monotonic(), image))
        await async_wait_for(lambda: len(results) == 4, timeout=30)
    assert batcher.stats.batch_sizes == {4: 1}
    assert metric_value(metrics, "edge_batch_size_count") == 1
    assert metric_value(metrics, "edge_batch_size_sum") == 4
    assert metric_value(metrics, "edge_batch_fill_ratio_sum") == 1.0
    # one ORT run per input size: the default (rect) letterbox sizes 4:3 and 16:9 differently
    sizes = {det.preprocess(res.frame)[0].shape for res in results}
    assert len(sizes) == 2
    assert metric_value(metrics, "edge_batch_inference_seconds_count") == len(sizes)
    total = 0
    for res in results:
        cam = res.frame.camera_id
        single = det.detect([res.frame])[0]
        assert len(res.detections) == len(single), cam
        np.testing.assert_allclose(res.detections.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_allclose(res.detections.score, single.score, atol=1e-5)
        np.testing.assert_array_equal(res.detections.class_id, single.class_id)
        assert metric_value(metrics, "edge_frames_inferred_total", camera=cam) == 1
        for stage in ("queue_wait", "preprocess", "inference", "postprocess"):
            assert metric_value(metrics, "edge_stage_seconds_count", camera=cam, stage=stage) >= 1
        total += len(res.detections)
    counted = sum(
        metric_value(metrics, "edge_detections_total", camera=cam, **{"class": name})
        for cam in cams
        for name in ("car", "motorcycle", "bus", "truck")
    )
    assert total > 0
    # detect() above counted each frame once more: the batcher counted exactly half
    assert counted == 2 * total


async def test_frozen_batch_model_runs_one_frame_per_batch(
    clip_images: dict[str, list[av.VideoFrame]],
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(YOLOX, metrics)
    assert not det.is_dynamic_batch
    results: list[DetectedFrame] = []
    async with Batcher(det, det.config, metrics, on_result=results.append) as batcher:
        assert batcher.capacity() == 1
        for i, name in enumerate(CLIPS):
            batcher.submit(Frame(f"cam{i}", 0, None, time.monotonic(), clip_images[name][0]))
        await async_wait_for(lambda: len(results) == 3, timeout=30)
    assert batcher.stats.batch_sizes == {1: 3}
    assert {r.frame.camera_id for r in results} == {"cam0", "cam1", "cam2"}


async def test_only_latest_frame_per_camera_is_inferred(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    batcher = Batcher(det, det.config, metrics)
    stream = batcher.subscribe("a")
    for frame in make_frames(clip_images[CLIPS[0]][:5], "a"):
        batcher.submit(frame)
    assert batcher.pending == 1
    await batcher.start()
    try:
        got = await anext(aiter(stream))
    finally:
        await batcher.stop()
    assert got.frame.seq == 4
    assert batcher.stats.superseded == 4
    assert metric_value(metrics, "edge_frames_dropped_total", camera="a", reason="superseded") == 4
    assert batcher.stats.frames_inferred == 1


async def test_stale_frames_are_dropped_not_inferred(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics, stale_s=1.0)
    results: list[DetectedFrame] = []
    batcher = Batcher(det, det.config, metrics, on_result=results.append)
    image = clip_images[CLIPS[1]][0]
    batcher.submit(Frame("old", 0, None, time.monotonic() - 5.0, image))
    batcher.submit(Frame("new", 0, None, time.monotonic(), image))
    async with batcher:
        await async_wait_for(lambda: results, timeout=30)
        await async_wait_for(lambda: batcher.pending == 0, timeout=5)
    assert [r.frame.camera_id for r in results] == ["new"]
    assert batcher.stats.stale == 1
    assert metric_value(metrics, "edge_frames_dropped_total", camera="old", reason="stale") == 1
    assert metric_value(metrics, "edge_frames_inferred_total", camera="old") == 0


async def test_results_reach_each_camera_in_order(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    async with Batcher(det, det.config, metrics) as batcher:
        streams = {cam: batcher.subscribe(cam, maxsize=100) for cam in seen}
        feeds = {
            "a": make_frames(clip_images[CLIPS[0]], "a"),
            "b": make_frames(clip_images[CLIPS[2]], "b"),
        }
        for _ in range(12):
            for frames in feeds.values():
                batcher.submit(fresh(next(frames)))
            await async_wait_for(lambda: batcher.pending == 0, timeout=30)
        await async_wait_for(
            lambda: batcher.stats.frames_inferred == 24 - batcher.stats.superseded, 30
        )
        for cam, stream in streams.items():
            seen[cam] = [(await anext(stream)).frame.seq for _ in range(len(stream))]
    for cam in streams:
        assert seen[cam] == sorted(set(seen[cam])), cam
        assert seen[cam][-1] == 11
    assert max(batcher.stats.batch_sizes) == 2


async def test_silent_camera_delays_others_by_at_most_a_deadline(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """'dead' sent one frame and went silent; 'live' keeps getting batches of 1 after a deadline."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics, deadline_ms=20, stale_s=5.0)
    async with Batcher(det, det.config, metrics) as batcher:
        batcher.set_streaming("dead", True, fps=25.0)
        batcher.set_streaming("live", True, fps=25.0)
        live = batcher.subscribe("live")
        frames = make_frames(clip_images[CLIPS[0]], "live")
        batcher.submit(Frame("dead", 0, None, time.monotonic(), clip_images[CLIPS[1]][0]))
        batcher.submit(fresh(next(frames)))
        assert (await anext(aiter(live))).frame.seq == 0
        assert batcher.stats.batch_sizes == {2: 1}
        assert batcher.capacity() == 2  # 'dead' still counts as streaming: its frame is recent
        for _ in range(3):
            batcher.submit(fresh(next(frames)))
            await async_wait_for(lambda: len(live) > 0, timeout=30)
            result = await anext(aiter(live))
            assert result.frame.camera_id == "live"
        # a camera marked off is not waited for at all
        batcher.set_streaming("dead", False)
        assert batcher.capacity() == 1
        # ... until it sends again
        batcher.submit(Frame("dead", 1, None, time.monotonic(), clip_images[CLIPS[1]][1]))
        assert batcher.capacity() == 2
        await async_wait_for(lambda: batcher.stats.frames_inferred == 6, timeout=30)
    assert batcher.stats.batch_sizes == {2: 1, 1: 4}
    assert batcher.deadline_s() == pytest.approx(0.02)


async def test_slow_subscriber_keeps_only_newest_results(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    async with Batcher(det, det.config, metrics) as batcher:
        stream = batcher.subscribe("a", maxsize=2)
        for frame in make_frames(clip_images[CLIPS[0]][:6], "a"):
            batcher.submit(frame)
            await async_wait_for(lambda: batcher.pending == 0, timeout=30)
        await async_wait_for(lambda: batcher.stats.frames_inferred == 6, timeout=30)
        assert len(stream) == 2
        assert [(await anext(stream)).frame.seq for _ in range(2)] == [4, 5]
    assert metric_value(metrics, "edge_frames_dropped_total", camera="a", reason="queue_full") == 4


async def test_failing_callback_does_not_stop_batching(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    calls: list[int] = []

    def explode(result: DetectedFrame) -> None:
        calls.append(result.frame.seq)
        raise RuntimeError("subscriber bug")

    async with Batcher(det, det.config, metrics, on_result=explode) as batcher:
        for frame in make_frames(clip_images[CLIPS[2]][:3], "a"):
            batcher.submit(frame)
            await async_wait_for(lambda f=frame: f.seq in calls, timeout=30)
    assert calls == [0, 1, 2]


async def test_broken_frame_is_dropped_alone(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """A picture the detector cannot read costs only its own frame, not the batch."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    results: list[DetectedFrame] = []
    batcher = Batcher(det, det.config, metrics, on_result=results.append)
    broken = np.zeros((4, 4, 3), dtype=np.uint8)  # not a decoded picture
    batcher.submit(Frame("broken", 0, None, time.monotonic(), broken))  # type: ignore[arg-type]
    batcher.submit(Frame("good", 0, None, time.monotonic(), clip_images[CLIPS[0]][0]))
    async with batcher:
        await async_wait_for(lambda: results and batcher.stats.errors, timeout=30)
    assert [r.frame.camera_id for r in results] == ["good"]
    assert batcher.stats.errors == 1
    assert metric_value(metrics, "edge_frames_dropped_total", camera="broken", reason="error") == 1


async def test_max_batch_caps_batches_and_serves_longest_waiting_first(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics, max_batch=2)
    order: list[str] = []
    batcher = Batcher(det, det.config, metrics, on_result=lambda r: order.append(r.frame.camera_id))
    for i, cam in enumerate(["c", "a", "d", "b"]):
        batcher.submit(Frame(cam, 0, None, time.monotonic(), clip_images[CLIPS[i % 3]][1]))
    assert batcher.capacity() == 2
    async with batcher:
        await async_wait_for(lambda: len(order) == 4, timeout=30)
    assert batcher.stats.batch_sizes == {2: 2}
    assert order == ["c", "a", "d", "b"]


async def test_run_as_own_task_is_stopped_by_stop(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """The service runs `run()` in its own task group; `stop()` must still end it."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    batcher = Batcher(det, det.config, metrics)
    stream = batcher.subscribe("a")
    task = asyncio.create_task(batcher.run())
    batcher.submit(Frame("a", 0, None, time.monotonic(), clip_images[CLIPS[0]][0]))
    assert (await anext(stream)).frame.seq == 0
    await batcher.stop()
    assert task.done()
    assert [r async for r in stream] == []
    assert batcher.stats.shutdown == 0  # nothing was left behind


class Gate:
    """A real detector whose batches wait until the test opens the gate."""

    def __init__(self, det: Detector) -> None:
        self.det = det
        self.open = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.det, name)

    def detect_batch(self, frames: Sequence[Frame], **kw: Any) -> list[Detections | None]:
        assert self.open.wait(30), "the gate never opened"
        return self.det.detect_batch(frames, **kw)


async def test_stop_finishes_the_batch_in_flight_and_counts_what_it_abandons(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """At stop: a batch in flight (a0), a frame waiting behind it (a1), one waiting for a worker
    (b0), and a result nobody reads. The batch finishes and is counted inferred; the two waiting
    frames and the unread result are counted as dropped, reason "shutdown"."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics)
    gate = Gate(det)
    batcher = Batcher(gate, det.config, metrics)
    unread = batcher.subscribe("a")
    images = clip_images[CLIPS[0]]
    await batcher.start()
    batcher.submit(Frame("a", 0, None, time.monotonic(), images[0]))
    await async_wait_for(lambda: batcher.in_flight == 1, timeout=10)
    batcher.submit(Frame("a", 1, None, time.monotonic(), images[1]))
    batcher.submit(Frame("b", 0, None, time.monotonic(), images[2]))
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stop() returned while a batch was still running"
    gate.open.set()
    await asyncio.wait_for(stopping, 30)
    assert metric_value(metrics, "edge_frames_inferred_total", camera="a") == 1
    assert metric_value(metrics, "edge_frames_dropped_total", camera="a", reason="shutdown") == 2
    assert metric_value(metrics, "edge_frames_dropped_total", camera="b", reason="shutdown") == 1
    assert metric_value(metrics, "edge_frames_dropped_total") == 3  # no other reason
    assert batcher.stats.shutdown == 3 and batcher.pending == 0 and batcher.in_flight == 0
    assert [r async for r in unread] == []


class Rendezvous:
    """A real detector whose batches (`detect_batch`, the batcher's call) must meet in pairs: a
    batch run alone (not side by side with another) breaks the barrier and fails."""

    def __init__(self, det: Detector, parties: int) -> None:
        self.det = det
        self.barrier = threading.Barrier(parties, timeout=20)

    def __getattr__(self, name: str) -> object:
        return getattr(self.det, name)

    def detect_batch(self, frames: Sequence[Frame], **kw: Any) -> list[Detections | None]:
        self.barrier.wait()
        return self.det.detect_batch(frames, **kw)


async def test_two_workers_run_two_batches_side_by_side(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """4 cameras, 2 workers: the cameras are shared out (2 + 2) and both batches run at once."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics, workers=2)
    assert det.workers == 2
    meeting = Rendezvous(det, parties=2)
    results: list[DetectedFrame] = []
    async with Batcher(meeting, det.config, metrics, on_result=results.append) as batcher:
        for i in range(4):
            image = clip_images[CLIPS[i % 3]][2]
            batcher.submit(Frame(f"cam{i}", 0, None, time.monotonic(), image))
        await async_wait_for(lambda: len(results) + batcher.stats.errors >= 4, timeout=30)
    assert batcher.stats.errors == 0, "a batch ran alone: the barrier broke"
    assert batcher.stats.batch_sizes == {2: 2}
    assert sorted(r.frame.camera_id for r in results) == ["cam0", "cam1", "cam2", "cam3"]


async def test_two_workers_keep_each_camera_in_order(
    dynamic_model: Path, clip_images: dict[str, list[av.VideoFrame]]
) -> None:
    """A camera never has frames in two running batches, so its results stay in frame order."""
    metrics = EdgeMetrics()
    det = detector_for(dynamic_model, metrics, workers=2)
    running: dict[str, int] = {}
    clashes: list[str] = []
    lock = threading.Lock()
    original = det.preprocess

    def preprocess(frame: Frame) -> tuple[np.ndarray, object]:
        with lock:
            running[frame.camera_id] = running.get(frame.camera_id, 0) + 1
            if running[frame.camera_id] > 1:
                clashes.append(frame.camera_id)
        try:
            time.sleep(0.005)  # widen the window a second batch of this camera would hit
            return original(frame)
        finally:
            with lock:
                running[frame.camera_id] -= 1

    det.preprocess = preprocess  # type: ignore[method-assign]
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    async with Batcher(det, det.config, metrics) as batcher:
        streams = {cam: batcher.subscribe(cam, maxsize=100) for cam in seen}
        feeds = {cam: make_frames(clip_images[CLIPS[i]], cam) for i, cam in enumerate(seen)}
        for _ in range(12):
            for frames in feeds.values():
                batcher.submit(fresh(next(frames)))
            await asyncio.sleep(0.01)
        await async_wait_for(lambda: batcher.pending == 0 and not batcher.running, timeout=30)
        for cam, stream in streams.items():
            seen[cam] = [(await anext(stream)).frame.seq for _ in range(len(stream))]
    assert clashes == []
    for cam in streams:
        assert seen[cam] == sorted(set(seen[cam])), cam
        assert seen[cam][-1] == 11, cam
    assert batcher.stats.frames_inferred == 36 - batcher.stats.superseded
