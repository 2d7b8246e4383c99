"""`edge run` refuses what it cannot do with one clear line and a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml


def edge_run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


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


def test_invalid_config_exits_2_like_check(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"id": "a", "url": "rtsp://h/x", "fsp": 5}]}))
    result = edge_run(config)
    assert result.returncode == 2
    assert "cameras[0](a).fsp: unknown key" in result.stderr
