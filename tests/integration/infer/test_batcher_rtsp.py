"""The batcher fed by 4 real RTSP cameras (GStreamer simulator → CameraSource → Batcher)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.assets import asset
from edge.config import CameraConfig, DetectorConfig, IngestConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, metric_value
from edge.types import DetectedFrame

# 25, 29.97 and 12.5 fps; the fourth camera (on its own server, so it can fail alone) 25 fps.
MAIN_CLIPS = {
    "cam0": "traffic_highway_cctv.mp4",
    "cam1": "traffic_highway_overpass.mp4",
    "cam2": "car-detection.mp4",
}
LONE_CLIP = {"cam3": "traffic_highway_cctv.mp4"}
CAMERAS = [*MAIN_CLIPS, *LONE_CLIP]
INGEST = IngestConfig(
    open_timeout_s=2.0, read_timeout_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0
)


@dataclass
class Cameras:
    main: CameraSimulator
    lone: CameraSimulator

    def url(self, camera: str) -> str:
        return (self.lone if camera in LONE_CLIP else self.main).url(camera)


@pytest.fixture(scope="module")
def cameras() -> Iterator[Cameras]:
    main = CameraSimulator({k: asset("video", v) for k, v in MAIN_CLIPS.items()})
    lone = CameraSimulator({k: asset("video", v) for k, v in LONE_CLIP.items()})
    with main, lone:
        yield Cameras(main, lone)


@dataclass
class Pipeline:
    batcher: Batcher
    sources: dict[str, CameraSource]
    results: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CAMERAS})
    max_pending: int = 0
    unaccounted: list[int] = field(default_factory=list)

    def count(self, camera: str) -> int:
        return len(self.results[camera])

    def assert_every_frame_accounted(self) -> None:
        """After the pipeline stopped, per camera: every frame decoded was inferred (and handed
        to `on_result`, the only consumer) or counted as dropped with a reason, exactly. Frames
        still in a source, waiting in the batcher or in a batch at the stop count too."""
        metrics = self.batcher.metrics
        for cam in CAMERAS:
            decoded = metric_value(metrics, "edge_frames_decoded_total", camera=cam)
            inferred = metric_value(metrics, "edge_frames_inferred_total", camera=cam)
            dropped = metric_value(metrics, "edge_frames_dropped_total", camera=cam)
            assert inferred == self.count(cam), cam
            assert decoded == inferred + dropped, (
                f"{cam}: {decoded} decoded, {inferred} inferred, {dropped} dropped"
            )


@contextlib.asynccontextmanager
async def pipeline(model: Path, **detector: object) -> AsyncIterator[Pipeline]:
    """Sources for the 4 cameras feeding one batcher; results recorded per camera (seq numbers).
    One worker and batches of up to 8 (the GPU plan) unless a test says otherwise, so that batch
    sizes do not depend on the machine's provider or core count."""
    cams: Cameras = detector.pop("cameras")  # type: ignore[assignment]
    detector.setdefault("workers", 1)
    detector.setdefault("max_batch", 8)
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=model, **detector), metrics)  # type: ignore[arg-type]
    batcher = Batcher(det, det.config, metrics)
    sources = {
        c: CameraSource(CameraConfig(id=c, url=cams.url(c)), INGEST, metrics) for c in CAMERAS
    }
    pipe = Pipeline(batcher, sources)

    def record(result: DetectedFrame) -> None:
        pipe.results[result.frame.camera_id].append(result.frame.seq)
        # every frame submitted was inferred, dropped (counted), is pending or in a running batch:
        # none queued
        s, pending, in_flight = batcher.accounting()
        pipe.max_pending = max(pipe.max_pending, pending)
        gone = s.frames_inferred + s.superseded + s.stale + s.errors + pending + in_flight
        if s.submitted != gone:
            pipe.unaccounted.append(s.submitted - gone)

    batcher.on_result = record
    feeds: list[asyncio.Task[None]] = []
    try:
        await batcher.start()
        for source in sources.values():
            await source.start()
            feeds.append(asyncio.create_task(batcher.feed(source)))
        yield pipe
    finally:
        for source in sources.values():
            await source.stop()
        await asyncio.gather(*feeds, return_exceptions=True)
        await batcher.stop()


@pytest.mark.parametrize(
    ("workers", "max_batch", "letterbox"), [(1, 8, "square"), (2, 2, "square"), (1, 8, "rect")]
)
async def test_four_cameras_are_batched_together(
    cameras: Cameras, dynamic_model: Path, workers: int, max_batch: int, letterbox: str
) -> None:
    """One worker (the GPU plan) batches all 4 cameras; two (the CPU plan on 2 cores) share
    them out. With a rect letterbox the 4:3 and 16:9 cameras share batches but not inputs."""
    plan = {"workers": workers, "max_batch": max_batch, "letterbox": letterbox}
    async with pipeline(dynamic_model, cameras=cameras, **plan) as pipe:
        await async_wait_for(lambda: all(pipe.count(c) >= 15 for c in CAMERAS), timeout=60)
        stats = pipe.batcher.stats
        for camera in CAMERAS:
            seqs = pipe.results[camera]
            assert seqs == sorted(set(seqs)), f"{camera}: results out of order"
    # frames are batched, never past the cap (2) or the cameras that have a frame (4)
    assert 1 < max(stats.batch_sizes) <= min(len(CAMERAS), max_batch), stats
    if workers == 1:  # one worker batches: far fewer batches than frames
        assert stats.mean_batch_size > 1.5, stats
    assert pipe.max_pending <= len(CAMERAS)
    assert pipe.unaccounted == []
    pipe.assert_every_frame_accounted()


async def test_stale_frames_are_dropped_instead_of_queued(
    cameras: Cameras, dynamic_model: Path
) -> None:
    """Waiting for all 4 cameras (up to 200 ms) makes early frames older than a 10 ms budget.

    Which cameras' frames survive depends on how the cameras' frame phases line up (the frame
    that completes a batch is fresh, the early ones go stale), so an idle subscriber is put on
    every camera and the queue checks use whichever camera got results first."""
    async with pipeline(dynamic_model, cameras=cameras, stale_s=0.01, deadline_ms=200) as pipe:
        idle = {c: pipe.batcher.subscribe(c, maxsize=3) for c in CAMERAS}  # never read
        await async_wait_for(lambda: pipe.batcher.stats.stale >= 20, timeout=60)
        await async_wait_for(lambda: max(pipe.count(c) for c in CAMERAS) >= 6, timeout=60)
        cam = max(CAMERAS, key=pipe.count)
        assert len(idle[cam]) == 3
        stats = pipe.batcher.stats
        stale = metric_value(pipe.batcher.metrics, "edge_frames_dropped_total", reason="stale")
        assert stale == stats.stale
        # each idle subscriber keeps its 3 newest results; older ones were dropped and counted
        assert stats.result_queue_drops == sum(max(0, pipe.count(c) - 3) for c in CAMERAS)
        newest = pipe.results[cam][-3:]
        assert [(await anext(idle[cam])).frame.seq for _ in range(3)] == newest
    assert pipe.max_pending <= len(CAMERAS)
    assert pipe.unaccounted == []


@pytest.mark.parametrize(("workers", "max_batch"), [(1, 8), (2, 2)])
async def test_frozen_camera_does_not_stall_the_others(
    cameras: Cameras, dynamic_model: Path, workers: int, max_batch: int
) -> None:
    """With either plan (one worker: the GPU's; two: the CPU's on 2 cores) a camera that hangs
    drops out of the batches within the stale budget and the others go on."""
    plan = {"workers": workers, "max_batch": max_batch, "deadline_ms": 40}
    async with pipeline(dynamic_model, cameras=cameras, **plan) as pipe:
        await async_wait_for(lambda: all(pipe.count(c) >= 5 for c in CAMERAS), timeout=60)
        cameras.lone.pause()  # cam3 hangs: TCP open, nothing arrives
        try:
            streaming = pipe.batcher.streaming_cameras
            await async_wait_for(lambda: "cam3" not in streaming(), timeout=10)
            assert sorted(streaming()) == sorted(MAIN_CLIPS)
            before = {c: pipe.count(c) for c in CAMERAS}
            await async_wait_for(
                lambda: all(pipe.count(c) >= before[c] + 15 for c in MAIN_CLIPS), timeout=30
            )
            # at most a frame or two that were already in the socket when it froze
            assert pipe.count("cam3") <= before["cam3"] + 2
            sizes = pipe.batcher.stats.batch_sizes
            if workers == 1:
                assert sizes.get(3, 0) > 0, sizes  # the 3 live cameras batched together
        finally:
            cameras.lone.resume()
        # the camera comes back into the batches once it sends again
        resumed = pipe.count("cam3")
        await async_wait_for(lambda: pipe.count("cam3") > resumed, timeout=30)
    pipe.assert_every_frame_accounted()
