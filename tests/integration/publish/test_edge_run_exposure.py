"""`edge run` beyond loopback: refused without a token, allowed and warned with `auth: none`.

Real `edge run` / `edge check` subprocesses. The refusals happen before any camera or model is
opened, so a dead camera URL is enough; the one that starts is stopped once it answers.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.testing import ServiceProcess, free_port, wait_for

REFUSAL = "server.host: '0.0.0.0' is reachable from other machines but server.auth_token is not set"


def write_config(tmp_path: Path, **server: Any) -> Path:
    config = {
        "cameras": [{"id": "cam1", "url": f"rtsp://127.0.0.1:{free_port()}/none"}],
        "detector": {"max_batch": 1},  # no model preparation: the tests stop before it matters
        "events": {"jsonl": str(tmp_path / "events.jsonl")},
        "server": {"port": free_port(), **server},
    }
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("where", ["file", "command line"])
def test_edge_run_refuses_the_network_without_a_token(tmp_path: Path, where: str) -> None:
    if where == "file":
        done = edge("run", "--config", str(write_config(tmp_path, host="0.0.0.0")))
    else:  # --host is applied after the file is read: the check sees the host that is used
        done = edge("run", "--config", str(write_config(tmp_path)), "--host", "0.0.0.0")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(REFUSAL), done.stderr
    assert "server.auth: none" in lines[0] and "Traceback" not in done.stderr


def test_edge_run_on_loopback_overrides_a_file_that_binds_everywhere(tmp_path: Path) -> None:
    config = write_config(tmp_path, host="0.0.0.0")
    assert edge("check", str(config)).returncode == 2  # as written, it would be refused
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    healthz = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: http_status(healthz) == 200 or service.poll() is not None, 60)
        assert service.poll() is None, service.stderr.read() if service.stderr else ""
    finally:
        service.terminate()
        service.wait(30)


def test_edge_check_reports_the_exposure(tmp_path: Path) -> None:
    done = edge("check", str(write_config(tmp_path, host="0.0.0.0")))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith(REFUSAL), done.stderr
    ok = edge("check", str(write_config(tmp_path, host="0.0.0.0", auth_token="tok-12345678")))
    assert ok.returncode == 0, ok.stderr
    contradiction = edge(
        "check", str(write_config(tmp_path, auth="none", auth_token="tok-12345678"))
    )
    assert contradiction.returncode == 2
    assert "server: auth is 'none' but auth_token is set" in contradiction.stderr


def test_edge_run_with_auth_none_serves_the_network_and_warns(tmp_path: Path) -> None:
    config = write_config(tmp_path, host="0.0.0.0", auth="none")
    port = yaml.safe_load(config.read_text())["server"]["port"]
    service = ServiceProcess(config, port, tmp_path / "edge-run.log")
    try:
        wait_for(lambda: service.status("/healthz") == 200 or service.proc.poll() is not None, 60)
        assert service.proc.poll() is None, service.log()
        assert service.status("/api/cameras") == 200  # open, as asked
        warnings = [line for line in service.log().splitlines() if " WARNING " in line]
        assert any(
            "server.auth is none: anyone who can reach 0.0.0.0" in line for line in warnings
        ), service.log()
    finally:
        service.stop()
