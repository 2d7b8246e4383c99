"""What one camera owns while the service runs (its source, publisher, tracking, tasks), how the
API sees it, and how it stops: part of the wiring (`edge.app`), shared by the service's start,
its shutdown and a config reload that adds or removes the camera."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from edge.config import CameraConfig
from edge.infer.results import ResultStream
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.publish.publisher import CameraPublisher
from edge.publish.service import CameraStatus
from edge.track.camera import CameraTracking
from edge.track.events import PlateInfo
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
    tracking: CameraTracking | None = None
    plates: PlateScheduler | None = None
    last_frame_size: tuple[int, int] | None = None
    tasks: tuple[asyncio.Task[None], ...] = ()
    """`track:ID` and `ingest:ID` while the camera runs in the service's process."""
    stream: ResultStream | None = None

    def plate_of(self, track_id: int, ended: bool) -> PlateInfo | None:
        """The voted plate of a track so far (and its snapshots when it ended), if OCR runs."""
        return self.plates.info(track_id, ended) if self.plates is not None else None

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
