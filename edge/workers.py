"""The service's side of the camera worker processes (`ingest.processes` ≥ 1).

Part of the wiring, like `edge.app`: the cameras are shared out over worker processes
(`edge.camera_worker`) that decode, letterbox into shared memory and track; this process keeps the
one detector session and the batcher, and its per-frame work stays small: a descriptor in (the
event loop), one copy into the batch, and per batch one message back to each worker with its
frames' slots and one with their detections, sent by the batch thread itself; the workers' metric
records come merged per series a few times a second. Watched cameras
are annotated and encoded in their workers (`edge.worker_video`): the pool tells a worker at once
which codecs its cameras' viewers take and when one needs a keyframe (it is the publishers'
`RemoteEncoding`), and hands the packets that come back to the cameras' fan-outs.

A config reload's cameras join the running workers without stopping their other cameras: an
added camera goes to the worker with the fewest (a new worker only while fewer than
`ingest.processes` run), in a shared-memory segment of its own that the worker maps; a removed
one stops in its worker, which unmaps its segment once no camera is left in it, and a worker left
with no camera stops.

A worker that dies (kill -9, a decoder's segfault, an OOM kill) is restarted with backoff, all its
cameras in one fresh segment; they resume from a fresh connection and from the line counts the
dead worker reported last (their tracks start afresh); the other workers' cameras never wait for
it (the batcher stops waiting for cameras that send nothing). This process unlinks every segment
(a dead worker's at once, all at `stop()`); a mapping goes when the last frame viewing it has
left the batcher. What the service keeps of each worker, and the frames that view its slots:
`edge.worker_handle`. With plates on, the workers schedule the reads and this process reads them
on its one OCR pool and writes the snapshots: `edge.worker_plates`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from edge.camera_worker import worker_main
from edge.config import CameraConfig, EdgeConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.ingest.slots import SlotArena, SlotSegments, remove_stale, segment_name
from edge.ingest.state import CameraState
from edge.metrics import EdgeMetrics
from edge.metrics_relay import MetricsReplayer
from edge.plate_runtime import PlateRuntime
from edge.track.events import VehicleEvent
from edge.worker_handle import SlotFrame, WorkerHandle, WorkerSender, return_slots, send_results
from edge.worker_messages import CameraInfo, WorkerSpec
from edge.worker_placement import place_cameras, resolve_processes
from edge.worker_plates import PlateRelay
from edge.worker_video import EncodedPacket

log = logging.getLogger(__name__)

STOP_WAIT_S = 5.0
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
WATCH_CHECK_S = 0.2
"""How often the workers are told again which of their cameras someone watches (a change is
told at once, by `watch_changed`; this catches a worker that restarted)."""
HEALTHY_S = 30.0
"""A worker that lived this long starts its restart backoff from the shortest delay again."""


class WorkerPool:
    """Starts, feeds from and restarts the camera workers (see module doc)."""

    def __init__(
        self,
        config: EdgeConfig,
        processes: int,
        detector: Detector,
        batcher: Batcher,
        metrics: EdgeMetrics,
        emit: Callable[[VehicleEvent], None],
        deliver: Callable[[EncodedPacket], None] | None = None,
        watched: Callable[[str], Collection[str]] | None = None,
        plates: PlateRuntime | None = None,
    ) -> None:
        """`deliver(packet)`: a packet a worker encoded for a watched camera, for its viewers;
        `watched(camera)`: the codecs its viewers take now (none: nobody watches); `plates`: the
        started OCR pool and snapshot writer, when plates are read."""
        self.config, self.detector, self.batcher, self.metrics = config, detector, batcher, metrics
        self.emit, self.deliver, self.watched = emit, deliver, watched
        self.replayer = MetricsReplayer(metrics)
        self.plates = None
        if plates is not None and plates.pool is not None:
            self.plates = PlateRelay(plates.pool, plates.reader.read, plates.snapshots)
        cams = config.enabled_cameras
        self.workers: list[WorkerHandle] = []
        self._next_index = 0
        """The next worker's index: one never used before (logs, metrics, segments)."""
        for i in range(processes):
            if cams[i::processes]:
                self._new_worker(tuple(cams[i::processes]))
        self.owner = {c.id: w for w in self.workers for c in w.cameras}
        self.info: dict[str, CameraInfo] = {}
        self._ctx = mp.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._watch_checked = 0.0
        self._stopping = False
        self._restarts: set[asyncio.Task[None]] = set()
        batcher.on_inferred = partial(send_results, self.owner, metrics)
        batcher.on_copied = return_slots

    # ---- lifecycle ----

    def _new_worker(self, cameras: tuple[CameraConfig, ...]) -> WorkerHandle:
        w = WorkerHandle(self._next_index, cameras)
        self._next_index += 1
        w.on_release = self._schedule_flush  # a freed slot: the camera's next frame may come
        self.workers.append(w)
        return w

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        remove_stale()
        for w in self.workers:
            self._spawn(w)

    def _spawn(self, w: WorkerHandle) -> None:
        w.generation += 1
        spec_cfg, d = self.config, self.detector
        w.slots = SlotSegments()
        name = self._new_segment(w, w.cameras)  # all of them, also those reloads added
        spec = WorkerSpec(
            index=w.index, generation=w.generation, shm_name=name, cameras=w.cameras,
            ingest=spec_cfg.ingest, tracker=spec_cfg.tracker, class_names=tuple(d.class_names),
            letterbox=replace(d.letterbox, unit_scale=False, uint8=True),
            slots_per_camera=spec_cfg.ingest.slots_per_camera,
            log_level=logging.getLogger().getEffectiveLevel(),
            counts={c.id: self.info[c.id].counts for c in w.cameras if c.id in self.info},
            stream=spec_cfg.stream,
            ocr=spec_cfg.ocr if self.plates is not None else None,
            snapshots=self.plates is not None and self.plates.snapshots is not None,
        )  # fmt: skip
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=worker_main, args=(spec, child), name=f"edge-worker-{w.index}", daemon=True
        )
        proc.start()
        child.close()
        w.process, w.conn, w.started_at = proc, parent, time.monotonic()
        w.sender = WorkerSender(parent, f"edge-send-{w.index}")
        w.releases.clear()
        w.watched = {}
        assert self._loop is not None
        self._loop.add_reader(parent.fileno(), self._on_readable, w)
        log.info(
            "worker %d (pid %d): cameras %s", w.index, proc.pid, ", ".join(c.id for c in w.cameras)
        )

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self._restarts):
            t.cancel()
        for w in self.workers:
            self._flush_worker(w)
            if w.sender is not None:
                w.sender.send(("stop",))
        deadline = time.monotonic() + STOP_WAIT_S
        for w in self.workers:
            if w.process is not None:
                await self._end(w, deadline)

    async def _end(self, w: WorkerHandle, deadline: float) -> None:
        """Wait until `deadline` for a worker told to stop, kill it past that, then read what it
        still said and forget it."""
        proc = w.process
        while proc is not None and proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc is not None and proc.is_alive():
            log.warning("worker %d did not stop in %.0f s; killing it", w.index, STOP_WAIT_S)
            proc.kill()
            await asyncio.to_thread(proc.join, 2.0)
        self._drain(w)
        self._retire(w)

    def _drain(self, w: WorkerHandle) -> None:
        """Read what a stopping worker still said (its last status, events and metrics)."""
        conn = w.conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            while conn.poll():
                self._handle(w, conn.recv())

    def _retire(self, w: WorkerHandle) -> None:
        """Forget a worker's process, pipe and segments (unlinked now, unmapped when unused)."""
        if w.sender is not None:
            w.sender.close()
            w.sender = None
        if w.conn is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(w.conn.fileno())
            w.conn.close()
        w.conn = None
        if w.process is not None:
            with contextlib.suppress(Exception):
                w.process.join(0)
                w.process.close()
        w.process = None
        for arena in w.slots.arenas:
            arena.unlink()
        w.slots = SlotSegments()

    # ---- worker → service ----

    def _on_readable(self, w: WorkerHandle) -> None:
        """One message per call: the loop calls again while more wait (`conn.poll()` would build
        a selector per call, costlier than the message)."""
        conn = w.conn
        if conn is None:
            return
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self._on_death(w)
            return
        self._handle(w, msg)

    def _handle(self, w: WorkerHandle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "bye":
            return
        records, events = msg[2], msg[3]
        if records:
            self.replayer.replay(records)
        for ev in events:
            self.emit(ev)
        if kind == "frames":
            submit, slots = self.batcher.submit, w.slots
            for ref in msg[1]:
                arena = slots.get(ref.slot)
                if arena is not None:  # else a reload removed its camera since
                    submit(SlotFrame(ref, w, arena))  # type: ignore[arg-type]
        elif kind == "packets" and self.deliver is not None:
            for packet in msg[1]:
                if self.owner.get(packet[0]) is w:  # else removed (or moved) by a reload since
                    self.deliver(packet)
        elif kind in ("ocr", "snapshot") and self.plates is not None:
            self.plates.handle(kind, msg[1], w)
        elif kind == "status":
            for cam, info in msg[1].items():
                if self.owner.get(cam) is not w:  # removed (or moved) by a reload since
                    continue
                if info.state == "streaming" and self.info.get(cam, info).state != "streaming":
                    self.batcher.set_streaming(cam, True, info.source_fps)
                self.info[cam] = info

    def _on_death(self, w: WorkerHandle) -> None:
        if self._stopping or w.retiring or w.process is None:
            return
        proc = w.process
        proc.join(1.0)
        code = proc.exitcode
        cams = ", ".join(c.id for c in w.cameras)
        lived = time.monotonic() - w.started_at
        w.failures = 1 if lived > HEALTHY_S else w.failures + 1
        delay = RESTART_DELAYS_S[min(w.failures, len(RESTART_DELAYS_S)) - 1]
        log.error(
            "worker %d (pid %s) died (exit code %s) with cameras %s; restarting in %.1f s",
            w.index, proc.pid, code, cams, delay,
        )  # fmt: skip
        self.metrics.worker_restarts.labels(worker=str(w.index)).inc()
        for c in w.cameras:
            self.batcher.set_streaming(c.id, False)
            self.metrics.encoders_active.labels(camera=c.id).set(0)  # they died with it
            self.metrics.set_camera_state(c.id, CameraState.BACKOFF)
            old = self.info.get(c.id)
            if old is not None:
                self.info[c.id] = CameraInfo("backoff", old.source_fps, f"worker died ({code})",
                                             time.time(), old.counts, old.size)  # fmt: skip
        self._retire(w)
        task = asyncio.get_running_loop().create_task(self._restart(w, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, w: WorkerHandle, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._stopping:
            self._spawn(w)

    # ---- service → worker ----

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for w in self.workers:
            self._flush_worker(w)

    def _flush_worker(self, w: WorkerHandle) -> None:
        if w.sender is None:
            return
        if w.releases:
            w.sender.send(("sync", w.releases[:], []))
            w.releases.clear()

    def tick(self) -> None:
        """Hand back released slots (also those of dropped frames) at least this often, and tell
        each worker which of its cameras someone watches."""
        self._flush()
        now = time.monotonic()
        if self.watched is None or now - self._watch_checked < WATCH_CHECK_S:
            return
        self._watch_checked = now
        for w in self.workers:
            self._send_watch(w)

    def _send_watch(self, w: WorkerHandle) -> None:
        if self.watched is not None:
            codecs = {c.id: tuple(sorted(self.watched(c.id))) for c in w.cameras}
            w.tell_watched({cam: cs for cam, cs in codecs.items() if cs})

    # ---- edge.publish.publisher.RemoteEncoding ----

    def watch_changed(self, camera_id: str) -> None:
        """A camera's viewers changed codecs: its worker starts or stops encoders now."""
        w = self.owner.get(camera_id)
        if w is not None:
            self._send_watch(w)

    def request_keyframe(self, camera_id: str, codec: str | None) -> None:
        w = self.owner.get(camera_id)
        if w is not None and w.sender is not None:
            w.sender.send(("keyframe", camera_id, codec))

    # ---- config reload ----

    def add_cameras(self, cams: list[CameraConfig]) -> None:
        """Start cameras a reload added in the running workers (see module doc)."""
        live = [w for w in self.workers if not w.retiring]
        limit = resolve_processes(self.config.ingest.processes, len(self.owner) + len(cams))
        joining: dict[WorkerHandle, list[CameraConfig]] = {}
        places = place_cameras([len(w.cameras) for w in live], len(cams), limit)
        for cam, k in zip(cams, places, strict=True):
            if k == len(live):
                live.append(self._new_worker(()))
            joining.setdefault(live[k], []).append(cam)
        for w, added in joining.items():
            if w.sender is not None:  # running (one down starts them with its others)
                base, name = w.slots.next_slot, self._new_segment(w, added)
                counts = {c.id: self.info[c.id].counts for c in added if c.id in self.info}
                w.sender.send(("add", added, name, base, counts))
                log.info("worker %d takes cameras %s", w.index, ", ".join(c.id for c in added))
            w.cameras += tuple(added)
            self.owner.update({c.id: w for c in added})
            if not w.generation:
                self._spawn(w)

    def _new_segment(self, w: WorkerHandle, cams: Sequence[CameraConfig]) -> str:
        """A segment for `cams` in `w`'s generation, named by its first slot id (unique there)."""
        base = w.slots.next_slot
        name = segment_name(os.getpid(), w.index, w.generation, part=base)
        per, size = self.config.ingest.slots_per_camera, self.detector.input_size
        arena = SlotArena(name, len(cams), per, size, create=True, base=base)
        w.slots.add(arena, [c.id for c in cams])
        return name

    async def remove_cameras(self, camera_ids: list[str]) -> None:
        """Stop cameras in their workers (their last tracks end there and their events come
        back); a worker left with no camera stops."""
        for cid in camera_ids:
            w = self.owner.pop(cid, None)
            if w is None:
                continue
            self.info.pop(cid, None)
            self.batcher.set_streaming(cid, False)
            w.cameras = tuple(c for c in w.cameras if c.id != cid)
            if w.sender is not None:
                w.sender.send(("remove", cid))
            arena = w.slots.remove_camera(cid)
            if arena is not None:  # none of its cameras is left; the worker unmaps it
                arena.unlink()
            if not w.cameras:
                await self._stop_worker(w)

    def set_lines(self, cam: CameraConfig) -> None:
        """New counting lines for a camera, swapped in its worker (its tracks go on)."""
        w = self.owner.get(cam.id)
        if w is None:
            return
        w.cameras = tuple(cam if c.id == cam.id else c for c in w.cameras)  # for a respawn
        if w.sender is not None:
            w.sender.send(("lines", cam.id, list(cam.lines), cam.display_name))

    async def _stop_worker(self, w: WorkerHandle) -> None:
        w.retiring = True
        self._flush_worker(w)
        if w.sender is not None:
            w.sender.send(("stop",))
        await self._end(w, time.monotonic() + STOP_WAIT_S)
        self.workers.remove(w)
        log.info("worker %d stopped: no camera left", w.index)

    def worker_of(self, camera_id: str) -> int | None:
        w = self.owner.get(camera_id)
        return w.index if w is not None else None
