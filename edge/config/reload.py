"""What one reload of `cameras.yaml` did, as the service logs it, counts it
(`edge_config_reloads_total{result}`) and shows it on `GET /api/config`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ReloadOutcome = Literal["applied", "unchanged", "invalid", "failed"]
"""applied: something changed and runs now; unchanged: nothing that runs differed; invalid: the
new file was refused (nothing changed); failed: applying it raised (the cameras it reached are
listed, the rest run as before)."""

ReloadTrigger = Literal["signal", "file", "api"]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: ReloadOutcome
    trigger: ReloadTrigger
    at: float
    """Unix time the reload finished."""
    started: tuple[str, ...] = ()
    """Camera ids added."""
    stopped: tuple[str, ...] = ()
    """Camera ids removed (or disabled)."""
    restarted: tuple[str, ...] = ()
    """Camera ids whose source settings changed."""
    lines_changed: tuple[str, ...] = ()
    """Camera ids whose counting lines were swapped in place (video and tracks kept)."""
    needs_restart: tuple[str, ...] = ()
    """Dotted settings that differ but cannot change live (`detector.model`, `server.port`):
    left as they are until the service restarts."""
    errors: tuple[str, ...] = ()
    """What was wrong, one line each, as `edge check` prints it (redacted)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
