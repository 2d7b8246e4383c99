"""JPEG snapshots of each vehicle's best crop (and of its plate), in a folder of bounded size.

`SnapshotWriter.save` is called on the event loop when a track ends: it names the files at once
(the track-end event carries the names) and hands the encoding and writing to one writer
thread through a bounded queue, so a slow disk costs snapshots (counted), never frames. After
each write, the oldest snapshots are removed until the folder is under `max_mb`; files already
there at start count too, oldest by modification time.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.config import SnapshotConfig
from edge.metrics import EdgeMetrics
from edge.track.crops import VehicleCrop

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SnapshotError(RuntimeError):
    """The snapshot folder cannot be used; one line for a person."""


@dataclass(frozen=True, slots=True)
class SnapshotNames:
    vehicle: str
    plate: str | None


@dataclass(frozen=True, slots=True)
class _Job:
    name: str
    crop: VehicleCrop
    box: tuple[float, float, float, float] | None
    """Part of the crop to save, in frame pixels (a plate); None: all of it."""


class SnapshotSink(Protocol):
    """Where a `PlateScheduler` saves snapshots: a `SnapshotWriter`, or a camera worker's
    stand-in that sends the crops to the service's writer (`edge.worker_plates`)."""

    def names(self, camera: str, track_id: int, when: datetime, plate: bool) -> SnapshotNames: ...
    def save(
        self,
        names: SnapshotNames,
        crop: VehicleCrop,
        crop_box: tuple[float, float, float, float] | None = None,
    ) -> bool: ...


class SnapshotWriter:
    """Writes snapshots under `config.dir` from its own thread; `start` before `save`."""

    def __init__(self, config: SnapshotConfig, metrics: EdgeMetrics) -> None:
        if config.dir is None:
            raise ValueError("no snapshot folder configured")
        self.dir = Path(config.dir)
        self.max_bytes = int(config.max_mb * 1024 * 1024)
        self.quality = config.quality
        self.metrics = metrics
        self._queue: queue.Queue[_Job | None] = queue.Queue(QUEUE_SIZE)
        self._files: deque[tuple[Path, int]] = deque()
        self._bytes = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the folder and take stock of what is in it; SnapshotError when unusable."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            found = [(p.stat().st_mtime, p) for p in self.dir.glob("*.jpg") if p.is_file()]
            probe = self.dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SnapshotError(
                f"ocr.snapshots.dir: cannot write {self.dir}: {exc.strerror or exc}"
            ) from None
        for _, path in sorted(found):
            size = path.stat().st_size
            self._files.append((path, size))
            self._bytes += size
        self._trim()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    @staticmethod
    def names(camera: str, track_id: int, when: datetime, plate: bool) -> SnapshotNames:
        """`CAMERA-TRACK-YYYYmmddTHHMMSSmmmZ.jpg` (track ids restart with the service, the time
        keeps names unique), and the same with `-plate` for the plate."""
        t = when.astimezone(UTC) if when.tzinfo else when
        ms = t.microsecond // 1000
        stem = f"{_UNSAFE.sub('_', camera)}-{track_id}-{t:%Y%m%dT%H%M%S}{ms:03d}Z"
        return SnapshotNames(f"{stem}.jpg", f"{stem}-plate.jpg" if plate else None)

    def save(
        self,
        names: SnapshotNames,
        crop: VehicleCrop,
        crop_box: tuple[float, float, float, float] | None = None,
    ) -> bool:
        """Queue the snapshot `names.vehicle` of `crop` (only its `crop_box` part, frame pixels,
        when given); False (counted) when the writer is behind."""
        try:
            self._queue.put_nowait(_Job(names.vehicle, crop, crop_box))
            return True
        except queue.Full:
            self.metrics.snapshots_dropped.inc()
            return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._write(job)
            except Exception:
                log.exception("snapshot %s failed", job.name)
                self.metrics.snapshots_dropped.inc()

    def _write(self, job: _Job) -> None:
        bgr = job.crop.to_bgr()
        if job.box is not None:
            x0, y0 = job.crop.box[:2]
            x1, y1, x2, y2 = job.box
            h, w = bgr.shape[:2]
            px1, py1 = max(0, int(x1 - x0)), max(0, int(y1 - y0))
            px2, py2 = min(w, int(round(x2 - x0))), min(h, int(round(y2 - y0)))
            if px2 <= px1 or py2 <= py1:
                return
            bgr = np.ascontiguousarray(bgr[py1:py2, px1:px2])
        self._put(job.name, bgr)

    def _put(self, name: str, bgr: np.ndarray) -> None:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            self.metrics.snapshots_dropped.inc()
            return
        path = self.dir / name
        try:
            path.write_bytes(data.tobytes())
        except OSError as exc:
            log.error("snapshot %s: %s", path, exc.strerror or exc)
            self.metrics.snapshots_dropped.inc()
            return
        self._files.append((path, len(data)))
        self._bytes += len(data)
        self.metrics.snapshots_written.inc()
        self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and self._files:
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size
            self.metrics.snapshots_deleted.inc()
        self.metrics.snapshots_bytes.set(self._bytes)
