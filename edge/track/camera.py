"""Everything that follows detection for one camera: SORT, counting lines and vehicle events.

The service (edge/app.py) and `edge analyze` both call `update` once per detected frame, in frame
order, and `finish` at the end of the stream, so live and offline counts follow the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from edge.config import LineConfig, TrackerConfig
from edge.metrics import EdgeMetrics
from edge.track.events import PlateInfo, VehicleEvent
from edge.track.lines import Crossing, LineCounter
from edge.track.sort import SortTracker, TrackSummary
from edge.types import Detections


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    tracks: Detections
    """Confirmed tracks on this frame, with `track_id`."""
    crossings: list[Crossing]
    ended: list[TrackSummary]


class CameraTracking:
    """Tracker + line counter of one camera; events go to `emit` (e.g. `EventBus.emit`)."""

    def __init__(
        self,
        camera_id: str,
        tracker: TrackerConfig,
        lines: Sequence[LineConfig],
        class_names: Sequence[str],
        emit: Callable[[VehicleEvent], None] | None = None,
        *,
        metrics: EdgeMetrics,
        plate_of: Callable[[int, bool], PlateInfo | None] | None = None,
    ) -> None:
        """`plate_of(track_id, ended)`: what the OCR stage knows of a track (its plate so far;
        at its end also its snapshots), if anything."""
        self.camera_id = camera_id
        self.plate_of = plate_of
        self.tracker = SortTracker(tracker)
        self.lines = LineCounter(lines)
        self.class_names = list(class_names)
        self.emit = emit
        self.metrics = metrics
        self._confirmed = 0

    @property
    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        return self.lines.counts

    def set_lines(self, lines: Sequence[LineConfig]) -> None:
        """New counting lines from the next frame on; tracks go on (`LineCounter.set_lines`)."""
        self.lines.set_lines(lines)

    def update(
        self, dets: Detections, when: datetime | None = None, frame: int | None = None
    ) -> TrackedFrame:
        """Track one frame; `when` is the frame's wall-clock time (now when None)."""
        start = time.perf_counter()
        tracks = self.tracker.update(dets)
        crossings = self.lines.update(tracks, self.class_names)
        ended = self.tracker.ended()
        self.metrics.observe_stage(self.camera_id, "tracking", time.perf_counter() - start)
        self._record(crossings, ended, when, frame)
        return TrackedFrame(tracks, crossings, ended)

    def finish(self, when: datetime | None = None, frame: int | None = None) -> list[TrackSummary]:
        """End of stream: every live confirmed track ends (and gets its event)."""
        ended = self.tracker.flush()
        self._record([], ended, when, frame)
        return ended

    def _record(
        self,
        crossings: list[Crossing],
        ended: list[TrackSummary],
        when: datetime | None,
        frame: int | None,
    ) -> None:
        confirmed = self.tracker.confirmed_count
        if confirmed > self._confirmed:
            self.metrics.tracks_confirmed.labels(camera=self.camera_id).inc(
                confirmed - self._confirmed
            )
            self._confirmed = confirmed
        when = when or datetime.now(UTC)
        for c in crossings:
            self.metrics.line_crossings.labels(
                camera=self.camera_id, line=c.line, direction=c.direction, **{"class": c.class_name}
            ).inc()
            self._emit(VehicleEvent(self.camera_id, c.track_id, c.class_name, "crossing", when,
                                    line=c.line, direction=c.direction, frame=frame,
                                    **self._plate(c.track_id, False)))  # fmt: skip
        for s in ended:
            self.lines.forget(s.track_id)
            self._emit(VehicleEvent(self.camera_id, s.track_id, self._name(s.class_id),
                                    "track_end", when, frame=frame,
                                    **self._plate(s.track_id, True)))  # fmt: skip

    def _name(self, class_id: int) -> str:
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def _plate(self, track_id: int, ended: bool) -> dict[str, Any]:
        info = self.plate_of(track_id, ended) if self.plate_of is not None else None
        return asdict(info) if info is not None else {}

    def _emit(self, event: VehicleEvent) -> None:
        if self.emit is not None:
            self.emit(event)
