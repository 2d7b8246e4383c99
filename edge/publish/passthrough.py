"""`PassthroughService`: cameras straight to viewers, without detection, as a `ServiceView`.

It is what the web app serves when there is no model in the loop: the publish stage's
integration tests and `bench/bench_viewers.py` use it to exercise real RTSP → WebRTC → browser,
and it shows what `edge/app.py` has to provide (the full service adds detections, tracks, counts
and a loaded model to the same shape).

It lives in edge/publish but receives its sources from the caller, so publish still imports
nothing from ingest: any object with `camera_id`, `state`, `source_fps`, `latest()` and
`frames()` (an `edge.ingest.source.CameraSource`) will do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics
from edge.publish.annotate import Overlay
from edge.publish.publisher import CameraPublisher
from edge.publish.service import CameraStatus
from edge.types import Detections, Frame

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    camera_id: str
    source_fps: float | None

    @property
    def state(self) -> str: ...

    @property
    def url(self) -> str: ...

    def latest(self) -> Frame | None: ...

    def frames(self) -> AsyncIterator[Frame]: ...


class PassthroughService:
    """Publishes every source's frames (no boxes) and answers the web app's questions."""

    def __init__(
        self,
        sources: Sequence[FrameSource],
        stream: StreamConfig,
        metrics: EdgeMetrics,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.metrics = metrics
        self.registry: CollectorRegistry = self.metrics.registry
        self._sources = {s.camera_id: s for s in sources}
        self._names = dict(names or {})
        self.publishers = {cid: CameraPublisher(cid, stream, self.metrics) for cid in self._sources}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for cid, source in self._sources.items():
            self._tasks.append(asyncio.create_task(self._pump(source), name=f"publish:{cid}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for publisher in self.publishers.values():
            await publisher.aclose()

    async def _pump(self, source: FrameSource) -> None:
        publisher = self.publishers[source.camera_id]
        overlay = Overlay(camera_name=self._names.get(source.camera_id, source.camera_id))
        async for frame in source.frames():
            publisher.publish(frame, Detections.empty(), overlay)
            self.metrics.observe_end_to_end(source.camera_id, time.monotonic() - frame.received_at)

    # ServiceView -----------------------------------------------------------------------------
    def cameras(self) -> list[CameraStatus]:
        result = []
        for cid, source in self._sources.items():
            frame = source.latest()
            result.append(
                CameraStatus(
                    id=cid,
                    name=self._names.get(cid, cid),
                    state=str(source.state),
                    url=source.url,
                    fps=self.metrics.fps_rates(cid),
                    source_fps=source.source_fps,
                    viewers=self.publishers[cid].viewer_count,
                    width=frame.width if frame else None,
                    height=frame.height if frame else None,
                )
            )
        return result

    def publisher(self, camera_id: str) -> CameraPublisher | None:
        return self.publishers.get(camera_id)

    def is_ready(self) -> bool:
        return any(str(s.state) == "streaming" for s in self._sources.values())
