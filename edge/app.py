"""The service: ingest → batcher → tracking (+ plates) → publish, plus web server and events.

Stages never import each other; this module is the only place that knows them all. Every camera
gets two named tasks (`ingest:ID` feeds the batcher, `track:ID` consumes its detections) in one
TaskGroup with the batcher; a camera that fails costs only its own work, never the others'.
Cameras also start, stop and get new lines while the service runs: `edge.reload` applies a changed
`cameras.yaml` through `start_camera`, `stop_camera` and `swap_lines`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from edge.camera_runtime import CameraRuntime, init_series, waiting_status
from edge.config import CameraConfig, EdgeConfig
from edge.config.reload import ReloadResult, ReloadTrigger
from edge.config.source import ConfigSource
from edge.event_outputs import EventOutputs
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.infer.model_check import ModelError, check_model
from edge.infer.prepare import with_dynamic_batch
from edge.infer.results import ResultStream
from edge.ingest.source import CameraState
from edge.metrics import DropReason, EdgeMetrics
from edge.plate_runtime import PlateRuntime, PlatesUnavailable
from edge.publish import data_api
from edge.publish.annotate import Overlay, line_overlays
from edge.publish.publisher import CameraPublisher
from edge.publish.service import CameraStatus
from edge.publish.web import create_app
from edge.reload import ConfigReloader
from edge.store.database import StoreError
from edge.track.camera import CameraTracking
from edge.track.events import SinkError
from edge.types import DetectedFrame, Detections, Frame
from edge.worker_placement import resolve_processes
from edge.worker_video import EncodedPacket
from edge.workers import WorkerPool

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start (e.g. its port is taken, its model is no detector); the message
    says why in one line."""


class EdgeService:
    """The running service; also the `ServiceView` that the web app reads."""

    def __init__(
        self,
        config: EdgeConfig,
        metrics: EdgeMetrics | None = None,
        source: ConfigSource | None = None,
    ) -> None:
        """`source`: the file the config came from, re-read on `reload_config` (SIGHUP, a
        change of the file, the config API); None: the config cannot be reloaded."""
        self.config = config
        self.metrics = metrics or EdgeMetrics.for_service(gpu=config.metrics.gpu)
        self.registry: CollectorRegistry = self.metrics.registry
        self.detector: Detector | None = None
        self.batcher: Batcher | None = None
        self.pool: WorkerPool | None = None
        self.outputs = EventOutputs(config, self.metrics)
        self.events = self.outputs.bus
        self.url: str | None = None
        self.config_path: Path | None = source.path if source is not None else None
        self.last_reload: ReloadResult | None = None
        self.reloader = ConfigReloader(self, source, self.metrics)
        self._tg: asyncio.TaskGroup | None = None
        self.plates: PlateRuntime | None = None
        self.runtimes: dict[str, CameraRuntime] = {}
        """Each camera's pipeline, built once the detector is loaded (`run`)."""
        for cam in config.enabled_cameras:  # its series exist from the first scrape
            init_series(cam, config, self.metrics)

    def _runtime(self, cam: CameraConfig, detector: Detector) -> CameraRuntime:
        """A camera's whole pipeline, not started (`CameraRuntime.build`); in a worker process,
        the worker tracks it and encodes its video."""
        local = self.pool is None
        rt = CameraRuntime.build(cam, self.config, self.metrics, detector.class_names,
                                 self.events.emit, self.plates, local=local)  # fmt: skip
        if self.pool is not None:
            rt.publisher.encode_remotely(self.pool)
        return rt

    # ---- ConfigHost (edge.reload applies a changed cameras.yaml) ----

    async def reload_config(self, trigger: ReloadTrigger) -> ReloadResult:
        return await self.reloader.reload(trigger)

    # ---- ServiceView ----

    def cameras(self) -> Sequence[CameraStatus]:
        if self.detector is None:  # loading: the cameras start once it is loaded
            return [waiting_status(cam, self.metrics) for cam in self.config.enabled_cameras]
        pool = self.pool
        return [
            rt.status(self.metrics, pool.info.get(rt.config.id) if pool is not None else None,
                      pool.worker_of(rt.config.id) if pool is not None else None)
            for rt in self.runtimes.values()
        ]  # fmt: skip

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
        return any(rt.source.state == CameraState.STREAMING for rt in self.runtimes.values())

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
            detector = await asyncio.to_thread(self._load_detector)
            if self.config.ocr.enabled:
                await self._start_plates()
            processes = self._processes(detector)
            self.batcher = Batcher(
                detector, self.config.detector, self.metrics, count_detections=not processes
            )
            if processes:
                self.pool = WorkerPool(
                    self.config, processes, detector, self.batcher, self.metrics,
                    self.events.emit, deliver=self._deliver, watched=self._watched_codecs,
                    plates=self.plates,
                )  # fmt: skip
            cams = self.config.enabled_cameras
            self.runtimes = {cam.id: self._runtime(cam, detector) for cam in cams}
            self.detector = detector  # loaded, with its cameras built: the service may be ready
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.batcher.run(), name="batcher")
                if self.pool is not None:
                    self.pool.start()
                    tg.create_task(self._tick_pool(self.pool), name="workers")
                for rt in self.runtimes.values():
                    if rt.tracking is not None:  # else its worker process runs it
                        await self._start_local(rt, rt.tracking)
                self.reloader.start(tg)
                if started is not None:
                    started.set()
        finally:
            await self._shutdown(runner)

    def _processes(self, detector: Detector) -> int:
        """Worker processes to run the cameras in (`ingest.processes`); 0 where they cannot."""
        n = resolve_processes(self.config.ingest.processes, len(self.config.enabled_cameras))
        why = None
        if n and not detector.uint8 and detector.unit_scale:
            why = "the model takes 0-1 float pictures (prepare it for a uint8 input)"
        if why:
            log.warning("ingest.processes: cameras stay in the service's process: %s", why)
            return 0
        log.info("ingest.processes: %d worker process(es)", n)
        return n

    def _watched_codecs(self, camera_id: str) -> frozenset[str]:
        rt = self.runtimes.get(camera_id)
        return rt.publisher.watched_codecs if rt is not None else frozenset()

    async def _start_local(self, rt: CameraRuntime, tracking: CameraTracking) -> None:
        """Feed a camera's frames to the batcher from the service's process and track them."""
        assert self._tg is not None and self.batcher is not None
        cam = rt.config
        rt.stream = self.batcher.subscribe(cam.id)
        track = self._tg.create_task(
            self._consume(rt, tracking, rt.stream), name=f"track:{cam.id}"
        )
        await rt.source.start()
        ingest = self._tg.create_task(self.batcher.feed(rt.source), name=f"ingest:{cam.id}")
        rt.tasks = (track, ingest)

    # ---- live cameras (edge.reload.LiveCameras) ----

    async def start_camera(self, cam: CameraConfig) -> None:
        assert self.detector is not None  # a reload applies only once the service runs
        rt = self.runtimes[cam.id] = self._runtime(cam, self.detector)
        if rt.tracking is not None:
            await self._start_local(rt, rt.tracking)
        elif self.pool is not None:
            self.pool.add_cameras([cam])

    async def stop_camera(self, camera_id: str) -> None:
        """Stop a camera as the service's shutdown would: its last results tracked, its tracks'
        end events sent, its viewers' tracks ended; the other cameras never wait for it."""
        rt = self.runtimes.pop(camera_id)
        if self.pool is not None:
            await self.pool.remove_cameras([camera_id])
        await rt.stop()
        self.metrics.set_camera_state(camera_id, CameraState.STOPPED)

    def swap_lines(self, cam: CameraConfig) -> None:
        """New lines (and display name) for a running camera; its video and tracks go on."""
        rt = self.runtimes[cam.id]
        rt.config = cam
        init_series(cam, self.config, self.metrics)
        if rt.tracking is not None:
            rt.tracking.set_lines(cam.lines)
        if self.pool is not None:
            self.pool.set_lines(cam)
        size = rt.status(self.metrics, self.pool.info.get(cam.id) if self.pool else None, None)
        if size.width and size.height:  # what `edge check` warns about, once the size is known
            for warning in cam.lines_outside(size.width, size.height):
                log.warning("camera %s: %s", cam.id, warning)

    def cameras_changed(self) -> None:
        """After a reload: the counts API knows the new cameras and lines."""
        self.outputs.cameras_changed(self.config)

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
            self.outputs.open_store()
        except StoreError as exc:
            raise StartupError(str(exc)) from None

    async def _start_events(self) -> None:
        try:
            await self.outputs.start()
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
        try:
            if self.config.ocr.enabled:
                self.plates = PlateRuntime(self.config.ocr, self.metrics)
        except PlatesUnavailable as exc:
            raise StartupError(str(exc)) from None

    async def _start_plates(self) -> None:
        assert self.plates is not None
        try:
            await self.plates.start()
        except PlatesUnavailable as exc:
            raise StartupError(str(exc)) from None

    async def _start_web(self) -> web.AppRunner:
        server = self.config.server
        app = create_app(
            self, self.config.stream, server, data=self.outputs.data, feed=self.outputs.live,
            shard=self.config.shard, config_host=self,
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
        cams = ", ".join(cam.id for cam in self.config.enabled_cameras)
        log.info("edge serving %s (cameras: %s)", self.url, cams)
        return runner

    async def _consume(self, rt: CameraRuntime, tracking: CameraTracking,
                       stream: ResultStream) -> None:  # fmt: skip
        """Track, count, read plates and publish each detected frame of one camera, in order."""
        async for detected in stream:
            try:
                self._process(rt, tracking, detected)
            except Exception:
                log.exception("camera %s: processing a frame failed", rt.config.id)
                # neither published nor lost: counted as dropped
                self.metrics.count_drop(rt.config.id, DropReason.ERROR)

    def _process(
        self, rt: CameraRuntime, tracking: CameraTracking, detected: DetectedFrame
    ) -> None:
        frame = detected.frame
        rt.last_frame_size = (frame.width, frame.height)
        tracked = tracking.update(detected.detections, frame=frame.seq)
        if rt.plates is not None:
            rt.plates.forget(s.track_id for s in tracked.ended)
            rt.plates.submit(frame, tracked.tracks)
        if rt.publisher.is_watched:  # drawing inputs only when someone watches this camera
            self._annotate(rt, frame, tracked.tracks, tracking.counts)
        self.metrics.observe_end_to_end(rt.config.id, time.monotonic() - frame.received_at)

    def _deliver(self, packet: EncodedPacket) -> None:
        """A packet encoded in a camera's worker, for the camera's viewers (its fan-out)."""
        camera_id, codec, data, pts, time_base, keyframe = packet
        rt = self.runtimes.get(camera_id)
        if rt is not None:  # else stopped by a reload since
            rt.publisher.deliver(codec, data, pts, time_base, keyframe)

    def _annotate(
        self, rt: CameraRuntime, frame: Frame, tracks: Detections, counts: dict[str, Any]
    ) -> None:
        """Hand a watched camera's frame and what to draw on it to its publisher."""
        overlay = Overlay(
            camera_name=rt.config.display_name,
            class_names=rt.class_names,
            lines=line_overlays(rt.config.lines, counts),
            plates={tid: p.text for tid, p in rt.plates.plates.items()} if rt.plates else {},
            clock=time.time(),
        )
        rt.publisher.publish(frame, tracks, overlay)

    async def _shutdown(self, runner: web.AppRunner | None) -> None:
        """Stop everything, in pipeline order; a part that fails to stop is logged (with its
        traceback) and the rest still stops, so a stuck stop can be diagnosed."""
        await self.reloader.close()  # no camera starts or stops under the shutdown's feet
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
        if self.plates is not None:
            await self.plates.close()
        if runner is not None:
            await runner.cleanup()
        await self.outputs.stop()
        log.info("edge stopped")


@contextlib.asynccontextmanager
async def _logged(what: str) -> AsyncIterator[None]:
    try:
        yield
    except Exception:
        log.exception("stopping %s failed", what)
