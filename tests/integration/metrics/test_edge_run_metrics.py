"""`edge run` on two simulated RTSP cameras, scraped by a real Prometheus every second, with one
real WebRTC viewer (aiortc) on one camera so that the video stages have data too.

Ground truth comes from outside the service: an independent RTSP client on the same simulator
streams (the simulator shares one stream between its clients) counts every frame the simulator
sends, with its wall-clock time. Checked, with no bound on how fast anything runs (a loaded
machine may run slowly; only a tenth of the healthy rate fails):
- frames received/decoded over a window equal the frames the simulator sent in it, up to the
  frames of the window's edges (`EDGE_SLACK_S`: the service and the client read the same stream
  on different clocks and threads);
- edge_camera_source_fps is the clip's rate; every FPS gauge (decoded, inferred, published,
  rendered) agrees with its counter over the gauge's window;
- viewers and active encoders: 1 on the watched camera, 0 on the other;
- every PromQL expression of the dashboard and the alert rules returns data (alerts: the series
  each one compares with its threshold), and the rules evaluate healthy;
- after the cameras go away: EdgeCameraDown goes pending, and once the pipeline drained each
  histogram's count equals the frames it timed, and every decoded frame was published or dropped
  with one reason, exactly (README, Monitoring);
- no label carries a URL or the camera password.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.metrics import FPS_WINDOW_S
from edge.testing import free_port, wait_for

log = logging.getLogger(__name__)

CLIPS = {"highway": ("traffic_highway_cctv.mp4", 25.0), "parking": ("car-detection.mp4", 12.5)}
PASSWORD = "pr0m-s3cret"
WINDOW_S = 12.0
WATCHED = "highway"  # one WebRTC viewer watches this camera; the other runs unwatched
# Stages every processed frame goes through, and those that need a viewer.
STAGES = ("decode", "queue_wait", "preprocess", "inference", "postprocess", "tracking")
VIDEO_STAGES = ("annotation", "encode", "send")  # only while someone watches
BEFORE_INFERENCE = 'reason=~"superseded|stale|fps_cap|error"'  # decoded, never inferred
EDGE_SLACK_S = 1.0
"""How far apart (in frames' worth of time) the service's count and the ground-truth client's may
be at a window's two edges: a scrape's timestamp is when it started, the counters are read a
little later, and each client stamps a frame when its own thread gets to it. Typically a frame
or two each; a healthy run on a busy machine stays well inside a second."""

pytestmark = pytest.mark.timeout(180)


class FrameClock:
    """An independent RTSP client: the wall-clock time of every frame the simulator sends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._count()
        except BaseException as exc:  # reported by `between`, not lost in a thread
            self.error = exc

    def _count(self) -> None:
        options = {"rtsp_transport": "tcp", "timeout": "2000000"}
        with av.open(self.url, options=options, timeout=(10.0, 2.0)) as container:
            stream = container.streams.video[0]
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        self.times.append(time.time())
                    if self._stop.is_set():
                        return
            except (av.error.FFmpegError, TimeoutError):
                return  # the simulator went away

    def between(self, start: float, end: float) -> int:
        assert self.error is None, f"ground-truth client failed: {self.error!r}"
        return sum(1 for t in list(self.times) if start < t <= end)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def cameras(assets: Path) -> Iterator[CameraSimulator]:
    streams = {name: assets / "video" / clip for name, (clip, _) in CLIPS.items()}
    with CameraSimulator(streams) as sim:
        yield sim


@pytest.fixture
def edge_service(
    cameras: CameraSimulator,
    model_path: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    config = {
        "cameras": [
            {
                "id": "highway",
                "url": cameras.url("highway", "viewer", PASSWORD),
                "lines": [
                    {
                        "name": "carriageway",
                        "points": [[0, 150], [320, 150]],
                        "directions": ["down", "up"],
                    }
                ],
            },
            {"id": "parking", "url": cameras.url("parking")},
        ],
        "detector": {
            "model": str(model_path),
            "providers": ["cpu"],
            "prepared_dir": str(tmp_path_factory.getbasetemp() / "models"),  # not the checkout
        },
        "ingest": {
            "open_timeout_s": 5,
            "read_timeout_s": 1,
            "backoff_initial_s": 0.5,
            "backoff_max_s": 2,
        },
        "events": {"jsonl": str(tmp_path / "events" / "events.jsonl")},
        "server": {"host": "127.0.0.1", "port": port},
        "metrics": {"enabled": True, "gpu": True},
    }
    config_path = tmp_path / "cameras.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "edge-run.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    yield f"127.0.0.1:{port}", proc, log_path
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _window(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(first ts, last ts, increase) of a counter's raw samples (a scrape a loaded machine
    answers late is missing: two are enough)."""
    assert len(samples) >= 2, f"too few scrapes: {samples}"
    return samples[0][0], samples[-1][0], samples[-1][1] - samples[0][1]


def test_edge_run_metrics_against_ground_truth(
    cameras: CameraSimulator,
    edge_service: tuple[str, subprocess.Popen[bytes], Path],
    start_prometheus: Callable[..., Any],
    start_viewer: Callable[[str, str], Any],
    shipped_promql: Any,
) -> None:
    target, proc, log_path = edge_service
    clocks = {name: FrameClock(cameras.url(name)) for name in CLIPS}
    prom = start_prometheus([target])

    def service_log() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    def both_streaming() -> bool:
        assert proc.poll() is None, f"edge run exited with {proc.returncode}:\n{service_log()}"
        return sum(prom.finite(prom.query("edge_camera_up == 1"))) == len(CLIPS)

    try:
        wait_for(both_streaming, timeout=90, interval=0.25)
    except TimeoutError:
        raise AssertionError(f"cameras not streaming in Prometheus\n{service_log()}") from None
    viewer = start_viewer(f"http://{target}", WATCHED)
    wait_for(lambda: viewer.frames > 0 or viewer.error, timeout=30, interval=0.1)
    assert viewer.error is None, f"viewer failed: {viewer.error!r}\n{service_log()}"
    run_checks(prom, cameras, clocks, shipped_promql)
    assert viewer.error is None, repr(viewer.error)


def run_checks(
    prom: Any, cameras: CameraSimulator, clocks: dict[str, FrameClock], shipped_promql: Any
) -> None:
    start = time.time() + FPS_WINDOW_S + 1.0  # FPS meters need their window filled
    end = start + WINDOW_S
    wait_for(lambda: time.time() > end + 1.5, timeout=WINDOW_S + FPS_WINDOW_S + 10, interval=0.2)

    check_counts_and_fps(prom, clocks, end)
    check_shipped_promql(prom, shipped_promql)
    check_labels(prom, cameras)

    cameras.stop()
    for clock in clocks.values():
        clock.stop()
    down = prom.wait_for_data(
        'ALERTS{alertname="EdgeCameraDown", alertstate="pending"}', timeout=40
    )
    assert {s["metric"]["camera"] for s in down} == set(CLIPS)
    check_drained_invariants(prom)


def check_counts_and_fps(prom: Any, clocks: dict[str, FrameClock], end: float) -> None:
    received = prom.samples("edge_frames_received_total", WINDOW_S, end)
    decoded = prom.samples("edge_frames_decoded_total", WINDOW_S, end)
    inferred = prom.samples("edge_frames_inferred_total", WINDOW_S, end)
    fps = prom.samples('edge_camera_fps{point="decoded"}', WINDOW_S, end)
    published = prom.samples("edge_frames_published_total", WINDOW_S, end)
    rendered = prom.samples("edge_frames_rendered_total", WINDOW_S, end)
    source = prom.by_label("edge_camera_source_fps", "camera", at=end)
    for name, (_, nominal) in CLIPS.items():
        for counter, label in ((received, "received"), (decoded, "decoded")):
            t0, t1, increase = _window(counter[name])
            sent = clocks[name].between(t0, t1)
            log.info("%s %s: %.0f counted, %d sent in %.1f s", name, label, increase, sent, t1 - t0)
            assert sent > 0, f"{name}: the simulator sent nothing in {t1 - t0:.1f} s"
            slack = EDGE_SLACK_S * nominal
            assert abs(increase - sent) <= slack, f"{name} {label}: {increase} vs {sent} sent"
        assert source[name] == pytest.approx(nominal, rel=0.01), f"{name} source fps"
        log.info("%s: decoded fps gauge %s", name, [v for _, v in fps[name]])
        check_gauge_follows_counter(f"{name} decoded", fps[name], decoded[name])
        assert _window(inferred[name])[2] > 0, f"{name}: nothing inferred"
        points = [("inferred", inferred), ("published", published)]
        if name == WATCHED:
            points.append(("rendered", rendered))
        for point, counter in points:
            gauge = prom.samples(f'edge_camera_fps{{point="{point}"}}', WINDOW_S, end)
            check_gauge_follows_counter(f"{name} {point}", gauge.get(name, []), counter[name])
    viewers = prom.by_label("edge_viewers", "camera", at=end)
    encoders = prom.by_label("edge_encoders_active", "camera", at=end)
    assert viewers == {WATCHED: 1.0, **{c: 0.0 for c in CLIPS if c != WATCHED}}, viewers
    assert encoders == viewers, encoders


def check_gauge_follows_counter(
    what: str, gauge: list[tuple[float, float]], counter: list[tuple[float, float]]
) -> None:
    """The ground truth of an FPS gauge is its counter's increase over the gauge's window, both
    read in the same scrapes (whatever rate the machine manages)."""
    assert gauge, f"{what}: no edge_camera_fps series for this point"
    values = dict(counter)
    compared = 0
    for ts, fps in gauge:
        earlier = [t for t in values if abs(t - (ts - FPS_WINDOW_S)) < 0.25]
        if ts not in values or not earlier:
            continue
        rate = (values[ts] - values[earlier[0]]) / (ts - earlier[0])
        assert abs(fps - rate) <= 0.1 * rate + 2 / FPS_WINDOW_S, (
            f"{what}: gauge {fps}, counter {rate}"
        )
        compared += 1
    assert compared >= 1, f"{what}: no two scrapes one gauge window apart ({gauge})"


def check_shipped_promql(prom: Any, shipped: Any) -> None:
    gpu = bool(prom.query("edge_gpu_memory_total_bytes"))
    queries = (
        [("dashboard: " + t, e) for t, e in shipped.dashboard]
        + [("recording rule " + n, e) for n, e in shipped.recording]
        + [("recorded series " + n, n) for n, _ in shipped.recording]
        + [("alert " + n, e) for n, e in shipped.alert_series()]
    )
    empty = []
    for what, expr in queries:
        result = prom.query(expr)
        if "edge_gpu_" in expr and not gpu:
            assert result == [], f"{what}: GPU series without a GPU"
            continue
        if not prom.finite(result):
            empty.append(f"{what}: {expr} -> {result}")
    assert not empty, "expressions without data:\n" + "\n".join(empty)
    rate = f"rate(edge_stage_seconds_bucket[{WINDOW_S:.0f}s])"
    p95 = f"histogram_quantile(0.95, sum by (stage, le) ({rate}))"
    stages = {s["metric"]["stage"] for s in prom.query(p95) if s["value"][1] not in ("NaN",)}
    assert set(STAGES + VIDEO_STAGES) <= stages, f"stages with latency: {sorted(stages)}"
    # decoded over advertised rate: about 1 when healthy; a tenth is a dead camera, and twice
    # the source would be a rule dividing the wrong series
    ratios = prom.by_label("edge:camera_fps_vs_source:ratio", "camera")
    assert set(ratios) == set(CLIPS) and all(0.1 <= r <= 2 for r in ratios.values()), ratios
    bad = [(r["name"], r.get("lastError")) for r in prom.rules() if r["health"] != "ok"]
    assert not bad, bad


def check_labels(prom: Any, cameras: CameraSimulator) -> None:
    series = prom.api("series", **{"match[]": '{__name__=~"edge_.+"}'})
    assert series
    for s in series:
        for key, value in s.items():
            if key in ("__name__", "instance", "job"):
                continue
            assert "://" not in value and PASSWORD not in value, f"{key}={value} in {s}"
            assert f":{cameras.port}" not in value, f"{key}={value} in {s}"


def check_drained_invariants(prom: Any) -> None:
    def settled() -> bool:
        moving = prom.query(
            "changes(edge_frames_decoded_total[3s]) + changes(edge_frames_inferred_total[3s])"
            " + changes(edge_frames_published_total[3s])"
        )
        return bool(moving) and all(float(s["value"][1]) == 0 for s in moving)

    wait_for(settled, timeout=40, interval=0.25)
    at = time.time()

    def per_camera(expr: str) -> dict[str, float]:
        """Per camera, 0 for a camera without the series (a histogram nothing observed yet)."""
        found = prom.by_label(f"sum by (camera) ({expr})", "camera", at=at)
        assert set(found) <= set(CLIPS), found
        return {cam: found.get(cam, 0.0) for cam in CLIPS}

    def total(expr: str) -> float:
        return sum(prom.finite(prom.query(f"sum({expr})", at=at)))

    decoded = per_camera("edge_frames_decoded_total")
    inferred = per_camera("edge_frames_inferred_total")
    published = per_camera("edge_frames_published_total")
    assert all(v > 0 for v in inferred.values()), inferred
    assert per_camera('edge_stage_seconds_count{stage="decode"}') == decoded
    for stage in ("queue_wait", "preprocess", "inference", "postprocess"):
        assert per_camera(f'edge_stage_seconds_count{{stage="{stage}"}}') == inferred, stage
    assert per_camera('edge_stage_seconds_count{stage="tracking"}') == published
    assert per_camera("edge_end_to_end_seconds_count") == published
    rendered = per_camera("edge_frames_rendered_total")
    assert per_camera("edge_video_latency_seconds_count") == rendered
    assert 0 < rendered[WATCHED] <= published[WATCHED]
    assert all(v == 0 for cam, v in rendered.items() if cam != WATCHED), rendered
    lost = per_camera('edge_frames_dropped_total{reason="queue_full"}')  # results nobody took
    for cam in CLIPS:
        assert published[cam] + lost[cam] == inferred[cam], f"{cam}: inferred, unpublished"
    assert total("edge_batch_size_sum") == total("edge_frames_inferred_total")
    batches = total("edge_batch_size_count")
    assert total("edge_batch_inference_seconds_count") == batches
    assert total("edge_batch_fill_ratio_count") == batches
    # README: once nothing is in flight, every decoded frame was published or dropped with one
    # reason (viewer_slow counts a viewer's lost video, not frames)
    ended = per_camera('edge_frames_dropped_total{reason!="viewer_slow"}')
    assert per_camera('edge_frames_dropped_total{reason="shutdown"}') == dict.fromkeys(CLIPS, 0.0)
    before = per_camera(f"edge_frames_dropped_total{{{BEFORE_INFERENCE}}}")
    for cam in CLIPS:
        assert decoded[cam] == published[cam] + ended[cam], f"{cam}: frames unaccounted for"
        assert decoded[cam] == inferred[cam] + before[cam], f"{cam}: decoded, never inferred"
