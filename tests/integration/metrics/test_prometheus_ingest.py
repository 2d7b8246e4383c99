"""A real Prometheus scrapes an EdgeMetrics exposition: every family lands with its labels, every
shipped expression is valid PromQL there, the rules evaluate healthy, and EdgeCameraDown goes
pending for a camera that is down and only for it. (Values against ground truth: test_edge_run.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import start_http_server

from edge.metrics import STAGES, EdgeMetrics
from edge.testing import free_port, wait_for

# family as Prometheus stores it -> label names besides job/instance (le for buckets).
FAMILIES = {
    "edge_frames_decoded_total": {"camera"},
    "edge_frames_dropped_total": {"camera", "reason"},
    "edge_camera_fps": {"camera", "point"},
    "edge_camera_state": {"camera", "state"},
    "edge_stage_seconds_bucket": {"camera", "stage", "le"},
    "edge_end_to_end_seconds_count": {"camera"},
    "edge_batch_size_sum": set(),
    "edge_batch_fill_ratio_count": set(),
    "edge_onnx_info": {"provider", "family", "workers", "threads"},
    "edge_line_crossings_total": {"camera", "line", "class", "direction"},
    "edge_events_dropped_total": {"sink", "reason"},
    "edge_viewers": {"camera"},
    "process_resident_memory_bytes": set(),
}


@pytest.fixture
def served_metrics() -> Iterator[tuple[EdgeMetrics, str]]:
    m = EdgeMetrics.for_service(gpu=True)
    for cam, state in (("cam-up", "streaming"), ("cam-down", "backoff")):
        m.init_camera(cam, classes=["car", "truck"], lines=[("north", ("in", "out"))])
        m.set_camera_state(cam, state)
        m.set_source_fps(cam, 25.0)
    m.init_sink("jsonl")
    m.set_provider("cpu", family="yolox", workers=2, threads=1)  # as `Detector` sets it
    for stage in STAGES:
        m.observe_stage("cam-up", stage, 0.01)
    m.observe_batch(size=1, capacity=1)
    m.batch_inference_seconds.observe(0.05)  # as `Detector.infer` records it
    m.observe_end_to_end("cam-up", 0.1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=m.registry)
    yield m, f"127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=5)


def test_prometheus_ingests_families_rules_and_shipped_promql(
    served_metrics: tuple[EdgeMetrics, str],
    start_prometheus: Callable[..., Any],
    shipped_promql: Any,
) -> None:
    _, target = served_metrics
    prom = start_prometheus([target])
    prom.wait_for_data('edge_camera_up{camera="cam-down"}', timeout=60)

    series = prom.api("series", **{"match[]": '{__name__=~"edge_.+|process_.+"}'})
    labels_by_name: dict[str, set[str]] = {}
    for s in series:
        labels_by_name.setdefault(s["__name__"], set()).update(
            set(s) - {"__name__", "job", "instance"}
        )
    for name, labels in FAMILIES.items():
        assert labels_by_name.get(name) == labels, f"{name}: {labels_by_name.get(name)}"
    assert not [n for n in labels_by_name if n.endswith("_created")]  # for_service drops them

    # Every expression we ship parses and type-checks in this Prometheus (bad PromQL is a 400).
    everything = shipped_promql.dashboard + shipped_promql.recording + shipped_promql.alerts
    for _, expr in everything + shipped_promql.alert_series():
        prom.query(expr)

    def rules_evaluated() -> bool:
        rules = prom.rules()
        return (
            bool(rules)
            and all(r.get("lastEvaluation", "").startswith("20") for r in rules)
            and (len(rules) == len(shipped_promql.recording) + len(shipped_promql.alerts))
        )

    wait_for(rules_evaluated, timeout=30, interval=0.25)
    unhealthy = [(r["name"], r.get("lastError")) for r in prom.rules() if r["health"] != "ok"]
    assert not unhealthy

    pending = prom.wait_for_data('ALERTS{alertname="EdgeCameraDown"}', timeout=30)
    assert {s["metric"]["camera"] for s in pending} == {"cam-down"}
    assert pending[0]["metric"]["alertstate"] == "pending"  # for: 1m, so not firing yet
    assert pending[0]["metric"]["severity"] == "critical"
