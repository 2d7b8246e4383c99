"""The shipped monitoring files: promtool accepts them, Grafana can import the dashboard, and the
Kubernetes manifests render with kustomize, validate against the Kubernetes schemas (offline, with
the schemas the kubernetes-validate package ships), shard by pod ordinal and replica count, and
carry the scrape annotations, the probes and a config edge accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from edge.config import parse_config
from edge.config.shard import ShardSpec, apply_shard, parse_shard

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


def kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize DIR` (kustomize built into kubectl), as `kubectl apply -k` renders it."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def overlay(tmp_path: Path, extra: str, files: dict[str, str] | None = None) -> Path:
    """A kustomization on top of deploy/k8s, as a site would write one."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(DEPLOY / 'k8s', tmp_path)}\n{extra}", encoding="utf-8"
    )
    return tmp_path


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def container_env(statefulset: dict) -> dict[str, dict]:
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("version", ["1.25.0", kubernetes_validate.latest_version()])
def test_k8s_manifests_render_and_validate_against_the_schemas(
    version: str, tmp_path: Path
) -> None:
    """Rendered by kustomize, alone and with the GPU patch; strict: unknown fields fail too."""
    gpu = overlay(
        tmp_path, "patches:\n  - path: gpu-patch.yaml\n",
        {"gpu-patch.yaml": (DEPLOY / "k8s" / "gpu-patch.yaml").read_text()},
    )  # fmt: skip
    for docs in (kustomize(DEPLOY / "k8s"), kustomize(gpu)):
        assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Service", "StatefulSet"]
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    limits = by_kind(docs)["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert limits["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_k8s_schema_check_can_fail() -> None:
    statefulset = by_kind(kustomize(DEPLOY / "k8s"))["StatefulSet"]
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, kubernetes_validate.latest_version(), strict=True)
    statefulset["spec"]["replicas"] = 3
    statefulset["spec"]["template"]["spec"]["containers"][0]["argz"] = ["run"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("replicas", [None, 1, 5])
def test_k8s_each_pod_gets_its_shard_from_its_ordinal_and_the_replica_count(
    replicas: int | None, tmp_path: Path
) -> None:
    """Kubernetes expands $(POD_NAME) to edge-K; kustomize copies the replica count into N,
    also in an overlay that sets its own count and repeats the base's replacement (as the base's
    kustomization.yaml says)."""
    extra = ""
    if replicas:
        base = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
        count = [{"name": "edge", "count": replicas}]
        extra = yaml.safe_dump({"replicas": count, "replacements": base["replacements"]})
    docs = by_kind(kustomize(overlay(tmp_path, extra)))
    statefulset = docs["StatefulSet"]
    count = statefulset["spec"]["replicas"]
    assert count == (replicas or 3)
    env = container_env(statefulset)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    name = statefulset["metadata"]["name"]
    for k in range(count):
        value = env["EDGE_SHARD"]["value"].replace("$(POD_NAME)", f"{name}-{k}")
        assert parse_shard(value) == ShardSpec(k, count)


def test_k8s_headless_service_names_the_peers_and_prometheus_scrapes_every_pod() -> None:
    docs = by_kind(kustomize(DEPLOY / "k8s"))
    statefulset, service = docs["StatefulSet"], docs["Service"]
    assert service["spec"]["clusterIP"] == "None"  # headless: a DNS name per pod
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    pod = statefulset["spec"]["template"]
    ann = pod["metadata"]["annotations"]  # on the pod: the pod job scrapes each one
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]["containerPort"]
    assert ann["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = yaml.safe_load(docs["ConfigMap"]["data"]["cameras.yaml"])
    peers = config["shard"]["peers"]
    name, svc = statefulset["metadata"]["name"], service["metadata"]["name"]
    assert peers == [f"http://{name}-{{k}}.{svc}:{port}"]


def test_k8s_configmap_is_a_valid_edge_config(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {d["kind"]: d for d in _k8s_docs()}
    data = yaml.safe_load(docs["ConfigMap"]["data"]["cameras.yaml"])
    data["detector"]["model"] = str(model_path)  # /opt/edge/models is the image's
    monkeypatch.setenv("CAMERA_USER", "k8s-cam-user")
    monkeypatch.setenv("CAMERA_PASSWORD", "s3cret-pass")
    config = parse_config(data)
    container = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert config.server.port == container["ports"][0]["containerPort"]
    assert config.server.host == "0.0.0.0"
    assert config.server.exposure_problem() is None  # edge run would refuse to start otherwise
    assert "s3cret-pass" not in config.cameras[0].safe_url
    shards = [apply_shard(config, ShardSpec(k, 3)) for k in range(3)]
    served = sorted(c.id for s in shards for c in s.cameras)
    assert served == sorted(c.id for c in config.cameras)
    writable = {Path(m["mountPath"]) for m in container["volumeMounts"] if not m.get("readOnly")}
    assert config.events.jsonl is not None and config.events.jsonl.parent in writable
    assert config.detector.prepared_dir.parent in writable


PER_PROCESS = ("edge_batch_", "edge_onnx_info", "process_", "edge_gpu_")
"""Series of one process (its batches, its memory): shown per pod on purpose."""


def test_dashboard_adds_up_the_shards() -> None:
    """With one pod per shard, a camera's series come from whichever pod serves it: every sum of
    per-camera or per-sink series must add over pods (never `by (instance)` or `by (pod)`), so
    that the panels read the same for one box or N shards; one panel shows the split itself."""
    dash = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}
    per_process = panels.pop("Cameras per process (shard)")
    assert per_process == [
        "count by (instance) (edge_camera_up)",  # cameras each shard serves
        "sum by (instance) (edge_camera_up)",
    ]
    exprs = [e for group in panels.values() for e in group]
    grouped = 0
    for expr in exprs:
        for labels in re.findall(r"\b(?:sum|max|min|avg|count) by \(([^)]*)\)", expr):
            names = {n.strip() for n in labels.split(",")}
            if any(m in expr for m in PER_PROCESS):
                continue
            grouped += 1
            assert not names & {"instance", "pod", "job"}, expr
    assert grouped >= 10  # the check reached the per-camera panels
