"""What a camera source is doing, as plain values the API, metrics and tests can read."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # edge.metrics imports CameraState from here
    from edge.metrics import DropReason, EdgeMetrics


class CameraState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKOFF = "backoff"
    """Waiting before the next attempt after a network or stream error."""
    UNAUTHORIZED = "unauthorized"
    """The camera refused the credentials (401/403); waiting the longest backoff before trying
    again, since retrying cannot fix a password and many cameras lock an account that keeps
    failing."""
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of a source's counters."""

    frames: int = 0
    """Frames decoded."""
    packets: int = 0
    reconnects: int = 0
    unauthorized: int = 0
    """Connection attempts the camera refused for its credentials."""
    decode_errors: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)


class SourceCounters:
    """A source's counts, each kept in one place: every call moves the number `SourceStats`
    reports and the camera's Prometheus series together, so tests, benches and `/metrics` cannot
    disagree. (The counter values cannot simply be read back from the registry: in a worker
    process `metrics` only records calls that the service replays.)

    Each count has one writer, the decode thread, except the drops the event loop makes
    (superseded, shutdown), which are other keys of the drop table than the thread's (fps_cap).
    """

    def __init__(self, camera_id: str, metrics: EdgeMetrics) -> None:
        self._camera_id = camera_id
        self._metrics = metrics
        self.frames = 0
        """Frames decoded; also each frame's `seq`."""
        self.packets = 0
        self.reconnects = 0
        self.unauthorized = 0
        self.decode_errors = 0
        self._drops: dict[str, int] = {}  # by DropReason
        # children looked up once: `packet` and `frame` run for every frame of every camera
        self._received = metrics.frames_received.labels(camera=camera_id)
        self._decoded = metrics.frames_decoded.labels(camera=camera_id)

    def packet(self) -> None:
        """A packet with data arrived (`edge_frames_received_total`)."""
        self.packets += 1
        self._received.inc()

    def frame(self) -> int:
        """A frame was decoded (`edge_frames_decoded_total`); returns its sequence number."""
        self.frames += 1
        self._decoded.inc()
        return self.frames

    def reconnect(self) -> None:
        self.reconnects += 1
        self._metrics.reconnects.labels(camera=self._camera_id).inc()

    def refused(self) -> None:
        """The camera refused the credentials (`edge_camera_unauthorized_total`)."""
        self.unauthorized += 1
        self._metrics.unauthorized.labels(camera=self._camera_id).inc()

    def decode_error(self) -> None:
        self.decode_errors += 1
        self._metrics.decode_errors.labels(camera=self._camera_id).inc()

    def drop(self, reason: DropReason) -> None:
        """A frame decoded and never handed on (`edge_frames_dropped_total`)."""
        self._drops[reason] = self._drops.get(reason, 0) + 1
        self._metrics.count_drop(self._camera_id, reason)

    def snapshot(self) -> SourceStats:
        drops = dict(self._drops)
        return SourceStats(
            frames=self.frames,
            packets=self.packets,
            reconnects=self.reconnects,
            unauthorized=self.unauthorized,
            decode_errors=self.decode_errors,
            dropped=sum(drops.values()),
            dropped_by_reason=drops,
        )
