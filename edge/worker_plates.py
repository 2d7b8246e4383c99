"""Plate reading for cameras that run in worker processes (`ingest.processes` ≥ 1, `ocr.enabled`).

Part of the wiring, like `edge.camera_worker`. Each camera worker schedules its own cameras' plate
reads on their own frames and tracks, with the same `PlateScheduler` as a camera in the service's
process (crops chosen by size × sharpness, the per-track attempt budget, ended tracks forgotten,
the per-character vote), so its track-end events carry `plate`, `plate_confidence`, `plate_reads`
and the snapshot names exactly as there. What stays in the service is what must stay single for
the whole box: the one bounded pool of niced OCR processes (`ocr.workers`) and the snapshot
writer with its one disk bound and its metrics. Across the worker's pipe (`edge.camera_worker`):

- worker → service: ("ocr", (request, [PackedCrop]), [], []): a camera's planned attempt, its crops
  as bytes (a few tens of KB; the colour conversion happens in the OCR process, as in the service);
  ("snapshot", (name, PackedCrop, box | None), [], []): a snapshot to write (`SnapshotWriter.save`).
- service → worker: ("ocr", request, [Outcome] | None): the reads, or None when every OCR process
  was busy. A refused attempt is given back to its track and counted in `edge_ocr_skipped_total`,
  as a busy pool is in the service's process; the worker then asks no more for `REFUSED_WAIT_S`
  (frames with a due attempt meanwhile count as skipped too), so that a busy pool costs the
  batching process a refusal a camera every so often, not the crops of every frame.

The OCR metrics are recorded in the worker (`edge.metrics_relay`), the snapshot ones in the
service. A worker that stops (the service's shutdown, a reload removing a camera) waits up to
`DRAIN_S` for its reads in flight before its tracks end, as the service's process drains its
schedulers before `finish`, so that the last events carry those reads too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.config import OcrConfig
from edge.track.camera import CameraTracking, TrackedFrame
from edge.track.crops import VehicleCrop
from edge.track.ocr_pool import OcrBusy, Outcome, ReadFn, ReadPool
from edge.track.plate_scheduler import PlateScheduler
from edge.track.plates import PlateRead
from edge.track.snapshots import SnapshotNames, SnapshotWriter
from edge.types import Frame

if TYPE_CHECKING:  # a cycle at run time: the handle knows the worker's messages
    from edge.worker_handle import WorkerHandle

log = logging.getLogger(__name__)

REFUSED_WAIT_S = 0.1
"""After a refusal, a worker's cameras make no attempt for this long (see module doc)."""
DRAIN_S = 2.0
"""How long a stopping worker waits for its reads in flight, counted from when it was told to stop:
well under `edge.workers.STOP_WAIT_S`, past which the service kills it and loses its last events
(a read takes a fraction of a second unless the CPU is starved)."""

Send = Callable[[tuple[Any, ...]], None]
PackedCrop = tuple[int, tuple[int, int, int, int], str, list[tuple[tuple[int, ...], bytes]]]
"""A `VehicleCrop` as (seq, box, kind, [(shape, bytes)] per plane): bytes pickle faster."""


def pack_crop(crop: VehicleCrop) -> PackedCrop:
    return crop.seq, crop.box, crop.kind, [(p.shape, p.tobytes()) for p in crop.planes]


def unpack_crop(packed: PackedCrop) -> VehicleCrop:
    seq, box, kind, planes = packed
    arrays = tuple(np.frombuffer(data, dtype=np.uint8).reshape(shape) for shape, data in planes)
    return VehicleCrop(seq, box, kind, arrays)


def _not_here(bgr: np.ndarray) -> PlateRead | None:
    raise RuntimeError("a camera worker's crops are read by the service's OCR processes")


# ---- in the camera worker -------------------------------------------------------------------


class RemoteOcrPool:
    """A worker's stand-in for the service's OCR pool (`ReadPool`): a read is a request over the
    pipe whose future the answer resolves, or fails with `OcrBusy` when the pool refused it."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: dict[int, Future[list[Outcome]]] = {}
        self._next = 0
        self._refused_until = 0.0

    def has_room(self) -> bool:
        return time.monotonic() >= self._refused_until

    def try_read(self, crops: list[VehicleCrop], read: ReadFn) -> Future[list[Outcome]]:
        self._next += 1
        fut: Future[list[Outcome]] = Future()
        self._pending[self._next] = fut
        self._send(("ocr", (self._next, [pack_crop(c) for c in crops]), [], []))
        return fut

    def answer(self, request: int, outcomes: list[Outcome] | None) -> None:
        fut = self._pending.pop(request, None)
        if fut is None or fut.done():  # given up on (a drain that timed out)
            return
        if outcomes is None:
            self._refused_until = time.monotonic() + REFUSED_WAIT_S
            fut.set_exception(OcrBusy("every OCR process was busy"))
        else:
            fut.set_result(outcomes)

    def abandon(self) -> None:
        """Fail every read in flight (the service is gone, or did not answer in time)."""
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the service's OCR pool did not answer"))


class RemoteSnapshots:
    """A worker's stand-in for the service's `SnapshotWriter` (`SnapshotSink`): names here (the
    event carries them), the crop sent to the service's writer."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def names(self, camera: str, track_id: int, when: datetime, plate: bool) -> SnapshotNames:
        return SnapshotWriter.names(camera, track_id, when, plate)

    def save(
        self,
        names: SnapshotNames,
        crop: VehicleCrop,
        crop_box: tuple[float, float, float, float] | None = None,
    ) -> bool:
        self._send(("snapshot", (names.vehicle, pack_crop(crop), crop_box), [], []))
        return True


class WorkerPlates:
    """A camera worker's plate reading: one `PlateScheduler` per camera on the service's pool.

    `metrics`: the worker's `MetricsRecorder` (the OCR families through the relay)."""

    def __init__(self, config: OcrConfig, snapshots: bool, send: Send, metrics: Any) -> None:
        self.config, self.metrics = config, metrics
        self.pool = RemoteOcrPool(send)
        self.snapshots = RemoteSnapshots(send) if snapshots else None
        self.cameras: dict[str, PlateScheduler] = {}

    def add(self, camera_id: str) -> dict[str, Any]:
        """Schedule the camera's reads; returns its `CameraTracking` hooks (`plate_of`,
        `plate_pending`), as the service's process gives them."""
        scheduler = PlateScheduler(camera_id, self.config, _not_here, self.metrics,
                                   pool=self.pool, snapshots=self.snapshots)  # fmt: skip
        self.cameras[camera_id] = scheduler
        return {"plate_of": scheduler.info, "plate_pending": scheduler.reading}

    def follow(self, tracking: dict[str, CameraTracking]) -> None:
        """Each camera's scheduler releases its tracking's held end events (`PlateScheduler
        .follow`)."""
        for cam, scheduler in self.cameras.items():
            if cam in tracking:
                scheduler.follow(tracking[cam].release)

    def tracked(self, camera_id: str, frame: Frame | None, tracked: TrackedFrame) -> None:
        """After a frame is tracked (its events sent): forget the ended tracks, offer the crops
        of the live ones, start an attempt if one is due (as the service's `_process`)."""
        scheduler = self.cameras.get(camera_id)
        if scheduler is None:
            return
        scheduler.forget(s.track_id for s in tracked.ended)
        if frame is not None:
            scheduler.submit(frame, tracked.tracks)

    def answer(self, request: int, outcomes: list[Outcome] | None) -> None:
        self.pool.answer(request, outcomes)

    def texts(self, camera_id: str) -> dict[int, str]:
        """The voted plate of each live track of the camera (for the overlay)."""
        scheduler = self.cameras.get(camera_id)
        return {tid: p.text for tid, p in scheduler.plates.items()} if scheduler else {}

    async def drain(self, cameras: Iterable[str] | None = None, since: float | None = None) -> None:
        """Wait until `DRAIN_S` after `since` (`time.monotonic()`, default now) for the cameras'
        (default: all) reads in flight; past that they are given up (their tracks end with the
        reads that came)."""
        names = list(self.cameras) if cameras is None else list(cameras)
        schedulers = [self.cameras[c] for c in names if c in self.cameras]
        left = DRAIN_S - (time.monotonic() - since if since is not None else 0.0)
        try:
            async with asyncio.timeout(max(0.0, left)):
                for scheduler in schedulers:
                    await scheduler.drain()
        except TimeoutError:
            log.warning("plate reads still in flight after %.1f s: given up", DRAIN_S)
            self.pool.abandon()

    def remove(self, camera_id: str) -> None:
        self.cameras.pop(camera_id, None)


# ---- in the service -------------------------------------------------------------------------


class PlateRelay:
    """The service's side: the workers' attempts on its OCR pool (refused at once when every OCR
    process is busy), their snapshots by its writer."""

    def __init__(self, pool: ReadPool, read: ReadFn, snapshots: SnapshotWriter | None) -> None:
        """`pool`, `read`, `snapshots`: what the service's `PlateRuntime` started."""
        self.pool, self.read_fn, self.snapshots = pool, read, snapshots

    def handle(self, kind: str, payload: Any, worker: WorkerHandle) -> None:
        """A worker's "ocr" or "snapshot" message (event loop's thread)."""
        if kind == "ocr":
            self.read(payload[0], payload[1], _reply_to(worker))
        elif kind == "snapshot":
            self.snapshot(*payload)

    def read(self, request: int, packed: list[PackedCrop], reply: Send) -> None:
        """Read the crops on the pool if it has room, and `reply` with their outcomes (from the
        event loop, once read); else `reply` at once that it was refused."""
        crops = [unpack_crop(p) for p in packed]
        fut = self.pool.try_read(crops, self.read_fn)
        if fut is None:
            reply(("ocr", request, None))
            return
        loop = asyncio.get_running_loop()

        def done(f: Future[list[Outcome]]) -> None:  # in the pool's thread
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(reply, ("ocr", request, _outcomes(f, len(crops))))

        fut.add_done_callback(done)

    def snapshot(
        self, name: str, packed: PackedCrop, box: tuple[float, float, float, float] | None
    ) -> None:
        if self.snapshots is not None:
            self.snapshots.save(SnapshotNames(name, None), unpack_crop(packed), box)


def _reply_to(w: WorkerHandle) -> Send:
    """Sends to this process of the worker, never to the one a restart replaced it with."""
    generation = w.generation

    def reply(msg: tuple[Any, ...]) -> None:
        if w.generation == generation and w.sender is not None:
            w.sender.send(msg)

    return reply


def _outcomes(fut: Future[list[Outcome]], n: int) -> list[Outcome]:
    """The reads, or the pool's failure (a dead OCR process) as each crop's error."""
    if fut.cancelled():
        return [(None, "cancelled: the OCR pool stopped")] * n
    exc = fut.exception()
    if exc is not None:
        return [(None, f"{type(exc).__name__}: {exc}")] * n
    return fut.result()
