"""`edge run` and `edge demo` refuse what they cannot do with one clear line and a non-zero exit,
no traceback; and a running service says why each broken camera does not stream.

The fault-matrix tests share one service on real cameras: a GStreamer RTSP server that asks for a
password (RTSP Digest), one camera with the right password (odd characters included, from the
environment), one with a wrong one, one on a port nobody listens on, and a file of random bytes.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.testing import ServiceProcess, free_port, metric_value, run_edge, wait_for

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "Rt$p@ss/w:rd"
"""The cameras' password: '@', '/', ':' and '$' all need care in a URL and in redaction."""
WRONG = "Wr0ng-Passw0rd"
INGEST = {"open_timeout_s": 2.0, "read_timeout_s": 2.0, "backoff_initial_s": 0.2,
          "backoff_max_s": 2.0}  # fmt: skip


def edge_run(config: Path, **env: str) -> Any:
    return run_edge("run", "--config", config, timeout=60, env=env)


def test_busy_port_is_reported_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cameras": [{"id": "a", "url": "rtsp://u:s3cr3tpw@127.0.0.1:1/x"}],
                    "server": {"port": port},
                    "events": {"jsonl": None},
                }
            )
        )
        result = edge_run(config)
    assert result.returncode == 1
    assert f"edge: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cr3tpw" not in result.stderr + result.stdout


def test_an_events_file_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "events").write_text("a file where the events folder should be")
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"id": "a", "url": "rtsp://127.0.0.1:1/x"}],
                "server": {"port": port},
                "events": {"jsonl": str(tmp_path / "events" / "events.jsonl")},
            }
        )
    )
    result = edge_run(config)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == (
        f"edge: events.jsonl: cannot write {tmp_path}/events/events.jsonl: a file stands where a "
        "folder of its path should be"
    )
    assert "edge serving" not in result.stderr  # refused before it ever served
    assert "Traceback" not in result.stderr


def test_a_config_that_is_not_text_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\xcb\x00binary")
    for command in ("run", "check"):
        args = ("--config", config) if command == "run" else (config,)
        result = run_edge(command, *args)
        assert result.returncode == 2, result.stderr
        assert f"config: cannot read {config}: not UTF-8 text (byte 0xcb at offset 0)" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_invalid_config_exits_2_like_check(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"id": "a", "url": "rtsp://h/x", "fsp": 5}]}))
    result = edge_run(config)
    assert result.returncode == 2
    assert "cameras[0](a).fsp: unknown key" in result.stderr


def test_a_missing_environment_variable_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    url = "rtsp://admin:${EDGE_TEST_CAM1_PASSWORD}@127.0.0.1:1/x"
    config.write_text(yaml.safe_dump({"cameras": [{"id": "cam1", "url": url}]}))
    env = {k: v for k, v in os.environ.items() if k != "EDGE_TEST_CAM1_PASSWORD"}
    for command in ("run", "check"):
        result = run_edge(command, config, timeout=60, env=env) if command == "check" else (
            run_edge("run", "--config", config, timeout=60, env=env)
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[0] == (
            "cameras[0].url: environment variable EDGE_TEST_CAM1_PASSWORD is not set (camera cam1)"
        )
        assert "Traceback" not in result.stderr


def test_demo_on_a_busy_port_prints_the_one_line_error_as_run_does(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_edge("demo", "--config", REPO / "configs" / "cameras.yaml", "--host",
                          "127.0.0.1", "--port", port, timeout=120, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        f"edge: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in result.stderr + result.stdout


@dataclass
class Faults:
    svc: ServiceProcess
    started_at: float


@pytest.fixture(scope="module")
def faults(
    assets: Path, dynamic_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Faults]:
    tmp = tmp_path_factory.mktemp("faults-auth")
    junk = tmp / "junk.mp4"
    junk.write_bytes(random.Random(7).randbytes(128 * 1024))
    clip = assets / "video" / "car-detection.mp4"
    with CameraSimulator({"pk": clip}, credentials=("admin", PASSWORD)) as sim:
        base = f"127.0.0.1:{sim.port}/pk"
        port = free_port()
        config = {
            "cameras": [
                {"id": "good", "url": "rtsp://admin:${EDGE_TEST_CAM_PASSWORD}@" + base},
                {"id": "wrongpw", "url": f"rtsp://admin:{WRONG}@{base}"},
                {"id": "unreachable",
                 "url": f"rtsp://admin:${{EDGE_TEST_CAM_PASSWORD}}@127.0.0.1:{free_port()}/x"},
                {"id": "junk", "url": str(junk)},
            ],  # fmt: skip
            "detector": {"model": str(dynamic_model), "providers": ["cpu"]},
            "ingest": INGEST,
            "events": {"jsonl": str(tmp / "events" / "events.jsonl")},
            "server": {"host": "127.0.0.1", "port": port},
        }
        config_path = tmp / "cameras.yaml"
        config_path.write_text(yaml.safe_dump(config))
        os.environ["EDGE_TEST_CAM_PASSWORD"] = PASSWORD  # as typed: edge encodes it in the URL
        try:
            started_at = time.monotonic()
            svc = ServiceProcess(config_path, port, tmp / "edge-run.log")
        finally:
            del os.environ["EDGE_TEST_CAM_PASSWORD"]
        try:
            svc.wait_ready()  # the right password streams through the same server
            yield Faults(svc, started_at)
        finally:
            svc.stop()
    log = svc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    for secret in (PASSWORD, quote(PASSWORD, safe=""), WRONG):
        assert secret not in log


def cameras(svc: ServiceProcess) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def metric(svc: ServiceProcess, name: str, camera: str) -> float:
    return metric_value(svc.text("/metrics"), name, camera=camera)


def test_fault_wrong_credentials(faults: Faults) -> None:
    """Unauthorized, said so with the reason, counted, and retried only every half-cap to cap
    (1-2 s here) instead of at full rate; the right password on the same server streams."""
    svc = faults.svc
    wait_for(lambda: cameras(svc)["wrongpw"]["state"] == "unauthorized", 20, interval=0.2)
    wait_for(lambda: metric(svc, "edge_camera_unauthorized_total", "wrongpw") >= 3, 30)
    elapsed = time.monotonic() - faults.started_at
    attempts = metric(svc, "edge_camera_unauthorized_total", "wrongpw")
    assert attempts <= elapsed / (INGEST["backoff_max_s"] / 2) + 1  # never faster than the cap
    wrong = cameras(svc)["wrongpw"]
    assert wrong["state"] in ("unauthorized", "connecting")
    assert "401 Unauthorized" in wrong["last_error"]
    assert wrong["last_error_at"].endswith("Z")
    assert WRONG not in wrong["url"] and "admin:***@" in wrong["url"]
    assert cameras(svc)["good"]["state"] == "streaming"
    assert metric(svc, "edge_camera_unauthorized_total", "good") == 0
    text = svc.text("/metrics")
    assert 'edge_camera_state{camera="wrongpw",state="unauthorized"}' in text
    assert 'edge_camera_unauthorized_total{camera="unreachable"} 0.0' in text  # at 0 from start


def test_fault_unreachable_camera_at_start(faults: Faults) -> None:
    """Backing off and saying why, while the others run; never called unauthorized."""
    svc = faults.svc
    wait_for(lambda: metric(svc, "edge_camera_reconnects_total", "unreachable") >= 2, 30)
    cam = cameras(svc)["unreachable"]
    assert cam["state"] in ("backoff", "connecting")
    assert cam["last_error"] == "cannot open: ConnectionRefusedError: Connection refused"
    assert metric(svc, "edge_camera_unauthorized_total", "unreachable") == 0
    assert cameras(svc)["good"]["state"] == "streaming"


def test_a_camera_that_stopped_for_good_says_why(faults: Faults) -> None:
    junk = cameras(faults.svc)["junk"]
    assert junk["state"] == "stopped"
    assert junk["last_error"] == (
        "cannot open: InvalidDataError: Invalid data found when processing input"
    )
    assert cameras(faults.svc)["good"]["last_error"] is None
