"""What one camera owns while the service runs (its source, publisher, tracking, tasks), how the
API sees it, and how it stops: part of the wiring (`edge.app`), shared by the service's start,
its shutdown and a config reload that adds or removes the camera. A camera's runtime is built
whole, once the detector is loaded: before that the API shows the configured cameras as
stopped (`waiting_status`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.config import CameraConfig, EdgeConfig
from edge.infer.results import ResultStream
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.plate_runtime import PlateRuntime
from edge.publish.publisher import CameraPublisher
from edge.publish.service import CameraStatus
from edge.track.camera import CameraTracking
from edge.track.events import VehicleEvent
from edge.track.plate_scheduler import PlateScheduler
from edge.worker_messages import CameraInfo

STOP_WAIT_S = 5.0
"""How long a stopping camera's last results may take to be tracked before its tasks are
cancelled."""


@dataclass(eq=False)
class CameraRuntime:
    """Everything one camera owns while the service runs."""

    config: CameraConfig
    source: CameraSource
    publisher: CameraPublisher
    class_names: Sequence[str]
    """The detector's class names, which its detections' class ids index (the overlay's labels)."""
    tracking: CameraTracking | None
    """None where the camera runs in a worker process, which tracks it."""
    plates: PlateScheduler | None = None
    """Its plate reads, where OCR runs in the service's process."""
    last_frame_size: tuple[int, int] | None = None
    tasks: tuple[asyncio.Task[None], ...] = ()
    """`track:ID` and `ingest:ID` while the camera runs in the service's process."""
    stream: ResultStream | None = None

    @classmethod
    def build(
        cls,
        cam: CameraConfig,
        config: EdgeConfig,
        metrics: EdgeMetrics,
        class_names: Sequence[str],
        emit: Callable[[VehicleEvent], None],
        plates: PlateRuntime | None,
        *,
        local: bool,
    ) -> CameraRuntime:
        """A camera's whole pipeline, not started: its source and publisher and, where it runs
        in the service's process (`local`), its tracking and, with `plates` (started), its plate
        reads; in a worker process, the worker tracks it. Its series are at 0 from now on."""
        init_series(cam, config, metrics)
        scheduler = tracking = None
        if local:
            scheduler = plates.scheduler(cam.id) if plates is not None else None
            tracking = CameraTracking(
                cam.id, config.tracker, cam.lines, class_names, emit=emit, metrics=metrics,
                plate_of=scheduler.info if scheduler is not None else None,
                plate_pending=scheduler.reading if scheduler is not None else None,
            )  # fmt: skip
            if scheduler is not None:
                scheduler.follow(tracking.release)
        return cls(
            config=cam,
            source=CameraSource(cam, config.ingest, metrics, realtime=cam.realtime, loop=cam.loop),
            publisher=CameraPublisher(cam.id, config.stream, metrics, max_width=cam.width),
            class_names=class_names,
            tracking=tracking,
            plates=scheduler,
        )

    def status(
        self, metrics: EdgeMetrics, info: CameraInfo | None, worker: int | None
    ) -> CameraStatus:
        """The camera as `/api/cameras` shows it; `info`: what its worker process reported."""
        cam, src = self.config, self.source
        size = self.last_frame_size
        state, fps, error, error_at = str(src.state), src.source_fps, src.last_error, None
        error_at = src.last_error_at
        counts = self.tracking.counts if self.tracking else {}
        if info is not None:
            state, fps, error, error_at = (
                info.state,
                info.source_fps,
                info.last_error,
                info.last_error_at,
            )
            counts, size = info.counts, info.size
        return CameraStatus(
            id=cam.id,
            name=cam.display_name,
            state=state,
            url=cam.safe_url,
            fps=metrics.fps_rates(cam.id),
            source_fps=fps,
            counts=counts,
            viewers=self.publisher.viewer_count,
            width=size[0] if size else None,
            height=size[1] if size else None,
            last_error=error,
            last_error_at=error_at,
            worker=worker,
        )

    async def stop(self) -> None:
        """Stop this camera alone (a reload removed it), as the service's shutdown would: its
        last results tracked, its tracks' end events sent, its viewers' tracks ended."""
        await self.source.stop()
        if self.stream is not None:
            self.stream.close()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=STOP_WAIT_S)
            for t in late:
                t.cancel()
        if self.plates is not None:
            await self.plates.drain()
        if self.tracking is not None:
            self.tracking.finish()
        await self.publisher.aclose()


def init_series(cam: CameraConfig, config: EdgeConfig, metrics: EdgeMetrics) -> None:
    """The camera's per-camera series at 0 (idempotent): from the first scrape on, also while
    the model loads and before its pipeline exists, and for lines a reload adds."""
    lines = [(line.name, line.directions) for line in cam.lines]
    metrics.init_camera(cam.id, config.detector.classes, lines)


def waiting_status(cam: CameraConfig, metrics: EdgeMetrics) -> CameraStatus:
    """A configured camera as the API shows it while the detector loads (nothing runs yet)."""
    return CameraStatus(
        id=cam.id,
        name=cam.display_name,
        state=str(CameraState.STOPPED),
        url=cam.safe_url,
        fps=metrics.fps_rates(cam.id),
    )
