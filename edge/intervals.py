"""Clock-aligned count intervals and the UTC times of the store and the API, as pure functions
(shared by edge/store and edge/publish, like edge/types.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_start(epoch_s: float, interval_s: int) -> int:
    """Start of the interval holding `epoch_s`: intervals are aligned to the UTC clock (a 15-minute
    interval starts at :00, :15, :30, :45), so counts from different days and sites line up."""
    return int(epoch_s // interval_s) * interval_s


def parse_duration_s(text: str) -> int:
    """`900`, `900s`, `15m`, `1h`, `1d` → seconds; ValueError otherwise."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 900, 15m, 1h or 1d")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def parse_time(text: str) -> float:
    """ISO 8601 (`2026-12-03T10:00:00Z`, with an offset, or naive = UTC) or Unix seconds →
    Unix seconds; ValueError otherwise."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso_utc(epoch_s: float) -> str:
    """`2026-12-03T10:15:00Z` (milliseconds when not whole seconds)."""
    when = datetime.fromtimestamp(epoch_s, UTC)
    spec = "seconds" if epoch_s == int(epoch_s) else "milliseconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")
