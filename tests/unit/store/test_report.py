"""The classified count report: every interval and column present, zeros included; classes and
directions the layout does not name (a config changed since) still get their columns."""

from __future__ import annotations

import csv
import io

from edge.store.report import CountLayout, CountsReport

T = 1796292000  # 2026-12-03T10:00:00Z
LAYOUT = CountLayout(("car", "truck"), {"cam1": {"north": ("in", "out")}})


def test_empty_report_has_every_interval_at_zero() -> None:
    report = CountsReport.build(LAYOUT, [], T, T + 3600, 900)
    rows = report.rows()
    assert [r["start"] for r in rows] == [f"2026-12-03T10:{m:02d}:00Z" for m in (0, 15, 30, 45)]
    assert all(r["total"] == 0 for r in rows)
    assert rows[0]["counts"] == {"car": {"in": 0, "out": 0}, "truck": {"in": 0, "out": 0}}
    header = report.to_csv().splitlines()[0]
    assert header == ("camera,line,interval_start,interval_end,"
                      "car_in,car_out,truck_in,truck_out,total")  # fmt: skip


def test_counts_land_in_their_interval_and_columns() -> None:
    rows = [("cam1", "north", T + 900, "car", "in", 3),
            ("cam1", "north", T + 900, "truck", "out", 1),
            ("cam1", "north", T + 2700, "car", "out", 2)]  # fmt: skip
    report = CountsReport.build(LAYOUT, rows, T, T + 3600, 900)
    table = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [int(r["total"]) for r in table] == [0, 4, 0, 2]
    assert (table[1]["car_in"], table[1]["truck_out"], table[3]["car_out"]) == ("3", "1", "2")
    assert table[1]["interval_end"] == "2026-12-03T10:30:00Z"


def test_unknown_classes_directions_and_lines_get_columns() -> None:
    rows = [("cam1", "north", T, "bus", "in", 1), ("cam2", "gate", T, "car", "enter", 5)]
    report = CountsReport.build(LAYOUT, rows, T, T + 900, 900)
    assert report.classes == ("car", "truck", "bus")
    assert report.directions == {("cam1", "north"): ("in", "out"), ("cam2", "gate"): ("enter",)}
    table = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [(r["camera"], r["line"], r["total"]) for r in table] == [
        ("cam1", "north", "1"), ("cam2", "gate", "5")
    ]  # fmt: skip
    assert table[1]["car_enter"] == "5" and table[0]["car_enter"] == "0"


def test_filters_keep_only_the_asked_line() -> None:
    layout = CountLayout(("car",), {"cam1": {"north": ("in", "out"), "west": ("in", "out")}})
    report = CountsReport.build(layout, [], T, T + 900, 900, camera="cam1", line="west")
    assert [(r["camera"], r["line"]) for r in report.rows()] == [("cam1", "west")]
    assert CountsReport.build(layout, [], T, T + 900, 900, camera="cam9").rows() == []
