"""The shipped monitoring files: promtool accepts them, Grafana can import the dashboard, and the
Kubernetes example carries the scrape annotations, the probes and a config edge accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from edge.config import parse_config

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "edge-dashboard.json"
DS_REF = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Panels the dashboard must have, by the start of their title -> a metric their queries use.
REQUIRED_PANELS = {
    "FPS per camera": "edge_camera_fps",
    "Stage latency p50": "edge_stage_seconds_bucket",
    "Stage latency p95": "edge_stage_seconds_bucket",
    "Stage latency p99": "edge_stage_seconds_bucket",
    "End-to-end latency": "edge_end_to_end_seconds_bucket",
    "Batch fill": "edge_batch_fill_ratio",
    "Drops by reason": "edge_frames_dropped_total",
    "Camera up": "edge_camera_up",
    "Viewers per camera": "edge_viewers",
    "Vehicles per class and line": "edge_line_crossings_total",
    "GPU memory": "edge_gpu_memory_used_bytes",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_promtool_check_config_and_rules() -> None:
    config = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout  # alerts.yml found and loaded
    rules = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: the same tool refuses a rule with bad PromQL."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(edge_up[1m]\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_readme_alerts_exist_and_compare_a_series_with_a_number() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    records = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    assert {
        "EdgeCameraDown",
        "EdgeCameraFpsLow",
        "EdgeEndToEndLatencyHigh",
        "EdgeFrameDropRateHigh",
        "EdgeProcessMemoryGrowing",
    } <= set(alerts)
    assert alerts["EdgeCameraDown"]["for"] == "1m"
    assert "edge_camera_source_fps" in records["edge:camera_fps_vs_source:ratio"]
    assert (
        "process_resident_memory_bytes"
        in records["edge:process_resident_memory_bytes:growth_per_hour"]
    )
    for name, rule in alerts.items():
        left = rule["expr"].split()[0]
        assert left in records or left.startswith(("edge_", "up{")), f"{name}: {rule['expr']}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_dashboard_is_importable_with_a_prometheus_input() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert dash["id"] is None and dash["uid"] and dash["schemaVersion"] >= 36
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["datasource"] == DS_REF, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS_REF and t["expr"] and t["refId"], p["title"]
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]
    titles = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels}
    for title, metric in REQUIRED_PANELS.items():
        match = [exprs for t, exprs in titles.items() if t.startswith(title)]
        assert match, f"no panel {title!r}"
        assert metric in match[0], f"{title}: {match[0]}"
    for q in ("histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,"):
        assert q in titles["End-to-end latency (receive → published)"]
    camera_var = dash["templating"]["list"][0]
    assert camera_var["name"] == "camera" and camera_var["datasource"] == DS_REF


def _k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "edge.yaml").read_text()) if d]


def test_k8s_example_scrape_annotations_and_probes() -> None:
    docs = {d["kind"]: d for d in _k8s_docs()}
    assert set(docs) == {"ConfigMap", "Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]["containerPort"]
    assert ann["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert (
        docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    )
    gpu = yaml.safe_load((DEPLOY / "k8s" / "gpu-patch.yaml").read_text())
    limits = gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1


def test_k8s_configmap_is_a_valid_edge_config(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {d["kind"]: d for d in _k8s_docs()}
    data = yaml.safe_load(docs["ConfigMap"]["data"]["cameras.yaml"])
    data["detector"]["model"] = str(model_path)  # /models is the pod's volume
    monkeypatch.setenv("CAMERA_USER", "k8s-cam-user")
    monkeypatch.setenv("CAMERA_PASSWORD", "s3cret-pass")
    config = parse_config(data)
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert config.server.port == container["ports"][0]["containerPort"]
    assert config.server.host == "0.0.0.0"
    assert config.server.exposure_problem() is None  # edge run would refuse to start otherwise
    assert "s3cret-pass" not in config.cameras[0].safe_url
