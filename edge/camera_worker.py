"""The body of one camera worker process: decode, letterbox into shared memory, track and count.

Part of the service's wiring, like `edge.app` (it joins ingest and track for the cameras a worker
owns); `edge.workers` starts it with the `spawn` method (forking a process that runs threads, ONNX
Runtime and an event loop is unsafe) and talks to it over one pipe:

- worker → service: ("frames", [FrameRef], records, events) once per turn of its event loop that
  put pictures in their slots (one message for the frames of every camera ready at once), and
  ("status", {camera: CameraInfo}, records, events) every `STATUS_S`, and before a frames message
  when a camera's state changed since (the service knows a camera streams before it sees a frame
  of it); records are metric calls
  (`edge.metrics_relay`), merged per series and sent with the status only (a few times a second:
  the service replays them per series, not per frame; counts and crossings arrive together);
  events are the vehicle events for the service's sinks, sent with the next message of any kind.
  For cameras someone watches, ("packets", ...): their annotated pictures, encoded here
  (`edge.worker_video`, which also takes the "watch" and "keyframe" messages).
- service → worker: ("sync", [slot], [Results]): slots the batcher no longer holds and, per batch,
  the detections of this worker's frames in frame order (`pack_results`); ("watch", {camera:
  [codec]}): the cameras someone watches now; ("lines", camera, [LineConfig], display name): the
  camera's new counting lines (a config reload; its tracks go on); ("add", [CameraConfig],
  segment, first slot id, {camera: counts}): start cameras a reload gave this worker, their slots
  in a new segment (`SlotSegments`), beside the running ones; ("remove", camera): stop that camera
  (its tracks end); ("stop",).
- With `ocr.enabled`, each worker schedules its cameras' plate reads and the service reads them:
  "ocr" and "snapshot" messages, `edge.worker_plates`.

A worker that loses the pipe (the service died, even by kill -9) exits: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.connection import Connection
from typing import Any, cast

import numpy as np

from edge.config import CameraConfig, LineConfig
from edge.infer.letterbox import letterbox_frame
from edge.ingest.slots import FrameRef, FreeSlots, SlotArena, SlotSegments
from edge.ingest.source import CameraSource
from edge.metrics import DropReason
from edge.metrics_relay import MetricsRecorder
from edge.publish.encoder import Codec
from edge.track.camera import CameraTracking
from edge.track.events import VehicleEvent
from edge.types import Frame
from edge.worker_messages import CameraInfo, Counts, WorkerSpec, unpack_results
from edge.worker_plates import WorkerPlates
from edge.worker_video import EncodedPacket, WorkerVideo

log = logging.getLogger(__name__)

STATUS_S = 0.2


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Process entry point (spawned)."""
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s %(levelname)s [worker {spec.index}] %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the service decides
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Worker(spec, conn).run())


class _Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec, self.conn = spec, conn
        self.metrics = MetricsRecorder()
        metrics: Any = self.metrics  # records with EdgeMetrics' API
        self.events: list[VehicleEvent] = []
        self.plates = (
            WorkerPlates(spec.ocr, spec.snapshots, self._send, metrics) if spec.ocr else None
        )
        self.video = WorkerVideo(
            spec.cameras, spec.stream, spec.class_names, metrics, self._send_packets
        )
        self.sources: dict[str, CameraSource] = {}
        self.tracking: dict[str, CameraTracking] = {}
        self.since: dict[str, float] = {}
        """Per camera a reload added, when: detections of older frames are of the camera that
        a reload removed under the same id (restarted here), not of this one."""
        self.changing = asyncio.Lock()
        """Cameras are added and removed one reload message at a time, in their order."""
        self.slots = SlotSegments()
        arena = SlotArena(spec.shm_name, len(spec.cameras), spec.slots_per_camera,
                          spec.letterbox.size, create=False)  # fmt: skip
        self.free = FreeSlots(self.slots.add(arena, [c.id for c in spec.cameras]))
        for c in spec.cameras:
            self._setup(c, spec.counts.get(c.id))
        self.sizes: dict[str, tuple[int, int]] = {}
        self.ready: list[FrameRef] = []
        self.watched: set[str] = set()
        self.watching: dict[str, Sequence[Codec]] = {}
        """The last "watch" message: camera → its viewers' codecs."""
        self.pictures: dict[str, dict[int, Frame]] = {}
        """Frames waiting for their detections (at most one per slot): watched cameras' for the
        viewers, every camera's when plates are read (their crops are cut after tracking)."""
        self.held: dict[str, Frame] = {}
        """Per camera, the newest decoded frame not yet letterboxed: it waits while the batcher
        holds a picture of the camera that no batch has copied yet, so that a frame that would
        only supersede it there is never converted (latest-only before the work, not after)."""
        self.reported: dict[str, str] = {}
        """Each camera's state as the last status told the service."""
        self.stopped = asyncio.Event()
        self.feeds: dict[str, asyncio.Task[None]] = {}
        self._changes: set[asyncio.Task[None]] = set()

    def _setup(self, cam: CameraConfig, counts: Counts | None) -> None:
        """A camera's source, tracking (from `counts`), plates and video (not started)."""
        spec, metrics = self.spec, cast(Any, self.metrics)  # records with EdgeMetrics' API
        self.sources[cam.id] = CameraSource(
            cam, spec.ingest, metrics, realtime=cam.realtime, loop=cam.loop
        )
        tracking = CameraTracking(
            cam.id, spec.tracker, cam.lines, spec.class_names, emit=self.events.append,
            metrics=metrics, **(self.plates.add(cam.id) if self.plates else {}),
        )  # fmt: skip
        self.tracking[cam.id] = tracking
        if self.plates is not None:
            self.plates.follow({cam.id: tracking})
        if counts:
            _resume_counts(tracking, counts)
        self.video.add(cam)

    async def _start(self, cam: str) -> None:
        source = self.sources[cam]
        await source.start()
        self.feeds[cam] = asyncio.create_task(self._feed(source))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_readable)
        tasks = self.feeds
        for cam in list(self.sources):
            await self._start(cam)
        status = asyncio.create_task(self._status_loop())
        try:
            await self.stopped.wait()
        finally:
            stopping = time.monotonic()
            status.cancel()
            for source in self.sources.values():
                with contextlib.suppress(Exception):
                    await source.stop()
            for t in tasks.values():
                t.cancel()
            for frame in self.held.values():
                self.metrics.count_drop(frame.camera_id, DropReason.SHUTDOWN)
            self.held.clear()
            if self.plates is not None:  # their answers come through the pipe: still read
                await self.plates.drain(since=stopping)
            loop.remove_reader(self.conn.fileno())
            for tracking in self.tracking.values():
                tracking.finish()
            await self.video.aclose()
            with contextlib.suppress(OSError):
                self._send_status()
                self.conn.send(("bye",))

    async def _feed(self, source: CameraSource) -> None:
        async for frame in source.frames():
            self._guarded(self._on_frame, frame)

    def _guarded(self, step: Callable[[Frame], None], frame: Frame) -> None:
        """A frame that fails to prepare is logged and counted as dropped; the camera goes on."""
        try:
            step(frame)
        except Exception:
            log.exception("camera %s: preparing frame %d failed", frame.camera_id, frame.seq)
            self.metrics.count_drop(frame.camera_id, DropReason.ERROR)

    def _on_frame(self, frame: Frame) -> None:
        cam = frame.camera_id
        if self.free.free_count(cam) < self.spec.slots_per_camera:  # the batcher has one waiting
            if self.held.pop(cam, None) is not None:
                self.metrics.count_drop(cam, DropReason.SUPERSEDED)
            self.held[cam] = frame
            return
        self._prepare(frame)

    def _prepare(self, frame: Frame) -> None:
        cam, spec = frame.camera_id, self.spec
        slot = self.free.take(cam)
        assert slot is not None
        start = time.perf_counter()
        self.sizes[cam] = (frame.width, frame.height)
        lb = spec.letterbox.fit(frame.width, frame.height)
        arena = self.slots.get(slot)
        assert arena is not None
        out = arena.view(slot, lb.in_h, lb.in_w)
        letterbox_frame(frame.image, spec.letterbox, out=out)
        self.metrics.observe_stage(cam, "preprocess", time.perf_counter() - start)
        if cam in self.watched or self.plates is not None:
            self.pictures.setdefault(cam, {})[frame.seq] = frame
        self.ready.append(FrameRef.of(cam, slot, frame.seq, frame.pts, frame.received_at, lb))
        if len(self.ready) == 1:
            asyncio.get_running_loop().call_soon(self._send_frames)

    def _send_frames(self) -> None:
        if any(self.reported.get(c) != str(s.state) for c, s in self.sources.items()):
            self._send_status()  # the service knows a camera streams before its first frame
        ready = self.ready[:]
        self.ready.clear()
        self._send(("frames", ready, [], self._take_events()))

    def _send_packets(self, packets: list[EncodedPacket]) -> None:
        self._send(("packets", packets, [], self._take_events()))

    def _take_events(self) -> list[VehicleEvent]:
        out = self.events[:]
        del self.events[: len(out)]
        return out

    def _send(self, msg: tuple[Any, ...]) -> None:
        try:
            self.conn.send(msg)
        except (OSError, EOFError):  # the service is gone
            self.stopped.set()

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                self._handle(self.conn.recv())
        except (OSError, EOFError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            if self.plates is not None:  # no answer will come
                self.plates.pool.abandon()
            self.stopped.set()

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "sync":
            now = time.monotonic()
            frames = [f for results in msg[2] for f in unpack_results(results)]
            for cam, seq, received_at, dets in frames:
                tracking = self.tracking.get(cam)
                if tracking is None or received_at < self.since.get(cam, 0.0):
                    continue  # removed (or restarted) by a reload while this frame was inferred
                self._count_detections(cam, dets.class_id)
                tracked = tracking.update(dets, frame=seq)
                picture = self._picture(cam, seq)
                if self.plates is not None:
                    self.plates.tracked(cam, picture, tracked)
                if picture is not None:
                    if self.plates is not None and cam in self.watched:
                        self.video.set_plates(cam, self.plates.texts(cam))
                    self.video.publish(cam, picture, tracked.tracks, tracking.counts)
                self.metrics.observe_end_to_end(cam, now - received_at)
            for slot in msg[1]:
                self.free.give_back(slot)
            for cam in list(self.held):
                if self.free.free_count(cam) == self.spec.slots_per_camera:
                    self._guarded(self._prepare, self.held.pop(cam))
        elif kind == "watch":
            self.watching, self.watched = msg[1], set(msg[1])
            for cam in list(self.pictures):
                if cam not in self.watched and self.plates is None:
                    del self.pictures[cam]
            self.video.watch(msg[1])
        elif kind == "keyframe":
            self.video.request_keyframe(msg[1], msg[2])
        elif kind == "lines":  # after the cameras added and removed before
            self._change(self._set_lines(msg[1], msg[2], msg[3]))
        elif kind == "ocr" and self.plates is not None:
            self.plates.answer(msg[1], msg[2])
        elif kind == "add":
            self._change(self._add(msg[1], msg[2], msg[3], msg[4]))
        elif kind == "remove":
            self._change(self._remove(msg[1]))
        elif kind == "stop":
            self.stopped.set()

    def _change(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a reload's step after the ones before it; one that fails is logged, the others
        and the running cameras go on."""

        async def in_turn() -> None:
            async with self.changing:
                try:
                    await step
                except Exception:
                    log.exception("a config reload's change failed")

        task = asyncio.get_running_loop().create_task(in_turn())
        self._changes.add(task)
        task.add_done_callback(self._changes.discard)

    async def _set_lines(self, cam: str, lines: list[LineConfig], name: str) -> None:
        tracking = self.tracking.get(cam)
        if tracking is not None:
            tracking.set_lines(lines)
            self.video.set_lines(cam, lines, name)

    async def _add(
        self, cams: list[CameraConfig], shm_name: str, base: int, counts: dict[str, Counts]
    ) -> None:
        """Start cameras a reload gave this worker, their slots in a segment of their own; the
        other cameras go on."""
        spec = self.spec
        try:
            arena = SlotArena(shm_name, len(cams), spec.slots_per_camera, spec.letterbox.size,
                              create=False, base=base)  # fmt: skip
        except FileNotFoundError:  # a reload removed them again before they started
            log.info("cameras %s: removed before they started", ", ".join(c.id for c in cams))
            return
        self.free.add(self.slots.add(arena, [c.id for c in cams]))
        now = time.monotonic()
        for c in cams:
            self.since[c.id] = now
            self._setup(c, counts.get(c.id))
        for c in cams:
            await self._start(c.id)
        if any(c.id in self.watching for c in cams):  # watched before they were added here
            self.video.watch(self.watching)

    async def _remove(self, cam: str) -> None:
        """Stop one camera (a config reload); its tracks end now. Its segment, once none of its
        cameras is left, is unmapped as this returns: nothing else here holds it (views of a
        slot live only while `_prepare` writes them)."""
        self.free.remove(cam)
        self.slots.remove_camera(cam)
        source, feed = self.sources.pop(cam, None), self.feeds.pop(cam, None)
        if feed is not None:
            feed.cancel()
        self.held.pop(cam, None)
        self.pictures.pop(cam, None)
        self.sizes.pop(cam, None)
        self.since.pop(cam, None)
        self.watched.discard(cam)
        self.video.remove(cam)
        tracking = self.tracking.pop(cam, None)
        if self.plates is not None:
            await self.plates.drain([cam])
        if tracking is not None:
            tracking.finish()
        if self.plates is not None:
            self.plates.remove(cam)
        if source is not None:
            with contextlib.suppress(Exception):
                await source.stop()

    def _picture(self, cam: str, seq: int) -> Frame | None:
        """The camera's kept frame `seq` (see `pictures`), forgetting older ones (dropped in the
        batcher)."""
        waiting = self.pictures.get(cam)
        if not waiting:
            return None
        for old in [s for s in waiting if s < seq]:
            del waiting[old]
        return waiting.pop(seq, None)

    def _count_detections(self, cam: str, class_id: np.ndarray) -> None:
        """`EdgeMetrics.count_detections`, done here so that the service replays a merged sum."""
        if not len(class_id):
            return
        names = self.spec.class_names
        ids, counts = np.unique(class_id, return_counts=True)
        for cid, n in zip(ids.tolist(), counts.tolist(), strict=True):
            name = names[cid] if 0 <= cid < len(names) else str(cid)
            self.metrics.detections.labels(camera=cam, **{"class": name}).inc(n)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_S)
            self._send_status()

    def _send_status(self) -> None:
        info = {
            cam: CameraInfo(
                str(src.state),
                src.source_fps,
                src.last_error,
                src.last_error_at,
                self.tracking[cam].counts,
                self.sizes.get(cam),
            )  # fmt: skip
            for cam, src in self.sources.items()
        }
        self.reported = {cam: i.state for cam, i in info.items()}
        self._send(("status", info, self.metrics.take(), self._take_events()))


def _resume_counts(tracking: CameraTracking, counts: Counts) -> None:
    """Start a camera's line counts from `counts` (of the lines it still has)."""
    for line, per_class in counts.items():
        if line in tracking.counts:
            tracking.counts[line] = {cls: dict(dirs) for cls, dirs in per_class.items()}
