"""What plate reading owns while the service runs: the OCR worker processes all cameras share and
the snapshot writer; part of the wiring (`edge.app`), which gives each camera a scheduler."""

from __future__ import annotations

import asyncio

from edge.config import OcrConfig
from edge.metrics import EdgeMetrics
from edge.track.ocr_pool import ProcessOcrPool
from edge.track.plate_scheduler import PlateScheduler
from edge.track.plates import PlateReader, ReaderUnavailable, make_reader
from edge.track.snapshots import SnapshotError, SnapshotWriter


class PlatesUnavailable(RuntimeError):
    """OCR cannot run as configured (backend not installed, snapshot folder unusable); one line."""


class PlateRuntime:
    """`PlateRuntime(config)` checks that the backend is installed (cheap, no model loads), so
    that a missing one stops the start before anything else; `start` loads the models in the OCR
    processes (`reader` itself stays unloaded in this process)."""

    def __init__(self, config: OcrConfig, metrics: EdgeMetrics) -> None:
        self.config = config
        self.metrics = metrics
        try:
            self.reader: PlateReader = make_reader(config)
        except ReaderUnavailable as exc:
            raise PlatesUnavailable(str(exc)) from None
        self.pool: ProcessOcrPool | None = None
        self.snapshots: SnapshotWriter | None = None

    async def start(self) -> None:
        """The OCR processes with their models loaded (seconds), then the snapshot folder."""
        self.pool = ProcessOcrPool(self.config, self.config.workers)
        try:
            await asyncio.to_thread(self.pool.start)
        except ReaderUnavailable as exc:
            raise PlatesUnavailable(str(exc)) from None
        if self.config.snapshots.dir is not None:
            self.snapshots = SnapshotWriter(self.config.snapshots, self.metrics)
            try:
                await asyncio.to_thread(self.snapshots.start)
            except SnapshotError as exc:
                raise PlatesUnavailable(str(exc)) from None

    def scheduler(self, camera_id: str) -> PlateScheduler:
        """A camera's scheduler on the shared pool and snapshot writer (after `start`)."""
        return PlateScheduler(camera_id, self.config, self.reader.read, self.metrics,
                              pool=self.pool, snapshots=self.snapshots)  # fmt: skip

    async def close(self) -> None:
        """After every camera's last reads: the OCR processes, then the queued snapshots."""
        if self.pool is not None:
            await asyncio.to_thread(self.pool.shutdown)
        if self.snapshots is not None:
            await asyncio.to_thread(self.snapshots.close)
