"""`ConfigSource.load`: the file as `edge run` reads it at start and at every reload, with the
command line's `--host`, `--port` and `--shard` applied again."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.config.diff import diff_configs
from edge.config.shard import ShardSpec, shard_of
from edge.config.source import ConfigSource

IDS = [f"cam{i}" for i in range(12)]


def write(path: Path, ids: list[str], port: int = 8080) -> Path:
    cams = [{"id": i, "url": f"rtsp://127.0.0.1:8554/{i}"} for i in ids]
    path.write_text(yaml.safe_dump({"cameras": cams, "server": {"port": port}}))
    return path


def test_overrides_and_shard_apply_to_every_read(tmp_path: Path) -> None:
    path = write(tmp_path / "cameras.yaml", IDS[:6])
    source = ConfigSource(path, host="127.0.0.2", port=9999, shard=ShardSpec(1, 2))
    first = source.load()
    assert (first.server.host, first.server.port) == ("127.0.0.2", 9999)
    assert [c.id for c in first.cameras] == [i for i in IDS[:6] if shard_of(i, 2) == 1]
    write(path, IDS, port=7000)  # the file's port changes: the command line's still wins
    second = source.load()
    assert second.server.port == 9999
    assert [c.id for c in second.cameras] == [i for i in IDS if shard_of(i, 2) == 1]
    diff = diff_configs(first, second)
    assert set(diff.start) == {i for i in IDS[6:] if shard_of(i, 2) == 1}
    assert diff.stop == () and diff.needs_restart == ()


def test_a_reload_keeps_the_running_shard(tmp_path: Path) -> None:
    """The file's `shard:` read at start stays the shard a reload selects with."""
    path = tmp_path / "cameras.yaml"
    cams = [{"id": i, "url": f"rtsp://127.0.0.1:8554/{i}"} for i in IDS]
    path.write_text(yaml.safe_dump({"cameras": cams, "shard": {"index": 0, "count": 3}}))
    running = ConfigSource(path).load()
    assert [c.id for c in running.cameras] == [i for i in IDS if shard_of(i, 3) == 0]
    reread = ConfigSource(path).load(ShardSpec(running.shard.index, running.shard.count))
    assert diff_configs(running, reread).changes_cameras is False
