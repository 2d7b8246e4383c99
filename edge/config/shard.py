"""Which cameras a shard serves: rendezvous (highest-random-weight) hashing of camera ids.

Shard K of N serves the cameras for which K scores highest among 0..N-1, the score being a keyed
BLAKE2b of the camera id and the shard number. Every camera has exactly one shard; every process
that reads the same config agrees without talking to the others (BLAKE2b, unlike Python's
`hash()`, is the same in every process and on every machine); and going from N to N+1 shards
moves only the cameras that the new shard wins, about 1/(N+1) of them, each to the new shard,
while a modulo of a hash would move most of them.

    config = apply_shard(load_config(path), ShardSpec(1, 3))   # shard 1 of 3 (0-based)

Raises ConfigError when the command line's N does not fit the config's `shard.peers`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from edge.config.loading import ConfigError
from edge.config.schema import EdgeConfig, ShardConfig

_ORDINAL = re.compile(r"^(?:.+-)?(\d+)$")
"""`2` or a StatefulSet pod's name, `edge-2`: its ordinal is the number after the last '-'."""


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """`K/N` from the command line: shard `index` (0-based) of `count`."""

    index: int
    count: int


def parse_shard(text: str) -> ShardSpec:
    """`K/N`, where K may be a StatefulSet pod name ending in `-K` (`edge-2/3`), so that a pod
    can pass `$(POD_NAME)/N`. Raises ValueError with a one-line reason."""
    left, sep, right = text.strip().rpartition("/")
    match = _ORDINAL.match(left)
    if not sep or match is None or not right.isdigit():
        raise ValueError(
            f"{text!r} is not K/N (shard K of N, K from 0; K may be a pod name NAME-K)"
        )
    index, count = int(match.group(1)), int(right)
    if count < 1 or index >= count:
        raise ValueError(f"{text!r}: shard {index} does not exist among {count} (K is 0 to N-1)")
    return ShardSpec(index, count)


def _score(camera_id: str, shard: int) -> int:
    digest = hashlib.blake2b(camera_id.encode(), digest_size=8, key=b"edge-shard-%d" % shard)
    return int.from_bytes(digest.digest(), "big")


def shard_of(camera_id: str, count: int) -> int:
    """The shard (0 to count-1) that serves `camera_id`; ties (never seen with 64-bit scores)
    go to the lowest shard."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    return max(range(count), key=lambda k: (_score(camera_id, k), -k))


def assign(camera_ids: Iterable[str], count: int) -> dict[int, list[str]]:
    """Every shard (0 to count-1, empty ones too) → the ids it serves, in the given order."""
    shards: dict[int, list[str]] = {k: [] for k in range(count)}
    for camera_id in camera_ids:
        shards[shard_of(camera_id, count)].append(camera_id)
    return shards


def apply_shard(config: EdgeConfig, spec: ShardSpec | None = None) -> EdgeConfig:
    """The config with only this shard's cameras (`spec` from the command line, else the
    config's `shard:`). Disabled cameras take part in the hashing, so that enabling one never
    moves the others. A shard may end up with no camera (more shards than cameras): it then
    serves an empty page."""
    shard = config.shard
    if spec is not None:
        try:
            shard = ShardConfig(index=spec.index, count=spec.count, peers=shard.peers)
        except ValidationError as exc:  # the file's peers do not fit the command line's N
            reasons = [e["msg"].removeprefix("Value error, ") for e in exc.errors()]
            where = f"(--shard {spec.index}/{spec.count})"
            raise ConfigError([f"shard: {r} {where}" for r in reasons]) from None
    if shard.count == 1:
        return config.model_copy(update={"shard": shard})
    mine = [c for c in config.cameras if shard_of(c.id, shard.count) == shard.index]
    return config.model_copy(update={"cameras": mine, "shard": shard})


def peer_urls(shard: ShardConfig) -> list[str]:
    """Base URL of every shard's page (index k at position k), or [] when none is configured."""
    if not shard.peers:
        return []
    if len(shard.peers) == 1 and "{k}" in shard.peers[0]:
        return [shard.peers[0].replace("{k}", str(k)) for k in range(shard.count)]
    return list(shard.peers)
