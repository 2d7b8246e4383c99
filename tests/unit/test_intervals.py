"""Clock-aligned intervals, durations and times of the store and the API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.intervals import interval_start, iso_utc, parse_duration_s, parse_time

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("offset_s", "interval_s", "start_offset_s"),
    [(0, 900, 0), (1, 900, 0), (899.999, 900, 0), (900, 900, 900), (3599, 900, 2700),
     (59, 60, 0), (3600 * 5 + 7, 3600, 3600 * 5)],
)  # fmt: skip
def test_interval_start_is_aligned_to_the_clock(
    offset_s: float, interval_s: int, start_offset_s: int
) -> None:
    assert interval_start(T0 + offset_s, interval_s) == T0 + start_offset_s


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("900s", 900), ("15m", 900), ("1h", 3600), ("1d", 86400),
                          (" 5m ", 300)],
)  # fmt: skip
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15 minutes", "-5m", "1.5h", "15w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)


@pytest.mark.parametrize(
    "text",
    ["2026-12-03T10:00:00Z", "2026-12-03T10:00:00+00:00", "2026-12-03T11:00:00+01:00",
     "2026-12-03T10:00:00", "2026-12-03 10:00:00z", str(int(T0)), f"{T0:.3f}"],
)  # fmt: skip
def test_times_in_iso_8601_or_unix_seconds(text: str) -> None:
    assert parse_time(text) == T0


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "10:00"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time(text)


def test_iso_utc() -> None:
    assert iso_utc(T0) == "2026-12-03T10:00:00Z"
    assert iso_utc(T0 + 0.25) == "2026-12-03T10:00:00.250Z"
