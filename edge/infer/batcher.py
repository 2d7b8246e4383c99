"""Cross-camera micro-batching in front of the one detector session.

Why: ONNX Runtime is much faster per image on a batch than on single images, but cameras must never
wait on each other. So the batcher keeps only the *latest* frame of each camera (a newer frame
supersedes the pending one), runs a batch as soon as every streaming camera has a frame (capped by
`max_batch`) or when the oldest pending frame has waited one deadline (by default one frame
interval of the fastest camera), and drops frames that got too old instead of queueing them. A
slow or dead camera therefore costs the others at most one deadline, and memory is bounded by one
pending frame per camera plus the small per-subscriber result queues.

Batches are formed and run by batch threads, not by the event loop: `detector.workers` threads
(one per CPU core on a CPU, where single-threaded batches side by side beat one batch spread over
every core; two on a GPU, where one prepares its frames while the other runs), each waiting until
a batch is due, then preprocessing, inferring and postprocessing it and recording its metrics. The
event loop only submits frames (a lock and a notify): per batch it is not woken at all unless
someone on it takes results (subscribers, `on_result`, `on_batch`), then once. The pending cameras
are shared out over the free threads. A camera never has two frames in running batches, and a
batch's results are handed on before its cameras can be batched again, so results reach each
camera in frame order.

Results are handed on in these ways, all optional:
- `subscribe(camera_id)`: an async iterator of `DetectedFrame` with a bounded latest-only queue; a
  subscriber that falls behind loses its oldest results (counted as reason "queue_full").
- `on_result`: a callback called on the event loop for every result, in order; it must be quick;
- `on_batch`: the same for the results of a batch at once (one call per batch);
- `on_inferred`: a batch's frames and detections in its batch thread (a worker process's frames
  go back to it from there).

`stop()` loses nothing silently: the batches in flight finish and deliver, and the frames still
waiting for a batch and the results no subscriber took are counted as dropped (reason
"shutdown"), so that every frame submitted ends up inferred or counted, stopped or not.

Frames prepared elsewhere (a worker process's letterboxed picture in shared memory) carry
`prepared()` and `release()`: how a batch thread runs them and gives their pictures back lives in
`edge.infer.batch_job`.

Call `submit` and `set_streaming` from the event loop's thread (a superseded frame is released
there). The pure policy (deadline, capacity, latest-only slots, camera liveness) lives in
`edge.infer.batch_policy`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from edge.config import DetectorConfig
from edge.infer.batch_job import BatchDetector, release, release_all, run_batch_job
from edge.infer.batch_policy import BatcherStats, BatchQueue, Pending
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
        self.on_inferred: Callable[[Sequence[Frame], list[Detections | None]], None] | None = None
        """`on_inferred(frames, detections)`, called in the batch thread once the batch's
        detections exist (None where a picture could not be prepared), before the batcher's
        metrics are recorded and its results handed on."""
        self.stats = BatcherStats()
        self._clock = clock
        self._streams: dict[str, list[ResultStream]] = {}
        self._cond = threading.Condition()
        """Guards the queue and the stats (the event loop submits, the batch threads take)."""
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.max_batch = max(1, int(getattr(detector, "max_batch", 1)))
        self.workers = max(1, int(getattr(detector, "workers", 1)))
        self._queue = BatchQueue(
            self.max_batch, self.workers, detector.is_dynamic_batch, config.stale_s,
            config.deadline_ms,
        )  # fmt: skip
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
        with self._cond:
            self.stats.submitted += 1
            old = self._queue.offer(frame, now)
            if old is not None:
                self._count_drop(old.camera_id, DropReason.SUPERSEDED)
            self._cond.notify()
        if old is not None:
            release(old)

    def set_streaming(self, camera_id: str, streaming: bool, fps: float | None = None) -> None:
        """Tell the batcher a camera's state and rate: a camera marked off is not waited for
        (until it sends a frame again); `fps` sets the default deadline."""
        with self._cond:
            self._queue.set_streaming(camera_id, streaming, fps)
            self._cond.notify_all()

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
        with self._cond:
            return self._queue.streaming(self._clock())

    def capacity(self) -> int:
        """Frames that make the next batch full: its share of the streaming cameras that have no
        frame in a running batch."""
        with self._cond:
            return self._queue.policy(self._clock())[0]

    def deadline_s(self) -> float:
        with self._cond:
            return self._queue.policy(self._clock())[1]

    def accounting(self) -> tuple[BatcherStats, int, int]:
        """A consistent copy of (stats, frames pending, frames in running batches): the batch
        threads change them together under the lock."""
        with self._cond:
            stats = replace(self.stats, batch_sizes=dict(self.stats.batch_sizes))
            return stats, len(self._queue.slots), len(self._queue.busy)

    @property
    def in_flight(self) -> int:
        """Frames in running batches (one per busy camera)."""
        return len(self._queue.busy)

    @property
    def pending(self) -> int:
        """Frames waiting for a batch (never more than one per camera)."""
        return len(self._queue.slots)

    @property
    def running(self) -> int:
        """Batches being run."""
        return self._queue.running

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

        A batch already in a batch thread cannot be interrupted, so its results are delivered
        rather than thrown away. Frames still pending and results still queued for a subscriber
        are dropped and counted (reason "shutdown"): after `stop()` every frame submitted was
        inferred or counted as dropped, and every result reached its subscribers or was
        counted."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        threads, self._threads = self._threads, []
        for t in threads:  # each finishes its batch, whose results are queued on the loop first
            await asyncio.to_thread(t.join)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with self._cond:
            left = self._queue.pop_all()
        for frame in left:
            self._count_drop(frame.camera_id, DropReason.SHUTDOWN)
            release(frame)
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
        """Start the batch threads and wait until cancelled (they run until `stop()`).

        Run it through `start()`, or as a task of your own (`stop()` then cancels it too)."""
        self._loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = asyncio.current_task()
        if not self._threads and not self._stopping:
            self._threads = [
                threading.Thread(target=self._batch_thread, name=f"edge-infer_{i}", daemon=True)
                for i in range(self.workers)
            ]
            for t in self._threads:
                t.start()
        await asyncio.Future()  # until cancelled

    # ---- batch threads ----

    def _batch_thread(self) -> None:
        while True:
            with self._cond:
                due = self._next_batch()
                if due is None:
                    return
                batch, capacity = due
                cameras = [p.frame.camera_id for p in batch]
            frames = [p.frame for p in batch]
            started = self._clock()
            results: list[DetectedFrame] = []
            try:
                outcome = self._infer(frames)
                results = self._record(batch, started, capacity, outcome)
                failed = [f for f, d in zip(frames, outcome, strict=True) if d is None]
            except Exception:
                log.exception("inference failed for cameras %s", cameras)
                failed = frames
            with self._cond:
                # One step for the counts (every frame is inferred, dropped, pending or running
                # whenever the lock is free), and the results handed on before these cameras may
                # be batched again: no later frame of theirs can overtake them.
                self._count_batch(len(results), failed)
                if results and (self.on_result or self.on_batch or self._streams):
                    self._on_loop(self._publish_batch, results)
                if failed:  # the others' pictures were released once copied into the batch
                    self._on_loop(release_all, failed)
                self._queue.finish(cameras)
                self._cond.notify_all()

    def _next_batch(self) -> tuple[list[Pending], int] | None:
        """With the lock held: wait until a batch is due (`BatchQueue.due`) and take it, its
        cameras now running; None once stopping."""
        while not self._stopping:
            capacity, wait_s = self._queue.due(self._clock())
            if wait_s is None or wait_s > 0:
                self._cond.wait(wait_s)
                continue
            batch, stale = self._queue.take(capacity, self._clock())
            for frame in stale:
                self.stats.stale += 1
                self._count_drop(frame.camera_id, DropReason.STALE)
            if stale:
                self._on_loop(release_all, stale)
            if batch:
                return batch, capacity
        return None

    def _on_loop(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the event loop (what touches asyncio or a worker's slot list)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _count_drop(self, camera_id: str, reason: DropReason) -> None:
        with self._cond:
            if reason is DropReason.SUPERSEDED:
                self.stats.superseded += 1
            elif reason is DropReason.QUEUE_FULL:
                self.stats.result_queue_drops += 1
            elif reason is DropReason.ERROR:
                self.stats.errors += 1
            elif reason is DropReason.SHUTDOWN:
                self.stats.shutdown += 1
        self.metrics.count_drop(camera_id, reason)

    # ---- in a batch thread ----

    def _infer(self, frames: Sequence[Frame]) -> list[Detections | None]:
        """One batch (see `edge.infer.batch_job`; the detector records its metrics), then
        `on_inferred`."""
        outcome = run_batch_job(
            self.detector, frames, self.on_copied, self._loop, self.count_detections
        )
        if self.on_inferred is not None:
            try:
                self.on_inferred(frames, outcome)
            except Exception:
                log.exception("on_inferred callback failed")
        return outcome

    def _record(
        self,
        batch: list[Pending],
        started: float,
        capacity: int,
        detections: list[Detections | None],
    ) -> list[DetectedFrame]:
        """Record the batcher's own metrics of the batch (here, not on the event loop: queue
        wait, batch size and fill, frames inferred, FPS; its stage times and detections are the
        detector's, recorded by `Detector.detect_batch`); its results."""
        m, done = self.metrics, self._clock()
        n = sum(d is not None for d in detections)
        if not n:
            return []
        m.observe_batch(n, capacity)
        results = []
        for pending, dets in zip(batch, detections, strict=True):
            if dets is None:
                continue
            cam = pending.frame.camera_id
            m.observe_stage(cam, "queue_wait", max(0.0, started - pending.submitted_at))
            m.count_inferred(cam)
            m.tick_fps(cam, "inferred")
            results.append(DetectedFrame(pending.frame, dets, inferred_at=done))
        return results

    def _count_batch(self, inferred: int, failed: Sequence[Frame]) -> None:
        """With the lock held."""
        for frame in failed:
            self._count_drop(frame.camera_id, DropReason.ERROR)
        if inferred:
            self.stats.batches += 1
            self.stats.frames_inferred += inferred
            self.stats.batch_sizes[inferred] = self.stats.batch_sizes.get(inferred, 0) + 1

    # ---- delivery (event loop) ----

    def _publish_batch(self, results: list[DetectedFrame]) -> None:
        for result in results:
            self._publish(result)
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
