"""A source's counters: the numbers `SourceStats` reports and the Prometheus series move together,
in the service's process and through a worker's metrics relay."""

from __future__ import annotations

import pickle
from typing import Any

from edge.ingest.state import SourceCounters
from edge.metrics import DropReason, EdgeMetrics
from edge.metrics_relay import MetricsRecorder, MetricsReplayer
from edge.testing import metric_value

SERIES = {
    "packets": "edge_frames_received_total",
    "frames": "edge_frames_decoded_total",
    "reconnects": "edge_camera_reconnects_total",
    "unauthorized": "edge_camera_unauthorized_total",
    "decode_errors": "edge_camera_decode_errors_total",
}


def _some_life(counters: SourceCounters) -> list[int]:
    seqs = []
    for _ in range(5):
        counters.packet()
    for _ in range(4):
        seqs.append(counters.frame())
    counters.reconnect()
    counters.refused()
    counters.refused()
    for _ in range(3):
        counters.decode_error()
    counters.drop(DropReason.FPS_CAP)
    counters.drop(DropReason.FPS_CAP)
    counters.drop(DropReason.SUPERSEDED)
    return seqs


def _assert_agree(counters: SourceCounters, metrics: EdgeMetrics) -> None:
    stats = counters.snapshot()
    assert (stats.packets, stats.frames, stats.reconnects) == (5, 4, 1)
    assert (stats.unauthorized, stats.decode_errors) == (2, 3)
    assert stats.dropped_by_reason == {"fps_cap": 2, "superseded": 1} and stats.dropped == 3
    for field, series in SERIES.items():
        assert metric_value(metrics, series, camera="cam") == getattr(stats, field), series
    for reason, n in stats.dropped_by_reason.items():
        assert metric_value(metrics, "edge_frames_dropped_total", camera="cam", reason=reason) == n
    assert metric_value(metrics, "edge_frames_dropped_total", camera="cam") == stats.dropped


def test_each_count_moves_its_series_and_frames_are_numbered_from_one() -> None:
    metrics = EdgeMetrics()
    counters = SourceCounters("cam", metrics)
    assert _some_life(counters) == [1, 2, 3, 4]
    _assert_agree(counters, metrics)


def test_counts_recorded_in_a_worker_replay_to_the_same_series() -> None:
    recorder, served = MetricsRecorder(), EdgeMetrics()
    relayed: Any = recorder  # records with EdgeMetrics' API
    counters = SourceCounters("cam", relayed)
    _some_life(counters)
    MetricsReplayer(served).replay(pickle.loads(pickle.dumps(recorder.take())))
    _assert_agree(counters, served)


def test_a_snapshot_does_not_change_with_later_counts() -> None:
    counters = SourceCounters("cam", EdgeMetrics())
    counters.drop(DropReason.SHUTDOWN)
    before = counters.snapshot()
    counters.drop(DropReason.SHUTDOWN)
    counters.frame()
    assert before.dropped_by_reason == {"shutdown": 1} and before.frames == 0
    assert counters.snapshot().dropped_by_reason == {"shutdown": 2}
