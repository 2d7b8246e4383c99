"""Where the running config comes from: the file plus what the command line changes in it
(`--host`, `--port`, `--shard`), so that a reload reads the file exactly as the start did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.config.loading import load_config
from edge.config.schema import EdgeConfig
from edge.config.shard import ShardSpec, apply_shard


@dataclass(frozen=True, slots=True)
class ConfigSource:
    path: Path
    host: str | None = None
    port: int | None = None
    shard: ShardSpec | None = None
    """`--shard K/N`; None: the file's `shard:`."""
    adjust: Callable[[EdgeConfig], None] | None = None
    """Changes the command applies after loading (`edge demo` points the cameras at its
    simulator), applied again at every reload."""

    def load(self, shard: ShardSpec | None = None) -> EdgeConfig:
        """Read and validate the file, keep this shard's cameras (`shard`, else `--shard`, else
        the file's) and apply the command line's overrides. Raises ConfigError."""
        config = apply_shard(load_config(self.path), shard or self.shard)
        if self.host is not None:
            config.server.host = self.host
        if self.port is not None:
            config.server.port = self.port
        if self.adjust is not None:
            self.adjust(config)
        return config
