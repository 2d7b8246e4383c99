"""Everything that follows detection for one camera: SORT, counting lines and vehicle events.

The service (edge/app.py) and `edge analyze` both call `update` once per detected frame, in frame
order, and `finish` at the end of the stream, so live and offline counts follow the same rules.

A track whose plate is being read when it ends (`plate_pending`) has its end event held until that
read is in, at most `PLATE_WAIT_FRAMES` frames: on a busy CPU a read takes longer than the frames
a lost track survives, and the event would otherwise miss the read it was waiting for. The OCR
stage calls `release` when a read lands (a stream may have no next frame), `update` and `finish`
release too.
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

PLATE_WAIT_FRAMES = 50
"""Frames a track's end event waits at most for the plate read in flight (a few seconds)."""


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    tracks: Detections
    """Confirmed tracks on this frame, with `track_id`."""
    crossings: list[Crossing]
    ended: list[TrackSummary]
    """Tracks whose end event was sent on this frame (at their end, or once their plate read
    was in): what the plate stage forgets."""


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
        plate_pending: Callable[[int], bool] | None = None,
    ) -> None:
        """`plate_of(track_id, ended)`: what the OCR stage knows of a track (its plate so far;
        at its end also its snapshots), if anything; `plate_pending(track_id)`: whether a read
        of its plate is in flight (its end event waits for it)."""
        self.camera_id = camera_id
        self.plate_of = plate_of
        self.plate_pending = plate_pending
        self._held: list[tuple[TrackSummary, datetime, int | None, int]] = []
        """Ended tracks waiting for their plate read: (summary, end time, frame, frames waited)."""
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
        released = self._record(crossings, ended, when, frame)
        return TrackedFrame(tracks, crossings, released)

    def finish(self, when: datetime | None = None, frame: int | None = None) -> list[TrackSummary]:
        """End of stream: every live confirmed track ends (and gets its event), those waiting
        for a plate read too (callers wait for the reads in flight first)."""
        ended = self.tracker.flush()
        held, self._held = self._held, []
        for s, at, at_frame, _ in held:
            self._end(s, at, at_frame)
        self._record([], ended, when, frame, hold=False)
        return [h[0] for h in held] + ended

    def _record(
        self,
        crossings: list[Crossing],
        ended: list[TrackSummary],
        when: datetime | None,
        frame: int | None,
        hold: bool = True,
    ) -> list[TrackSummary]:
        """Count, send the events; returns the tracks whose end event was sent."""
        released = self.release() if self._held else []
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
        pending = self.plate_pending if hold else None
        for s in ended:
            self.lines.forget(s.track_id)
            if pending is not None and pending(s.track_id):
                self._held.append((s, when, frame, 0))
            else:
                self._end(s, when, frame)
                released.append(s)
        return released

    def release(self) -> list[TrackSummary]:
        """Send the held end events whose plate read is in (or that waited long enough); returns
        their tracks (for the plate stage to forget)."""
        pending, still, released = self.plate_pending, [], []
        for s, when, frame, waited in self._held:
            if pending is not None and pending(s.track_id) and waited < PLATE_WAIT_FRAMES:
                still.append((s, when, frame, waited + 1))
            else:
                self._end(s, when, frame)
                released.append(s)
        self._held = still
        return released

    def _end(self, s: TrackSummary, when: datetime, frame: int | None) -> None:
        self._emit(VehicleEvent(self.camera_id, s.track_id, self._name(s.class_id), "track_end",
                                when, frame=frame, **self._plate(s.track_id, True)))  # fmt: skip

    def _name(self, class_id: int) -> str:
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def _plate(self, track_id: int, ended: bool) -> dict[str, Any]:
        info = self.plate_of(track_id, ended) if self.plate_of is not None else None
        return asdict(info) if info is not None else {}

    def _emit(self, event: VehicleEvent) -> None:
        if self.emit is not None:
            self.emit(event)
