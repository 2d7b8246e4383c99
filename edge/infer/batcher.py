"""Cross-camera micro-batching in front of the one detector session.

Why: ONNX Runtime is much faster per image on a batch than on single images, but cameras must never
wait on each other. So the batcher keeps only the *latest* frame of each camera (a newer frame
supersedes the pending one), runs a batch as soon as every streaming camera has a frame (capped by
`max_batch`) or when the oldest pending frame has waited one deadline (by default one frame
interval of the fastest camera), and drops frames that got too old instead of queueing them. A
slow or dead camera therefore costs the others at most one deadline, and memory is bounded by one
pending frame per camera plus the small per-subscriber result queues.

Inference (preprocess + infer + postprocess) runs in worker threads, so the event loop never
blocks: `detector.workers` batches at once on the one session (one per CPU core on a CPU, where
single-threaded batches side by side beat one batch spread over every core; two on a GPU, where
one prepares its frames while the other runs). The pending cameras are shared out over the free
workers. A camera never has two frames in running batches, so results reach each camera in frame
order.

Results are delivered two ways, both optional:
- `subscribe(camera_id)`: an async iterator of `DetectedFrame` with a bounded latest-only queue; a
  subscriber that falls behind loses its oldest results (counted as reason "queue_full").
- `on_result`: a callback called on the event loop for every result, in order; it must be quick;
- `on_batch`: the same for the results of a batch at once (one call per batch).

`stop()` loses nothing silently: the batches in flight finish and deliver, and the frames still
waiting for a batch and the results no subscriber took are counted as dropped (reason
"shutdown"), so that every frame submitted ends up inferred or counted, stopped or not.

Frames prepared elsewhere (a worker process's letterboxed picture in shared memory) carry
`prepared()` and `release()`: how a batch thread runs them and gives their pictures back lives in
`edge.infer.batch_job`.

Call `submit` and `set_streaming` from the event loop's thread only. The pure policy (deadline,
capacity, latest-only slots, camera liveness) lives in `edge.infer.batch_policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from edge.config import DetectorConfig
from edge.infer.batch_job import BatchDetector, release, run_batch_job
from edge.infer.batch_policy import (
    BatcherStats,
    CameraActivity,
    LatestSlots,
    Pending,
    batch_capacity,
    batch_deadline_s,
)
from edge.infer.results import RESULT_QUEUE_SIZE, ResultStream
from edge.metrics import DropReason, EdgeMetrics
from edge.types import DetectedFrame, Detections, Frame

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What `Batcher.feed` needs of `edge.ingest.source.CameraSource`."""

    camera_id: str
    source_fps: float | None

    def frames(self) -> AsyncIterator[Frame]: ...


class Batcher:
    """Micro-batches the latest frame of every camera through one detector (see module doc)."""

    def __init__(
        self,
        detector: BatchDetector,
        config: DetectorConfig,
        metrics: EdgeMetrics,
        on_result: Callable[[DetectedFrame], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        count_detections: bool = True,
        on_batch: Callable[[list[DetectedFrame]], None] | None = None,
    ) -> None:
        """`metrics`: the registry the service exports (no private default: drops and batch sizes
        recorded where nobody reads would go unseen); the detector records its own (stage times,
        detections) in its registry. `count_detections` False: whoever takes the results counts
        detections by class (a camera worker does, off the batching process)."""
        self.detector = detector
        self.count_detections = count_detections
        self.config = config
        self.metrics = metrics
        self.on_result = on_result
        self.on_batch = on_batch
        self.on_copied: Callable[[Sequence[Frame]], None] | None = None
        """`on_copied(frames)`, called in the batch thread once the batch holds the frames'
        pictures, instead of releasing them from the event loop frame by frame."""
        self.stats = BatcherStats()
        self._clock = clock
        self._slots = LatestSlots()
        self._cameras: dict[str, CameraActivity] = {}
        self._streams: dict[str, list[ResultStream]] = {}
        self._wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()
        """Cameras with a frame in a running batch."""
        self.max_batch = max(1, int(getattr(detector, "max_batch", 1)))
        self.workers = max(1, int(getattr(detector, "workers", 1)))
        if not detector.is_dynamic_batch:
            log.info(
                "detector model has a frozen batch of 1: running one frame per batch; "
                "make it dynamic with `edge model prepare IN.onnx OUT.onnx`"
            )

    # ---- input side (event loop thread) ----

    def submit(self, frame: Frame) -> None:
        """Offer a camera's newest frame; a frame of that camera still pending is superseded.

        A camera that sends frames counts as streaming again, whatever `set_streaming` said."""
        now = self._clock()
        self.stats.submitted += 1
        cam = self._cameras.setdefault(frame.camera_id, CameraActivity())
        cam.enabled = True
        cam.record_submit(now)
        old = self._slots.put(frame, now)
        if old is not None:
            self._count_drop(old.camera_id, DropReason.SUPERSEDED)
            release(old)
        self._wake.set()

    def set_streaming(self, camera_id: str, streaming: bool, fps: float | None = None) -> None:
        """Tell the batcher a camera's state and rate: a camera marked off is not waited for
        (until it sends a frame again); `fps` sets the default deadline."""
        cam = self._cameras.setdefault(camera_id, CameraActivity())
        cam.enabled = streaming
        if fps is not None and fps > 0:
            cam.fps = fps
        self._wake.set()

    async def feed(self, source: FrameSource) -> None:
        """Submit every frame `source` yields until it ends (one task per camera)."""
        camera_id, fps = source.camera_id, None
        try:
            async for frame in source.frames():
                if source.source_fps != fps:
                    fps = source.source_fps
                    self.set_streaming(camera_id, True, fps)
                self.submit(frame)
        finally:
            self.set_streaming(camera_id, False)

    def streaming_cameras(self) -> list[str]:
        now = self._clock()
        return [c for c, a in self._cameras.items() if a.is_streaming(now, self.config.stale_s)]

    def capacity(self) -> int:
        """Frames that make the next batch full: its share of the streaming cameras that have no
        frame in a running batch."""
        return self._policy()[0]

    def deadline_s(self) -> float:
        return self._policy()[1]

    def _policy(self) -> tuple[int, float]:
        """(capacity, deadline_s) in one pass over the cameras (it runs once or twice a batch)."""
        now, stale_s, busy = self._clock(), self.config.stale_s, self._busy
        idle, rates = 0, []
        for camera_id, activity in self._cameras.items():
            if activity.is_streaming(now, stale_s):
                rates.append(activity.rate())
                idle += camera_id not in busy
        free = max(1, self.workers - len(self._running))
        capacity = batch_capacity(idle, self.max_batch, self.detector.is_dynamic_batch, free)
        return capacity, batch_deadline_s(rates, self.config.deadline_ms)

    @property
    def in_flight(self) -> int:
        """Frames in running batches (one per busy camera)."""
        return len(self._busy)

    @property
    def pending(self) -> int:
        """Frames waiting for a batch (never more than one per camera)."""
        return len(self._slots)

    # ---- output side ----

    def subscribe(self, camera_id: str, maxsize: int = RESULT_QUEUE_SIZE) -> ResultStream:
        """Results of one camera from now on, in order; iterate with `async for`."""
        stream = ResultStream(self, camera_id, maxsize)
        self._streams.setdefault(camera_id, []).append(stream)
        return stream

    def _unsubscribe(self, stream: ResultStream) -> None:
        streams = self._streams.get(stream.camera_id, [])
        if stream in streams:
            streams.remove(stream)

    # ---- lifecycle ----

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="edge-batcher")

    async def stop(self) -> None:
        """Stop batching, let the batches in flight finish, end every result stream.

        A batch already handed to a worker thread cannot be interrupted, so its results are
        delivered rather than thrown away. Frames still pending and results still queued for a
        subscriber are dropped and counted (reason "shutdown"): after `stop()` every frame
        submitted was inferred or counted as dropped, and every result reached its subscribers or
        was counted."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._busy.clear()
        for frame in self._slots.pop_all():
            self._count_drop(frame.camera_id, DropReason.SHUTDOWN)
            release(frame)
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None
        for streams in list(self._streams.values()):
            for s in list(streams):
                for _ in range(s.discard()):
                    self._count_drop(s.camera_id, DropReason.SHUTDOWN)
                s.close()

    async def __aenter__(self) -> Batcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Form batches and start them on free workers until cancelled.

        Run it through `start()`, or as a task of your own (`stop()` then cancels it too)."""
        self._loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="edge-infer")
        if self._task is None:
            self._task = asyncio.current_task()
        while True:
            capacity = await self._wait_until_ready()
            batch = self._take_batch(capacity)
            if batch:
                cameras = [p.frame.camera_id for p in batch]
                self._busy.update(cameras)
                task = asyncio.create_task(self._run_batch(batch, capacity, self._executor))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _run_batch(
        self, batch: list[Pending], capacity: int, executor: ThreadPoolExecutor
    ) -> None:
        cameras = [p.frame.camera_id for p in batch]
        started = self._clock()
        outcome: list[Detections | None] | None = None
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(executor, self._infer, [p.frame for p in batch])
        except asyncio.CancelledError:  # only when the loop tears down without stop()
            for p in batch:
                self._count_drop(p.frame.camera_id, DropReason.SHUTDOWN)
                release(p.frame)
            raise
        except Exception:
            log.exception("inference failed for cameras %s", cameras)
        finally:
            # The worker is free and the cameras may be batched again. Nothing awaits between
            # here and the delivery below, so no later frame of theirs can overtake these.
            self._running.discard(asyncio.current_task())
            self._busy.difference_update(cameras)
            self._wake.set()
        if outcome is None:
            for p in batch:
                self._count_drop(p.frame.camera_id, DropReason.ERROR)
                release(p.frame)
        else:
            self._deliver(batch, started, capacity, outcome)

    async def _wait_until_ready(self) -> int:
        """Return the batch's capacity when a worker is free and the pending frames of idle
        cameras fill a batch, or the oldest of them has waited one deadline."""
        while True:
            since = self._slots.oldest_waiting_since(self._busy)
            if since is not None and len(self._running) < self.workers:
                capacity, deadline_s = self._policy()
                if len(self._slots.waiting(self._busy)) >= capacity:
                    return capacity
                remaining = since + deadline_s - self._clock()
                if remaining <= 0:
                    return capacity
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
                continue
            self._wake.clear()
            await self._wake.wait()

    def _take_batch(self, capacity: int) -> list[Pending]:
        """Drop stale frames, then take up to one batch of the idle cameras' frames."""
        now = self._clock()
        for frame in self._slots.pop_stale(now, self.config.stale_s):
            self.stats.stale += 1
            self._count_drop(frame.camera_id, DropReason.STALE)
            release(frame)
        return self._slots.take(capacity, self._busy)

    def _count_drop(self, camera_id: str, reason: DropReason) -> None:
        if reason is DropReason.SUPERSEDED:
            self.stats.superseded += 1
        elif reason is DropReason.QUEUE_FULL:
            self.stats.result_queue_drops += 1
        elif reason is DropReason.ERROR:
            self.stats.errors += 1
        elif reason is DropReason.SHUTDOWN:
            self.stats.shutdown += 1
        self.metrics.count_drop(camera_id, reason)

    # ---- worker thread ----

    def _infer(self, frames: Sequence[Frame]) -> list[Detections | None]:
        """One batch, in the worker thread (see `edge.infer.batch_job`)."""
        return run_batch_job(
            self.detector, frames, self.on_copied, self._loop, self.count_detections
        )

    # ---- delivery (event loop) ----

    def _deliver(
        self,
        batch: list[Pending],
        started: float,
        capacity: int,
        detections: list[Detections | None],
    ) -> None:
        """The batch's results to their cameras. Its stage times and detections were recorded by
        the detector (`Detector.detect_batch`); the batcher counts what is its own: queue wait,
        batch size and fill, frames inferred, FPS."""
        m, done = self.metrics, self._clock()
        for p, d in zip(batch, detections, strict=True):
            release(p.frame)  # its picture was copied into the batch
            if d is None:
                self._count_drop(p.frame.camera_id, DropReason.ERROR)
        n = sum(d is not None for d in detections)
        if not n:
            return
        m.observe_batch(n, capacity)
        self.stats.batches += 1
        self.stats.frames_inferred += n
        self.stats.batch_sizes[n] = self.stats.batch_sizes.get(n, 0) + 1
        results = []
        for pending, dets in zip(batch, detections, strict=True):
            if dets is None:
                continue
            cam = pending.frame.camera_id
            m.observe_stage(cam, "queue_wait", max(0.0, started - pending.submitted_at))
            m.count_inferred(cam)
            m.tick_fps(cam, "inferred")
            result = DetectedFrame(pending.frame, dets, inferred_at=done)
            self._publish(result)
            results.append(result)
        if self.on_batch is not None:
            try:
                self.on_batch(results)
            except Exception:
                cams = [r.frame.camera_id for r in results]
                log.exception("on_batch callback failed for cameras %s", cams)

    def _publish(self, result: DetectedFrame) -> None:
        cam = result.frame.camera_id
        for stream in self._streams.get(cam, []):
            if not stream.push(result):
                self._count_drop(cam, DropReason.QUEUE_FULL)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("camera %s: on_result callback failed", cam)
