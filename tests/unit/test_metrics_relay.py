"""Metric calls recorded in a worker and replayed on the service's registry give the same series
as calls made on it directly."""

from __future__ import annotations

import pickle
from typing import Any

from edge.metrics import EdgeMetrics
from edge.metrics_relay import MetricsRecorder, MetricsReplayer
from edge.testing import metric_value
from edge.workers import resolve_processes


def _stage_calls(m: Any) -> None:
    for _ in range(3):
        m.frames_decoded.labels(camera="a").inc()
        m.observe_stage("a", "decode", 0.004)
    m.frames_dropped.labels(camera="a", reason="superseded").inc(2)
    m.set_camera_state("a", "streaming")
    m.observe_end_to_end("a", 0.05)
    m.line_crossings.labels(camera="a", line="l", direction="in", **{"class": "car"}).inc()


def test_replayed_records_equal_direct_calls() -> None:
    direct, relayed, recorder = EdgeMetrics(), EdgeMetrics(), MetricsRecorder()
    _stage_calls(direct)
    _stage_calls(recorder)
    records = pickle.loads(pickle.dumps(recorder.take()))  # they cross a pipe
    assert recorder.take() == []
    incs = [r for r in records if r[0] == "c" and r[1] == "frames_decoded"]
    assert incs == [("c", "frames_decoded", (("camera", "a"),), "inc", (3.0,))]  # merged
    MetricsReplayer(relayed).replay(records)
    for name, labels in [
        ("edge_frames_decoded_total", {"camera": "a"}),
        ("edge_frames_dropped_total", {"camera": "a", "reason": "superseded"}),
        ("edge_stage_seconds_count", {"camera": "a", "stage": "decode"}),
        ("edge_frames_published_total", {"camera": "a"}),
        ("edge_camera_up", {"camera": "a"}),
        ("edge_line_crossings_total", {"camera": "a", "line": "l", "direction": "in"}),
    ]:
        assert metric_value(relayed, name, **labels) == metric_value(direct, name, **labels) > 0


def test_auto_processes_follow_the_cores() -> None:
    assert resolve_processes("auto", cameras=12, cores=2) == 0
    assert resolve_processes("auto", cameras=12, cores=16) == 7
    assert resolve_processes("auto", cameras=3, cores=16) == 3
    assert resolve_processes(4, cameras=2) == 2
    assert resolve_processes(0, cameras=8) == 0
