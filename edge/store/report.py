"""Interval counts as a classified count report: one row per interval and line, a column per
class × direction, and a total; as JSON for the API and the page, and as CSV for a study."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.intervals import iso_utc

CountKey = tuple[str, str, int, str, str]
"""(camera, line, interval start in Unix seconds, class, direction)."""


@dataclass(frozen=True, slots=True)
class CountLayout:
    """The columns a report always has, whether anything was counted or not: the detector's
    classes and each camera's lines with their two direction names."""

    classes: tuple[str, ...]
    lines: Mapping[str, Mapping[str, tuple[str, str]]] = field(default_factory=dict)
    """camera → line → (direction A, direction B)."""


@dataclass(frozen=True, slots=True)
class CountsReport:
    """Counts of `[start_s, end_s)` in bins of `interval_s`, every bin present (zeros too)."""

    interval_s: int
    start_s: int
    end_s: int
    classes: tuple[str, ...]
    directions: Mapping[tuple[str, str], tuple[str, ...]]
    """(camera, line) → its direction names, in column order."""
    counts: Mapping[CountKey, int]

    @classmethod
    def build(
        cls,
        layout: CountLayout,
        rows: Iterable[CountKey | tuple[str, str, int, str, str, int]],
        start_s: int,
        end_s: int,
        interval_s: int,
        camera: str | None = None,
        line: str | None = None,
    ) -> CountsReport:
        """`rows`: (camera, line, bin start, class, direction, n) as the store sums them."""
        counts: dict[CountKey, int] = {}
        classes = list(layout.classes)
        directions: dict[tuple[str, str], list[str]] = {}
        for cam, lines in layout.lines.items():
            for name, dirs in lines.items():
                if (camera is None or cam == camera) and (line is None or name == line):
                    directions[(cam, name)] = list(dirs)
        for cam, name, start, cls_name, direction, n in rows:  # type: ignore[misc]
            counts[(cam, name, start, cls_name, direction)] = int(n)
            if cls_name not in classes:
                classes.append(cls_name)
            seen = directions.setdefault((cam, name), [])
            if direction not in seen:
                seen.append(direction)
        return cls(interval_s, start_s, end_s, tuple(classes),
                   {k: tuple(v) for k, v in sorted(directions.items())}, counts)  # fmt: skip

    def bins(self) -> range:
        return range(self.start_s, self.end_s, self.interval_s)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for (camera, line), dirs in self.directions.items():
            for start in self.bins():
                per_class = {
                    c: {d: self.counts.get((camera, line, start, c, d), 0) for d in dirs}
                    for c in self.classes
                }
                total = sum(n for per_dir in per_class.values() for n in per_dir.values())
                out.append({
                    "camera": camera, "line": line, "start": iso_utc(start),
                    "end": iso_utc(start + self.interval_s), "counts": per_class, "total": total,
                })  # fmt: skip
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "from": iso_utc(self.start_s),
            "to": iso_utc(self.end_s),
            "classes": list(self.classes),
            "rows": self.rows(),
        }

    def to_csv(self) -> str:
        """`camera,line,interval_start,interval_end,car_toward,car_away,…,total` per interval;
        columns are the same for every line when the lines share direction names."""
        dirs = _ordered(d for per_line in self.directions.values() for d in per_line)
        columns = [f"{c}_{d}" for c in self.classes for d in dirs]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["camera", "line", "interval_start", "interval_end", *columns, "total"])
        for row in self.rows():
            values = [row["counts"][c].get(d, 0) for c in self.classes for d in dirs]
            writer.writerow(
                [row["camera"], row["line"], row["start"], row["end"], *values, row["total"]]
            )
        return buf.getvalue()


def _ordered(items: Iterable[str]) -> Sequence[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
