"""What a camera source is doing, as plain values the API, metrics and tests can read."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
