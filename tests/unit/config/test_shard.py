"""Rendezvous hashing of camera ids to shards (edge/config/shard.py) and `K/N` parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from edge.config import ConfigError, parse_config
from edge.config.shard import ShardSpec, apply_shard, assign, parse_shard, peer_urls, shard_of

NINE = [f"cam{i}" for i in range(1, 10)]
MANY = [f"site{i // 50}-cam{i % 50}" for i in range(6000)]


def config_of(ids: list[str], **shard: object) -> dict:
    data: dict = {"cameras": [{"id": i, "url": f"rtsp://127.0.0.1:8554/{i}"} for i in ids]}
    if shard:
        data["shard"] = shard
    return data


def test_every_camera_has_exactly_one_of_three_shards() -> None:
    shards = assign(NINE, 3)
    assert sorted(shards) == [0, 1, 2]
    served = [cam for ids in shards.values() for cam in ids]
    assert sorted(served) == sorted(NINE)  # none twice, none missing
    for k, ids in shards.items():
        config = apply_shard(parse_config(config_of(NINE)), ShardSpec(k, 3))
        assert [c.id for c in config.cameras] == ids


def test_a_fourth_shard_takes_cameras_only_for_itself_and_about_a_quarter() -> None:
    for ids, bound in ((NINE, 4), (MANY, None)):
        moved = [c for c in ids if shard_of(c, 3) != shard_of(c, 4)]
        assert all(shard_of(c, 4) == 3 for c in moved)  # nothing moves between old shards
        if bound is not None:
            assert len(moved) <= bound, moved
        else:
            assert 0.22 < len(moved) / len(ids) < 0.28  # 1/4 expected
    removed = [c for c in MANY if shard_of(c, 4) != 3 and shard_of(c, 4) != shard_of(c, 3)]
    assert removed == []  # dropping shard 3 again moves only its own cameras


@pytest.mark.parametrize("count", [2, 3, 5, 8])
def test_shards_are_balanced(count: int) -> None:
    sizes = Counter(shard_of(c, count) for c in MANY)
    assert set(sizes) == set(range(count))
    expected = len(MANY) / count
    assert all(abs(n - expected) < 0.1 * expected for n in sizes.values()), sizes


def test_same_assignment_in_other_processes_whatever_their_hash_seed() -> None:
    """Python's own hash() of a str changes with PYTHONHASHSEED; the assignment must not."""
    code = (
        "from edge.config.shard import shard_of; "
        "print([shard_of(f'cam{i}', 3) for i in range(1, 10)])"
    )
    here = str([shard_of(c, 3) for c in NINE])
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout.strip())
    assert outputs == {here}
    assert len(set(here)) > 1  # not everything on one shard


def test_one_shard_is_the_whole_config() -> None:
    config = apply_shard(parse_config(config_of(NINE)))
    assert [c.id for c in config.cameras] == NINE and config.shard.count == 1


def test_config_shard_section_applies_without_command_line() -> None:
    config = apply_shard(parse_config(config_of(NINE, index=1, count=3)))
    assert [c.id for c in config.cameras] == assign(NINE, 3)[1]


def test_disabled_cameras_take_part_so_enabling_one_moves_nothing() -> None:
    data = config_of(NINE, index=0, count=3)
    data["cameras"][0]["enabled"] = False
    served = [c.id for c in apply_shard(parse_config(data)).enabled_cameras]
    assert served == [c for c in assign(NINE, 3)[0] if c != "cam1"]


def test_more_shards_than_cameras_leaves_some_empty() -> None:
    shards = assign(["a", "b"], 5)
    assert sum(len(v) for v in shards.values()) == 2
    empty = next(k for k, v in shards.items() if not v)
    assert apply_shard(parse_config(config_of(["a", "b"])), ShardSpec(empty, 5)).cameras == []


@pytest.mark.parametrize(
    ("text", "spec"),
    [("0/1", ShardSpec(0, 1)), ("2/3", ShardSpec(2, 3)), ("edge-2/3", ShardSpec(2, 3)),
     ("my-edge-0/4", ShardSpec(0, 4)), (" 1/2 ", ShardSpec(1, 2))],
)  # fmt: skip
def test_parse_shard(text: str, spec: ShardSpec) -> None:
    assert parse_shard(text) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [("3/3", "does not exist"), ("1/0", "does not exist"), ("x/3", "is not K/N"),
     ("1", "is not K/N"), ("-1/3", "is not K/N"), ("edge/3", "is not K/N"), ("1/3/4", "is not")],
)  # fmt: skip
def test_parse_shard_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_shard(text)


def test_peer_urls_from_a_template_or_a_list() -> None:
    config = parse_config(config_of(NINE, count=3, peers=["http://edge-{k}.edge:8080"]))
    assert peer_urls(config.shard) == [f"http://edge-{k}.edge:8080" for k in range(3)]
    urls = ["http://a:1", "http://b:2", "http://c:3"]
    assert peer_urls(parse_config(config_of(NINE, count=3, peers=urls)).shard) == urls
    assert peer_urls(parse_config(config_of(NINE)).shard) == []


def test_command_line_count_must_fit_the_configs_peer_list() -> None:
    urls = ["http://a:1", "http://b:2", "http://c:3"]
    config = parse_config(config_of(NINE, count=3, peers=urls))
    with pytest.raises(ConfigError) as err:
        apply_shard(config, ShardSpec(0, 4))
    assert err.value.problems == ["shard: peers has 3 URLs for 4 shards: give one per shard "
                                  "(--shard 0/4)"]  # fmt: skip
