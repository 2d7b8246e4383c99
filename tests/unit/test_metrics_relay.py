"""Metric calls recorded in a worker and replayed on the service's registry give the same series
as calls made on it directly."""

from __future__ import annotations

import pickle
from typing import Any

from edge.metrics import FPS_WINDOW_S, DropReason, EdgeMetrics
from edge.metrics_relay import MetricsRecorder, MetricsReplayer, observe_many
from edge.testing import metric_samples, metric_value
from edge.worker_placement import resolve_processes

DECODE_S = (0.004, 0.0005, 0.001, 0.0011, 7.0, 0.3, 0.004, 1e-6, 0.025)
"""On bucket bounds, between them, past the last one: observed per series, they must land in
the buckets one `observe` each would."""


def _stage_calls(m: Any) -> None:
    for seconds in DECODE_S:
        m.frames_decoded.labels(camera="a").inc()
        m.observe_stage("a", "decode", seconds)
        m.tick_fps("a", "decoded")
    m.frames_dropped.labels(camera="a", reason="superseded").inc(2)
    m.count_drop("a", DropReason.STALE)
    m.set_camera_state("a", "streaming")
    m.observe_end_to_end("a", 0.05)
    m.observe_end_to_end("a", 0.2)
    m.observe_stage("b", "tracking", 0.002)
    m.line_crossings.labels(camera="a", line="l", direction="in", **{"class": "car"}).inc()
    for _ in range(2):  # a worker's encoders and the pictures they rendered
        m.encoders_active.labels(camera="a").inc()
        m.observe_rendered("a", 0.03)
    m.encoders_active.labels(camera="a").dec()


def test_replayed_records_equal_direct_calls() -> None:
    direct, relayed, recorder = EdgeMetrics(), EdgeMetrics(), MetricsRecorder()
    _stage_calls(direct)
    _stage_calls(recorder)
    records = pickle.loads(pickle.dumps(recorder.take()))  # they cross a pipe
    assert recorder.take() == []
    n = float(len(DECODE_S))
    incs = [r for r in records if r[0] == "c" and r[1] == "frames_decoded"]
    assert incs == [("c", "frames_decoded", (("camera", "a"),), "inc", (n,))]  # merged
    decode = [r for r in records if r[0] == "o" and ("stage", "decode") in r[2]]
    assert len(decode) == 1 and decode[0][3] == list(DECODE_S)  # one record per series
    MetricsReplayer(relayed).replay(records)
    for name, labels in [
        ("edge_frames_decoded_total", {"camera": "a"}),
        ("edge_frames_dropped_total", {"camera": "a", "reason": "superseded"}),
        ("edge_frames_dropped_total", {"camera": "a", "reason": "stale"}),
        ("edge_stage_seconds_count", {"camera": "a", "stage": "decode"}),
        ("edge_stage_seconds_sum", {"camera": "a", "stage": "decode"}),
        ("edge_stage_seconds_count", {"camera": "b", "stage": "tracking"}),
        ("edge_frames_published_total", {"camera": "a"}),
        ("edge_end_to_end_seconds_count", {"camera": "a"}),
        ("edge_end_to_end_seconds_sum", {"camera": "a"}),
        ("edge_camera_up", {"camera": "a"}),
        ("edge_line_crossings_total", {"camera": "a", "line": "l", "direction": "in"}),
        ("edge_encoders_active", {"camera": "a"}),
        ("edge_frames_rendered_total", {"camera": "a"}),
        ("edge_video_latency_seconds_count", {"camera": "a"}),
    ]:
        assert metric_value(relayed, name, **labels) == metric_value(direct, name, **labels) > 0
    for name in ("edge_stage_seconds_bucket", "edge_end_to_end_seconds_bucket"):
        assert metric_samples(relayed, name) == metric_samples(direct, name)
    assert relayed.fps_rates("a") == direct.fps_rates("a")
    assert relayed.fps_rates("a")["decoded"] == n / FPS_WINDOW_S
    assert relayed.fps_rates("a")["rendered"] == 2 / FPS_WINDOW_S


def test_observe_many_equals_one_observe_each() -> None:
    one, many = EdgeMetrics(), EdgeMetrics()
    values = [0.0, 0.0005, 0.00051, 0.1, 0.1000001, 4.9, 5.0, 5.1, 1e9, 0.0005]
    for v in values:
        one.stage_seconds.labels(camera="a", stage="decode").observe(v)
    observe_many(many.stage_seconds.labels(camera="a", stage="decode"), values)
    name = "edge_stage_seconds_bucket"
    assert metric_samples(many, name) == metric_samples(one, name)
    total = "edge_stage_seconds_sum"
    assert metric_value(many, total) == metric_value(one, total)


def test_auto_processes_follow_the_cores() -> None:
    assert resolve_processes("auto", cameras=12, cores=2) == 0
    assert resolve_processes("auto", cameras=12, cores=16) == 7
    assert resolve_processes("auto", cameras=3, cores=16) == 3
    assert resolve_processes(4, cameras=2) == 2
    assert resolve_processes(0, cameras=8) == 0
