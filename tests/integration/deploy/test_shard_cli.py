"""`--shard` on the command line as a user types it: `edge check` names the cameras of a shard,
`$EDGE_SHARD` stands in for the option, and a bad value is refused in one line before anything
runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.config.shard import assign
from edge.testing import run_edge

IDS = [f"cam{i}" for i in range(1, 10)]


def write_config(tmp_path: Path, **extra: object) -> Path:
    data = {"cameras": [{"id": i, "url": f"rtsp://127.0.0.1:9/{i}"} for i in IDS], **extra}
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def served(stdout: str) -> tuple[str, list[str]]:
    line = stdout.splitlines()[-1]
    head, _, ids = line.partition(" serves: ")
    return head, ids.split(", ")


def test_check_names_each_shards_cameras_and_a_fourth_shard_moves_few(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    shard_of: dict[int, dict[str, int]] = {}
    for count in (3, 4):
        expected = assign(IDS, count)
        shard_of[count] = {}
        for k in range(count):
            result = run_edge("check", config, "--shard", f"{k}/{count}")
            assert result.returncode == 0, result.stderr
            assert served(result.stdout) == (f"shard {k}/{count}", expected[k])
            assert f"OK ({len(expected[k])} enabled camera(s)" in result.stdout
            shard_of[count].update(dict.fromkeys(expected[k], k))
    assert sorted(shard_of[3]) == sorted(shard_of[4]) == sorted(IDS)  # each once
    moved = [c for c in IDS if shard_of[3][c] != shard_of[4][c]]
    assert len(moved) <= 4 and all(shard_of[4][c] == 3 for c in moved), moved


def test_environment_and_pod_names_and_config_section(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    by_env = run_edge("check", config, env={"EDGE_SHARD": "edge-2/3"})
    assert served(by_env.stdout) == ("shard 2/3", assign(IDS, 3)[2]), by_env.stderr
    in_file = write_config(tmp_path, shard={"index": 1, "count": 3})
    assert served(run_edge("check", in_file).stdout) == ("shard 1/3", assign(IDS, 3)[1])
    overridden = run_edge("check", in_file, "--shard", "0/3")
    assert served(overridden.stdout) == ("shard 0/3", assign(IDS, 3)[0])


def test_bad_shard_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for command in ("check", "run"):
        for value, reason in (("3/3", "does not exist"), ("two/3", "is not K/N")):
            args = [config] if command == "check" else ["--config", config]
            result = run_edge(command, *args, "--shard", value)
            assert result.returncode == 2, result.stderr
            error = result.stderr.splitlines()[-1]
            assert error.startswith(f"edge {command}: error: argument --shard:"), result.stderr
            assert reason in error and "Traceback" not in result.stderr
    peers = write_config(tmp_path, shard={"count": 2, "peers": ["http://a:1", "http://b:2"]})
    result = run_edge("run", "--config", peers, "--shard", "0/3")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "shard: peers has 2 URLs for 3 shards: give one per shard (--shard 0/3)"
    )
