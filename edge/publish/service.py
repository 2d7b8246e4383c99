"""What the web app needs from the running service, as a small Protocol that edge/app.py implements.

The web layer never imports the pipeline: `edge/app.py` (or a test fixture) hands `create_app` an
object with this shape:

    class ServiceView(Protocol):
        registry: CollectorRegistry            # exposed at /metrics
        def cameras(self) -> Sequence[CameraStatus]: ...     # GET /api/cameras and the page
        def publisher(self, camera_id: str) -> CameraPublisher | None: ...  # WebRTC viewers
        def is_ready(self) -> bool: ...        # /readyz: model loaded and >= 1 camera streaming
                                               # (or no camera at all: an empty shard)

`CameraStatus.url` must already be redacted (`CameraConfig.safe_url`); the web layer redacts
every string again before it leaves the process, as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from edge.config import EdgeConfig
from edge.config.reload import ReloadResult, ReloadTrigger
from edge.publish.publisher import CameraPublisher
from edge.redact import redact


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """One camera as the API and the viewer page show it."""

    id: str
    name: str
    state: str
    """connecting, streaming, stalled, backoff, unauthorized or stopped."""
    url: str = ""
    """Redacted source URL."""
    fps: Mapping[str, float] = field(default_factory=dict)
    """Measured FPS by pipeline point: decoded, inferred, published, rendered."""
    source_fps: float | None = None
    counts: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    """line → class → direction → vehicles counted."""
    viewers: int = 0
    width: int | None = None
    height: int | None = None
    """Source frame size when known."""
    last_error: str | None = None
    """The camera's most recent problem (cannot open, stalled, refused credentials...), redacted;
    kept after it recovers, so that a camera that stopped or flaps says why."""
    last_error_at: float | None = None
    """When `last_error` happened, Unix time."""
    worker: int | None = None
    """The worker process that owns the camera (`ingest.processes`), None in the service's own."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": redact(self.name),
            "state": self.state,
            "url": redact(self.url),
            "fps": {k: round(float(v), 2) for k, v in self.fps.items()},
            "source_fps": None if self.source_fps is None else round(float(self.source_fps), 2),
            "counts": {
                line: {cls: dict(dirs) for cls, dirs in per_class.items()}
                for line, per_class in self.counts.items()
            },
            "viewers": self.viewers,
            "width": self.width,
            "height": self.height,
            "last_error": None if self.last_error is None else redact(self.last_error),
            "last_error_at": _iso(self.last_error_at),
            "worker": self.worker,
        }


def _iso(unix_s: float | None) -> str | None:
    """`2026-12-02T18:55:40.121Z`, or None."""
    if unix_s is None:
        return None
    return (
        datetime.fromtimestamp(unix_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class ServiceView(Protocol):
    """The running service as the web app sees it (implemented by edge/app.py)."""

    registry: CollectorRegistry

    def cameras(self) -> Sequence[CameraStatus]: ...

    def publisher(self, camera_id: str) -> CameraPublisher | None: ...

    def is_ready(self) -> bool: ...


class ConfigHost(Protocol):
    """The running service as the config API sees it (implemented by edge/app.py).

    `config` is the config that runs now (after the last applied reload); `config_path` the file
    it came from (None when built in code: the config API then refuses edits);
    `reload_config` re-reads that file and applies the difference, never raising: a bad file comes
    back as `result == "invalid"` with its errors, and changes nothing."""

    config: EdgeConfig
    config_path: Path | None
    last_reload: ReloadResult | None

    async def reload_config(self, trigger: ReloadTrigger) -> ReloadResult: ...
