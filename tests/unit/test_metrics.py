"""EdgeMetrics exposition (names, types, label sets), RateMeter, and the GPU collector's absence."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from edge.config import CameraConfig, IngestConfig
from edge.gpu_metrics import GPU_METRIC_NAMES, register_gpu_collector
from edge.ingest.source import CameraSource
from edge.metrics import FPS_WINDOW_S, STAGES, DropReason, EdgeMetrics, RateMeter
from edge.testing import async_wait_for, free_port, metric_value

README = Path(__file__).resolve().parents[2] / "README.md"

# name -> (type, label names) of every family edge exports (the README table lists the same).
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "edge_frames_received": ("counter", {"camera"}),
    "edge_frames_decoded": ("counter", {"camera"}),
    "edge_frames_inferred": ("counter", {"camera"}),
    "edge_frames_published": ("counter", {"camera"}),
    "edge_frames_dropped": ("counter", {"camera", "reason"}),
    "edge_camera_fps": ("gauge", {"camera", "point"}),
    "edge_camera_source_fps": ("gauge", {"camera"}),
    "edge_camera_state": ("gauge", {"camera", "state"}),
    "edge_camera_up": ("gauge", {"camera"}),
    "edge_camera_reconnects": ("counter", {"camera"}),
    "edge_worker_restarts": ("counter", {"worker"}),
    "edge_camera_unauthorized": ("counter", {"camera"}),
    "edge_camera_decode_errors": ("counter", {"camera"}),
    "edge_stage_seconds": ("histogram", {"camera", "stage"}),
    "edge_batch_inference_seconds": ("histogram", set()),
    "edge_end_to_end_seconds": ("histogram", {"camera"}),
    "edge_frames_rendered": ("counter", {"camera"}),
    "edge_video_latency_seconds": ("histogram", {"camera"}),
    "edge_batch_size": ("histogram", set()),
    "edge_batch_fill_ratio": ("histogram", set()),
    # an Info in the text format, labelled as `Detector` sets it (checked on the real one in
    # tests/integration/infer/test_detector_real.py)
    "edge_onnx_info": ("gauge", {"provider", "family", "workers", "threads"}),
    "edge_detections": ("counter", {"camera", "class"}),
    "edge_tracks_confirmed": ("counter", {"camera"}),
    "edge_line_crossings": ("counter", {"camera", "line", "class", "direction"}),
    "edge_ocr_attempts": ("counter", {"camera"}),
    "edge_ocr_reads": ("counter", {"camera"}),
    "edge_ocr_skipped": ("counter", {"camera"}),
    "edge_snapshots_written": ("counter", set()),
    "edge_snapshots_deleted": ("counter", set()),
    "edge_snapshots_dropped": ("counter", set()),
    "edge_snapshots_bytes": ("gauge", set()),
    "edge_events_emitted": ("counter", {"sink"}),
    "edge_events_dropped": ("counter", {"sink", "reason"}),
    "edge_events_queue": ("gauge", {"sink"}),
    "edge_store_bytes": ("gauge", set()),
    "edge_store_events_deleted": ("counter", {"reason"}),
    "edge_mqtt_connected": ("gauge", set()),
    "edge_viewers": ("gauge", {"camera"}),
    "edge_encoders_active": ("gauge", {"camera"}),
    "edge_viewers_refused": ("counter", {"reason"}),
    "edge_config_reloads": ("counter", {"result"}),
}
SAMPLE_SUFFIX_LABELS = {"le", "quantile"}


def filled_metrics() -> EdgeMetrics:
    """An EdgeMetrics with every family set, as a running service would have it."""
    m = EdgeMetrics(process=True)
    m.init_camera("cam-1", classes=["car", "truck"], lines=[("north", ("in", "out"))])
    m.init_sink("jsonl")
    m.init_store()
    m.set_camera_state("cam-1", "streaming")
    m.set_source_fps("cam-1", 25.0)
    m.frames_received.labels(camera="cam-1").inc(3)
    m.frames_decoded.labels(camera="cam-1").inc(3)
    m.frames_inferred.labels(camera="cam-1").inc(2)
    m.count_drop("cam-1", "stale")
    m.reconnects.labels(camera="cam-1").inc()
    m.worker_restarts.labels(worker="0").inc()
    m.decode_errors.labels(camera="cam-1").inc()
    for stage in STAGES:
        m.observe_stage("cam-1", stage, 0.004)
    m.observe_batch(size=2, capacity=2)
    m.batch_inference_seconds.observe(0.07)  # as `Detector.infer` records it
    m.observe_end_to_end("cam-1", 0.12)
    m.observe_rendered("cam-1", 0.15)
    m.tick_fps("cam-1", "decoded", now=100.0)
    m.set_provider("cpu", family="yolox", workers=2, threads=1)
    m.detections.labels(camera="cam-1", **{"class": "car"}).inc(4)
    m.tracks_confirmed.labels(camera="cam-1").inc()
    m.line_crossings.labels(camera="cam-1", line="north", direction="in", **{"class": "car"}).inc()
    m.ocr_attempts.labels(camera="cam-1").inc()
    m.ocr_reads.labels(camera="cam-1").inc()
    m.events_emitted.labels(sink="jsonl").inc()
    m.viewers.labels(camera="cam-1").set(2)
    m.encoders_active.labels(camera="cam-1").set(1)
    return m


def families(m: EdgeMetrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}


def test_exposition_has_every_family_with_its_type_and_labels() -> None:
    found = families(filled_metrics())
    for name, (kind, labels) in EXPECTED.items():
        assert name in found, f"{name} missing from /metrics"
        fam = found[name]
        assert fam.type == kind, f"{name}: {fam.type} != {kind}"  # type: ignore[attr-defined]
        samples = fam.samples  # type: ignore[attr-defined]
        assert samples, f"{name} has no samples"
        for s in samples:
            if s.name.endswith("_created"):
                continue
            assert set(s.labels) - SAMPLE_SUFFIX_LABELS == labels, f"{s.name}: {s.labels}"
    edge_names = {n for n in found if n.startswith("edge_") and not n.endswith("_created")}
    assert edge_names == set(EXPECTED), f"undocumented families: {edge_names - set(EXPECTED)}"
    assert "process_resident_memory_bytes" in found


def test_prometheus_naming_counters_total_and_base_units() -> None:
    text = filled_metrics().exposition().decode()
    assert 'edge_frames_decoded_total{camera="cam-1"} 3.0' in text
    assert "edge_stage_seconds_bucket{" in text and "edge_end_to_end_seconds_count" in text
    assert (
        'edge_line_crossings_total{camera="cam-1",class="car",direction="in",line="north"} 1.0'
        in text
    )


def readme_metrics_table() -> dict[str, tuple[str, set[str]]]:
    """The README's metrics table: exported name -> (type, label names)."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`edge_\w+`", cells[0]):
            labels = set() if cells[2] in ("–", "-") else {x.strip() for x in cells[2].split(",")}
            rows[cells[0].strip("`")] = (cells[1].split()[0], labels)
    return rows


def test_readme_table_lists_every_family_with_its_type_and_labels() -> None:
    table = readme_metrics_table()
    exported = {
        name + ("_total" if kind == "counter" else ""): (kind, labels)
        for name, (kind, labels) in EXPECTED.items()
    }
    gpu = {n: row for n, row in table.items() if n.startswith("edge_gpu_")}
    assert set(gpu) == set(GPU_METRIC_NAMES)
    assert all(row == ("gauge", {"gpu", "model"}) for row in gpu.values()), gpu
    rest = {n: row for n, row in table.items() if n not in gpu}
    assert rest == exported


async def test_no_url_or_secret_in_any_label() -> None:
    """A camera whose URL carries a password, refused by a port nobody listens on, as its source
    reports it (state changes, reconnects), next to a filled set of every family."""
    port = free_port()
    cam = CameraConfig(id="cam-1", url=f"rtsp://admin:hunter22@127.0.0.1:{port}/stream1")
    fast = IngestConfig(
        open_timeout_s=1, read_timeout_s=1, backoff_initial_s=0.1, backoff_max_s=0.2
    )
    m = filled_metrics()
    async with CameraSource(cam, fast, m) as src:
        await async_wait_for(lambda: src.stats.reconnects >= 1, 10)
    assert metric_value(m, "edge_camera_reconnects_total", camera="cam-1") >= 2  # 1 + filled
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            for value in s.labels.values():
                assert "://" not in value and "hunter22" not in value, f"{s.name} {s.labels}"
                assert str(port) not in value, f"{s.name} {s.labels}"


def test_init_camera_creates_zero_series_for_dashboard_and_alerts() -> None:
    m = EdgeMetrics()
    m.init_camera("a", classes=["car", "bus"], lines=[("l1", ("up", "down"))])
    text = m.exposition().decode()
    for reason in DropReason:
        assert f'edge_frames_dropped_total{{camera="a",reason="{reason}"}} 0.0' in text
    assert 'edge_camera_state{camera="a",state="connecting"} 1.0' in text
    assert 'edge_camera_up{camera="a"} 0.0' in text
    crossings = [ln for ln in text.splitlines() if ln.startswith("edge_line_crossings_total")]
    assert len(crossings) == 4  # 2 classes x 2 directions
    # a later init (config reload) does not move a streaming camera back to "connecting"
    m.set_camera_state("a", "streaming")
    m.init_camera("a")
    assert 'edge_camera_up{camera="a"} 1.0' in m.exposition().decode()


def test_first_camera_state_creates_the_camera_series_without_resetting_any() -> None:
    m = EdgeMetrics()
    m.viewers.labels(camera="b").set(3)  # a viewer came before the source reported
    m.set_camera_state("b", "streaming")
    text = m.exposition().decode()
    assert 'edge_frames_dropped_total{camera="b",reason="stale"} 0.0' in text
    assert 'edge_camera_reconnects_total{camera="b"} 0.0' in text
    assert 'edge_viewers{camera="b"} 3.0' in text
    m.init_camera("b", classes=["car"])  # after streaming started: state stays
    assert m.registry.get_sample_value("edge_camera_up", {"camera": "b"}) == 1.0


def test_camera_state_is_one_hot() -> None:
    m = EdgeMetrics()
    m.set_camera_state("a", "backoff")
    text = m.exposition().decode()
    states = [ln for ln in text.splitlines() if ln.startswith("edge_camera_state{")]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in states) == 1.0
    assert 'edge_camera_state{camera="a",state="backoff"} 1.0' in text


def test_observe_batch_and_end_to_end_keep_counts_equal() -> None:
    m = EdgeMetrics()
    for size in (1, 3, 4):
        m.observe_batch(size=size, capacity=4)
    for _ in range(5):
        m.observe_end_to_end("a", 0.2)
    r = m.registry
    assert r.get_sample_value("edge_batch_size_sum") == 8
    assert r.get_sample_value("edge_batch_size_count") == 3
    assert r.get_sample_value("edge_batch_fill_ratio_sum") == pytest.approx(0.25 + 0.75 + 1.0)
    assert r.get_sample_value("edge_end_to_end_seconds_count", {"camera": "a"}) == 5
    assert r.get_sample_value("edge_frames_published_total", {"camera": "a"}) == 5


def test_rate_meter_counts_events_in_window() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(50):  # 25 per second for 2 s
        meter.tick(now=10.0 + i * 0.04)
    assert meter.rate(now=11.98) == pytest.approx(25.0)
    assert meter.rate(now=13.02) == pytest.approx(24 / 2.0)  # ticks after 11.02 only
    assert meter.rate(now=20.0) == 0.0


def test_fps_gauge_reads_the_meter_at_scrape_time() -> None:
    m = EdgeMetrics()
    for _ in range(10):
        m.tick_fps("a", "inferred")  # real clock: ten ticks well inside the window
    value = m.registry.get_sample_value("edge_camera_fps", {"camera": "a", "point": "inferred"})
    assert value == pytest.approx(10 / FPS_WINDOW_S)


def _nvml_usable() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount()) > 0
    except Exception:
        return False


def test_gpu_collector_matches_hardware() -> None:
    registry = CollectorRegistry()
    collector = register_gpu_collector(registry)
    names = {f.name for f in registry.collect()}
    if _nvml_usable():
        assert collector is not None
        assert {"edge_gpu_memory_used_bytes", "edge_gpu_utilization_ratio"} <= names
        samples = {
            s.name: s for f in registry.collect() for s in f.samples if s.labels.get("gpu") == "0"
        }
        assert (
            samples["edge_gpu_memory_total_bytes"].value > 0
            and samples["edge_gpu_memory_total_bytes"].labels["model"]
        )
        assert 0 <= samples["edge_gpu_utilization_ratio"].value <= 1
    else:
        assert collector is None
        assert not names & set(GPU_METRIC_NAMES)
        m = EdgeMetrics(process=True, gpu=True)  # asking for GPU metrics is never an error
        assert m.gpu is None and "edge_gpu_" not in m.exposition().decode()


def test_gpu_metrics_absent_without_the_library() -> None:
    """In a fresh interpreter where `pynvml` cannot be imported."""
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from edge.metrics import EdgeMetrics\n"
        "m = EdgeMetrics(process=True, gpu=True)\n"
        "assert m.gpu is None\n"
        "assert b'edge_gpu_' not in m.exposition()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
