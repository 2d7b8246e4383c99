"""No secret in anything edge prints: the service and every command, run as a user runs them,
on cameras that ask for a password, with the password and the API token in the config.

Everything each process wrote (stdout and stderr, at `-v` debug level), every API answer, the
events and the offline outputs are collected and searched for the password (raw, percent-encoded,
form-encoded), a wrong password typed into a URL, and the token. The runs include the failures
that quote URLs back (refused, unauthorized, not a file, a bad argument), since those are where
libraries leak.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from edge.testing import free_port, run_edge, wait_for

pytestmark = pytest.mark.timeout(600)

PASSWORD = "Sec:r3t@cam/Pw%"
WRONG = "Wr0ng-Passw0rd-77"
TOKEN = "tok-Zq8Ye1Wm4Xv7"
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD), WRONG, TOKEN)


@dataclass
class Transcript:
    """Everything that left the processes, by where it came from."""

    outputs: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        self.outputs[where] = self.outputs.get(where, "") + text

    def add_run(self, where: str, run: subprocess.CompletedProcess[str]) -> None:
        self.add(where, f"[exit {run.returncode}]\n{run.stdout}\n{run.stderr}")


@pytest.fixture(scope="module")
def camera(assets: Path) -> Iterator[tuple[str, Transcript]]:
    """`edge -v camsim` serving a camera that asks for admin:PASSWORD; yields its bare URL."""
    transcript = Transcript()
    env = {**os.environ, "EDGE_CAMSIM_CREDENTIALS": f"admin:{PASSWORD}", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edge.cli", "-v", "camsim", "--port", "0",
           f"pk={assets / 'video' / 'car-detection.mp4'}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        transcript.add("camsim", ready)
        assert ready.startswith("READY "), ready
        yield ready.split()[1], transcript
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        transcript.add("camsim", out + err)


def with_login(url: str, password: str) -> str:
    return url.replace("rtsp://", f"rtsp://admin:{quote(password, safe='')}@")


def get(url: str, token: str | None = None) -> str:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return f"{resp.status} {resp.read().decode(errors='replace')}"
    except urllib.error.HTTPError as err:
        return f"{err.code} {err.read().decode(errors='replace')}"
    except OSError as err:  # not listening yet
        return f"0 {err}"


def write_config(tmp: Path, camera_url: str, port: int, model: Path) -> Path:
    data: dict[str, Any] = {
        "cameras": [
            {"id": "good", "url": camera_url.replace("rtsp://", "rtsp://admin:${EDGE_T_PW}@")},
            {"id": "wrong", "url": with_login(camera_url, WRONG)},
            {"id": "gone", "url": f"rtsp://admin:${{EDGE_T_PW}}@127.0.0.1:{free_port()}/x"},
        ],
        "detector": {"model": str(model), "providers": ["cpu"]},
        "ingest": {
            "open_timeout_s": 2,
            "read_timeout_s": 2,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1.0,
        },  # fmt: skip
        "events": {
            "jsonl": str(tmp / "events.jsonl"),
            "webhook": {
                "url": f"http://hook:${{EDGE_T_PW}}@127.0.0.1:{free_port()}/in",
                "retries": 1,
                "timeout_s": 1,
            },  # fmt: skip
        },
        "server": {"host": "127.0.0.1", "port": port, "auth_token": "${EDGE_T_TOKEN}"},
    }
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_service(config: Path, port: int, env: dict[str, str], transcript: Transcript) -> None:
    """`edge -v run` until every camera showed its fault, with the API read on the way."""
    log_path = config.parent / "edge-run.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "-v", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, text=True,
        )  # fmt: skip
    try:
        wait_for(lambda: get(f"{base}/readyz").startswith("200") or proc.poll() is not None, 90)
        assert proc.poll() is None, log_path.read_text()[-3000:]

        def faults_shown() -> bool:
            cams = {c["id"]: c for c in _json(get(f"{base}/api/cameras", TOKEN))["cameras"]}
            metrics = get(f"{base}/metrics", TOKEN)
            return (
                cams["wrong"]["state"] == "unauthorized"
                and 'edge_camera_unauthorized_total{camera="wrong"} 2.0' in metrics
                and cams["gone"]["last_error"]
            )

        wait_for(faults_shown, 30, interval=0.3)
        proc.send_signal(signal.SIGHUP)  # a reload re-reads every URL: its log lines too
        wait_for(lambda: '"trigger": "signal"' in get(f"{base}/api/config", TOKEN), 30, 0.3)
        for path, token in (("/api/cameras", TOKEN), (f"/metrics?token={TOKEN}", None),
                            ("/api/config", TOKEN),
                            ("/api/cameras", None), (f"/?token={TOKEN}", None),
                            ("/api/cameras?token=wrong-token-1", None)):  # fmt: skip
            transcript.add(f"GET {path}", get(base + path, token))
        transcript.add("POST webrtc", _post(f"{base}/api/cameras/good/webrtc", TOKEN))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    transcript.add("edge run", f"[exit {proc.returncode}]\n" + log_path.read_text())
    assert proc.returncode == 0


def _json(answer: str) -> Any:
    import json

    status, _, body = answer.partition(" ")
    assert status == "200", answer
    return json.loads(body)


def _post(url: str, token: str) -> str:
    request = urllib.request.Request(url, data=b'{"sdp": "v=0 nonsense", "type": "offer"}',
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return f"{resp.status} {resp.read().decode(errors='replace')}"
    except urllib.error.HTTPError as err:
        return f"{err.code} {err.read().decode(errors='replace')}"


def test_no_secret_in_anything_the_service_or_a_command_prints(
    camera: tuple[str, Transcript], dynamic_model: Path, tmp_path: Path
) -> None:
    url, transcript = camera
    port = free_port()
    config = write_config(tmp_path, url, port, dynamic_model)
    env = {"EDGE_T_PW": quote(PASSWORD, safe=""), "EDGE_T_TOKEN": TOKEN}
    run_service(config, port, env, transcript)
    if (tmp_path / "events.jsonl").exists():  # track ends, when vehicles were confirmed
        transcript.add("events", (tmp_path / "events.jsonl").read_text())

    good, wrong = with_login(url, PASSWORD), with_login(url, WRONG)
    raw_gone = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/x"
    out = tmp_path / "study"
    runs = {
        "check": run_edge("-v", "check", config, env=env),
        "detect good": run_edge(
            "-v", "detect", good, "--model", dynamic_model, "--max-frames", "3"
        ),  # fmt: skip
        "detect wrong": run_edge("-v", "detect", wrong, "--model", dynamic_model),
        "detect gone": run_edge("-v", "detect", raw_gone, "--model", dynamic_model),
        "detect bad arg": run_edge("detect", good, "--max-frames", f"x{PASSWORD}"),
        "analyze good": run_edge(
            "-v",
            "analyze",
            good,
            "--config",
            config,
            "--camera",
            "good",
            "--out",
            out,
            "--max-frames",
            "5",
            env=env,
        ),  # fmt: skip
        "analyze wrong": run_edge("-v", "analyze", wrong, "--out", tmp_path / "x"),
        "model prepare": run_edge("-v", "model", "prepare", raw_gone, tmp_path / "o.onnx"),
        "camsim": run_edge("-v", "camsim", "--port", "0", f"x={raw_gone}"),
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        runs["demo busy port"] = run_edge("-v", "demo", "--config", config, "--port",
                                          busy.getsockname()[1], env=env, cwd=tmp_path)  # fmt: skip
    for name, run in runs.items():
        transcript.add_run(name, run)
    for name in ("frames.jsonl", "events.jsonl", "summary.json"):
        if name != "events.jsonl" or (out / name).exists():  # events only if a track ended
            transcript.add(f"analyze {name}", (out / name).read_text())

    assert runs["detect good"].returncode == 0, runs["detect good"].stderr[-2000:]
    assert runs["analyze good"].returncode == 0, runs["analyze good"].stderr[-2000:]
    expected_failures = ("detect wrong", "detect gone", "analyze wrong", "model prepare",
                         "camsim", "demo busy port", "detect bad arg")  # fmt: skip
    for name in expected_failures:
        assert runs[name].returncode != 0, name
        assert runs[name].stderr.strip(), name
    assert "401 Unauthorized" in runs["detect wrong"].stderr
    assert "admin:***@" in runs["detect gone"].stderr
    for name, run in runs.items():  # what a person sees (`pytest -s`)
        print(f"{name}: exit {run.returncode}: {(run.stderr.strip().splitlines() or [''])[-1]}")
    for where, text in transcript.outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{where} shows {secret!r}:\n{text[-3000:]}"
        assert "Traceback" not in text, f"{where}:\n{text[-3000:]}"
