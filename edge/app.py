"""The service: ingest → batcher → tracking (+ plates) → publish, plus web server and events.

Stages never import each other; this module is the only place that knows them all. Every camera
gets two named tasks (`ingest:ID` feeds the batcher, `track:ID` consumes its detections) in one
TaskGroup with the batcher; a camera that fails costs only its own work, never the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from edge.config import CameraConfig, EdgeConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.infer.model_check import ModelError, check_model
from edge.infer.prepare import with_dynamic_batch
from edge.infer.results import ResultStream
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.publish import data_api
from edge.publish.annotate import Overlay, line_overlays
from edge.publish.live import LiveFeed
from edge.publish.publisher import CameraPublisher
from edge.publish.service import CameraStatus
from edge.publish.web import create_app
from edge.store.database import StoreError
from edge.store.query import StoreQueries, queries_for
from edge.store.sink import StoreSink
from edge.track.camera import CameraTracking
from edge.track.events import EventBus, EventSink, JsonlSink, PlateInfo, SinkError, WebhookSink
from edge.track.mqtt import MqttSink
from edge.track.plate_scheduler import OcrPool, PlateScheduler
from edge.track.plates import PlateReader, ReaderUnavailable, make_reader
from edge.track.snapshots import SnapshotError, SnapshotWriter
from edge.types import DetectedFrame, Detections, Frame
from edge.workers import WorkerPool, resolve_processes

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start (e.g. its port is taken, its model is no detector); the message
    says why in one line."""


@dataclass(eq=False)
class CameraRuntime:
    """Everything one camera owns while the service runs."""

    config: CameraConfig
    source: CameraSource
    publisher: CameraPublisher
    tracking: CameraTracking | None = None
    plates: PlateScheduler | None = None
    last_frame_size: tuple[int, int] | None = None

    def plate_of(self, track_id: int, ended: bool) -> PlateInfo | None:
        """The voted plate of a track so far (and its snapshots when it ended), if OCR runs."""
        return self.plates.info(track_id, ended) if self.plates is not None else None


class EdgeService:
    """The running service; also the `ServiceView` that the web app reads."""

    def __init__(self, config: EdgeConfig, metrics: EdgeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or EdgeMetrics.for_service(gpu=config.metrics.gpu)
        self.registry: CollectorRegistry = self.metrics.registry
        self.detector: Detector | None = None
        self.batcher: Batcher | None = None
        self.pool: WorkerPool | None = None
        self.store = StoreSink(config.store, self.metrics) if config.store.path else None
        self.live = LiveFeed(self.metrics)
        self.events = EventBus(self._sinks(), self.metrics)
        self.url: str | None = None
        self.plate_reader: PlateReader | None = None
        self.ocr_pool: OcrPool | None = None
        self.snapshots: SnapshotWriter | None = None
        self.runtimes: dict[str, CameraRuntime] = {
            cam.id: CameraRuntime(
                config=cam,
                source=CameraSource(
                    cam, config.ingest, self.metrics, realtime=cam.realtime, loop=cam.loop
                ),
                publisher=CameraPublisher(cam.id, config.stream, self.metrics, max_width=cam.width),
            )
            for cam in config.enabled_cameras
        }
        for cam in config.enabled_cameras:  # every series at 0 from the first scrape on
            lines = [(line.name, line.directions) for line in cam.lines]
            self.metrics.init_camera(cam.id, config.detector.classes, lines)

    # ---- ServiceView ----

    def cameras(self) -> Sequence[CameraStatus]:
        result = []
        pool = self.pool
        for rt in self.runtimes.values():
            cam, src = rt.config, rt.source
            size = rt.last_frame_size
            state, fps, error, error_at = str(src.state), src.source_fps, src.last_error, None
            error_at = src.last_error_at
            counts = rt.tracking.counts if rt.tracking else {}
            info = pool.info.get(cam.id) if pool is not None else None
            if info is not None:
                state, fps, error, error_at = (
                    info.state,
                    info.source_fps,
                    info.last_error,
                    info.last_error_at,
                )
                counts, size = info.counts, info.size
            result.append(
                CameraStatus(
                    id=cam.id,
                    name=cam.display_name,
                    state=state,
                    url=cam.safe_url,
                    fps=self.metrics.fps_rates(cam.id),
                    source_fps=fps,
                    counts=counts,
                    viewers=rt.publisher.viewer_count,
                    width=size[0] if size else None,
                    height=size[1] if size else None,
                    last_error=error,
                    last_error_at=error_at,
                    worker=pool.worker_of(cam.id) if pool is not None else None,
                )
            )
        return result

    def publisher(self, camera_id: str) -> CameraPublisher | None:
        rt = self.runtimes.get(camera_id)
        return rt.publisher if rt else None

    def is_ready(self) -> bool:
        """Model loaded and a camera streaming; a shard given no camera (more shards than
        cameras) is ready with its model, so that it never holds a rollout."""
        if self.detector is None:
            return False
        if not self.runtimes:
            return True
        if self.pool is not None:
            return any(i.state == CameraState.STREAMING for i in self.pool.info.values())
        return any(
            rt.source.state == CameraState.STREAMING for rt in self.runtimes.values()
        )

    # ---- lifecycle ----

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until cancelled (SIGTERM/SIGINT cancel it in `edge run`)."""
        runner: web.AppRunner | None = None
        try:
            # The model file first (a parse and a CPU session, under a second): a bad one fails
            # before the service says it serves. Then the port: a busy one fails fast, and
            # /healthz answers while the detector loads.
            await asyncio.to_thread(self._check_model)
            self._check_ocr()
            await asyncio.to_thread(self._open_store)
            await self._start_events()
            runner = await self._start_web()
            self.detector = await asyncio.to_thread(self._load_detector)
            if self.config.ocr.enabled:
                await self._start_plates()
            names = self.detector.class_names
            processes = self._processes()
            for rt in self.runtimes.values():
                if not processes:
                    rt.tracking = CameraTracking(
                        rt.config.id, self.config.tracker, rt.config.lines, names,
                        emit=self.events.emit, metrics=self.metrics, plate_of=rt.plate_of,
                    )  # fmt: skip
            self.batcher = Batcher(
                self.detector, self.config.detector, self.metrics,
                count_detections=not processes,
            )  # fmt: skip
            if processes:
                self.pool = WorkerPool(
                    self.config, processes, self.detector, self.batcher, self.metrics,
                    self.events.emit, publish=self._publish_remote,
                    is_watched=lambda cam: self.runtimes[cam].publisher.is_watched,
                )  # fmt: skip
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.batcher.run(), name="batcher")
                if self.pool is not None:
                    self.pool.start()
                    tg.create_task(self._tick_pool(self.pool), name="workers")
                    if started is not None:
                        started.set()
                    return
                for rt in self.runtimes.values():
                    stream = self.batcher.subscribe(rt.config.id)
                    tg.create_task(self._consume(rt, stream), name=f"track:{rt.config.id}")
                    await rt.source.start()
                    tg.create_task(self.batcher.feed(rt.source), name=f"ingest:{rt.config.id}")
                if started is not None:
                    started.set()
        finally:
            await self._shutdown(runner)

    def _processes(self) -> int:
        """Worker processes to run the cameras in (`ingest.processes`); 0 where they cannot."""
        n = resolve_processes(self.config.ingest.processes, len(self.runtimes))
        assert self.detector is not None
        why = None
        if n and self.config.ocr.enabled:
            why = "plate reading runs in the service's process"
        elif n and not self.detector.uint8 and self.detector.unit_scale:
            why = "the model takes 0-1 float pictures (prepare it for a uint8 input)"
        if why:
            log.warning("ingest.processes: cameras stay in the service's process: %s", why)
            return 0
        log.info("ingest.processes: %d worker process(es)", n)
        return n

    @staticmethod
    async def _tick_pool(pool: WorkerPool) -> None:
        while True:
            await asyncio.sleep(0.05)
            pool.tick()

    def _check_model(self) -> None:
        cfg = self.config.detector
        try:
            check_model(cfg.model, cfg.family, cfg.classes, cfg.input_size)
        except ModelError as exc:
            raise StartupError(f"detector.{exc.field}: {exc}") from None

    def _open_store(self) -> None:
        try:
            if self.store is not None:
                self.store.open()
        except StoreError as exc:
            raise StartupError(str(exc)) from None

    def _queries(self) -> StoreQueries | None:
        cfg = self.config
        if cfg.store.path is None:
            return None
        lines = {c.id: {ln.name: ln.directions for ln in c.lines} for c in cfg.enabled_cameras}
        return queries_for(cfg.store.path, cfg.store.interval_minutes, cfg.detector.classes, lines)

    async def _start_events(self) -> None:
        try:
            await self.events.start()
        except SinkError as exc:
            raise StartupError(str(exc)) from None

    def _load_detector(self) -> Detector:
        cfg = self.config.detector
        try:
            return Detector(with_dynamic_batch(cfg), self.metrics)
        except ModelError as exc:  # e.g. refused by the configured provider's ONNX Runtime
            raise StartupError(f"detector.{exc.field}: {exc}") from None

    def _check_ocr(self) -> None:
        """The OCR backend must be installed: refused at start, never found missing mid-run."""
        if not self.config.ocr.enabled:
            return
        try:
            self.plate_reader = make_reader(self.config.ocr)
        except ReaderUnavailable as exc:
            raise StartupError(str(exc)) from None

    async def _start_plates(self) -> None:
        ocr = self.config.ocr
        reader = self.plate_reader or make_reader(ocr)
        try:
            await asyncio.to_thread(reader.warm_up)
        except ReaderUnavailable as exc:
            raise StartupError(str(exc)) from None
        if ocr.snapshots.dir is not None:
            self.snapshots = SnapshotWriter(ocr.snapshots, self.metrics)
            try:
                await asyncio.to_thread(self.snapshots.start)
            except SnapshotError as exc:
                raise StartupError(str(exc)) from None
        self.ocr_pool = OcrPool(ocr.workers)
        for rt in self.runtimes.values():
            rt.plates = PlateScheduler(
                rt.config.id, ocr, reader.read, self.metrics, pool=self.ocr_pool,
                snapshots=self.snapshots,
            )  # fmt: skip

    async def _start_web(self) -> web.AppRunner:
        server = self.config.server
        app = create_app(
            self, self.config.stream, server, data=self._queries(), feed=self.live,
            shard=self.config.shard,
        )  # fmt: skip
        snapshots = self.config.ocr.snapshots.dir
        if self.config.ocr.enabled and snapshots is not None:
            data_api.add_snapshot_route(app, snapshots)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, server.host, server.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen on {server.host}:{server.port}: {reason}") from None
        port = runner.addresses[0][1] if runner.addresses else server.port
        self.url = f"http://{server.host}:{port}/"
        log.info("edge serving %s (cameras: %s)", self.url, ", ".join(self.runtimes))
        return runner

    async def _consume(self, rt: CameraRuntime, stream: ResultStream) -> None:
        """Track, count, read plates and publish each detected frame of one camera, in order."""
        async for detected in stream:
            try:
                self._process(rt, detected)
            except Exception:
                log.exception("camera %s: processing a frame failed", rt.config.id)
                self.metrics.count_drop(rt.config.id, "error")  # neither published nor lost

    def _process(self, rt: CameraRuntime, detected: DetectedFrame) -> None:
        assert rt.tracking is not None
        frame = detected.frame
        rt.last_frame_size = (frame.width, frame.height)
        tracked = rt.tracking.update(detected.detections, frame=frame.seq)
        if rt.plates is not None:
            rt.plates.forget(s.track_id for s in tracked.ended)
            rt.plates.submit(frame, tracked.tracks)
        if rt.publisher.is_watched:  # drawing inputs only when someone watches this camera
            self._publish(rt, detected, tracked.tracks)
        self.metrics.observe_end_to_end(rt.config.id, time.monotonic() - frame.received_at)

    def _publish(self, rt: CameraRuntime, detected: DetectedFrame, tracks: Detections) -> None:
        assert rt.tracking is not None and self.detector is not None
        overlay = Overlay(
            camera_name=rt.config.display_name,
            class_names=self.detector.class_names,
            lines=line_overlays(rt.config.lines, rt.tracking.counts),
            plates={tid: p.text for tid, p in rt.plates.plates.items()} if rt.plates else {},
            clock=time.time(),
        )
        rt.publisher.publish(detected.frame, tracks, overlay)

    def _publish_remote(
        self, camera_id: str, frame: Frame, tracks: Detections, counts: dict[str, Any]
    ) -> None:
        """A watched camera's frame tracked in its worker: annotated and encoded here, once."""
        rt = self.runtimes[camera_id]
        assert self.detector is not None
        rt.last_frame_size = (frame.width, frame.height)
        overlay = Overlay(
            camera_name=rt.config.display_name,
            class_names=self.detector.class_names,
            lines=line_overlays(rt.config.lines, counts),
            plates={},
            clock=time.time(),
        )
        rt.publisher.publish(frame, tracks, overlay)

    async def _shutdown(self, runner: web.AppRunner | None) -> None:
        """Stop everything, in pipeline order; a part that fails to stop is logged (with its
        traceback) and the rest still stops, so a stuck stop can be diagnosed."""
        if self.pool is not None:
            async with _logged("the worker processes"):
                await self.pool.stop()
        for rt in self.runtimes.values():
            async with _logged(f"camera {rt.config.id}'s source"):
                await rt.source.stop()
        if self.batcher is not None:
            await self.batcher.stop()
        for rt in self.runtimes.values():
            if rt.plates is not None:  # a read still in flight belongs in the track-end events
                async with _logged(f"camera {rt.config.id}'s plate reads"):
                    await rt.plates.drain()
            if rt.tracking is not None:
                rt.tracking.finish()
            async with _logged(f"camera {rt.config.id}'s publisher"):
                await rt.publisher.aclose()
        if self.ocr_pool is not None:
            await asyncio.to_thread(self.ocr_pool.shutdown)
        if self.snapshots is not None:
            await asyncio.to_thread(self.snapshots.close)
        if runner is not None:
            await runner.cleanup()
        await self.events.stop()
        log.info("edge stopped")

    def _sinks(self) -> list[EventSink]:
        ev = self.config.events
        sinks: list[EventSink] = [self.live]
        if self.store is not None:
            sinks.append(self.store)
        if ev.jsonl is not None:
            sinks.append(JsonlSink(ev.jsonl, ev.max_bytes, ev.backups, self.metrics))
        if ev.webhook is not None:
            sinks.append(WebhookSink(ev.webhook, self.metrics))
        if ev.mqtt is not None:
            queries = self._queries()
            seed = queries.current_counts if queries is not None else None
            interval_s = self.config.store.interval_minutes * 60
            sinks.append(MqttSink(ev.mqtt, interval_s, self.metrics, seed=seed))
        for sink in sinks:
            self.metrics.init_sink(sink.name)
        return sinks


@contextlib.asynccontextmanager
async def _logged(what: str) -> AsyncIterator[None]:
    try:
        yield
    except Exception:
        log.exception("stopping %s failed", what)
