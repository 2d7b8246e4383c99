"""`edge run [--config F]`: the whole service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from edge.assets import REPO_ROOT
from edge.cli import add_shard_argument, port_number
from edge.commands.check import print_problems
from edge.config import ConfigError, EdgeConfig
from edge.config.shard import ShardSpec
from edge.config.source import ConfigSource
from edge.redact import redact

DEFAULT_CONFIG = "configs/cameras.yaml"
REPO_CONFIG = REPO_ROOT / DEFAULT_CONFIG
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the service (ingest, detect, track, WebRTC, metrics)")
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})"
    )
    p.add_argument("--host", help="override server.host")
    p.add_argument("--port", type=port_number, help="override server.port")
    add_shard_argument(p)
    p.set_defaults(func=run)


def load_or_exit(
    path: str, host: str | None = None, port: int | None = None, shard: ShardSpec | None = None
) -> EdgeConfig:
    """Load the config with CLI overrides, keep this shard's cameras (`--shard`, else the
    config's `shard:`), or print every problem and exit 2 (as `edge check`)."""
    if not Path(path).exists():
        where = "" if Path(path).is_absolute() else f" (in {Path.cwd()})"
        print(
            f"edge: no config file {path}{where}: pass --config FILE; the repository's "
            f"{REPO_CONFIG.relative_to(REPO_ROOT)} is a commented example to start from",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        config = ConfigSource(Path(path), host, port, shard).load()
    except ConfigError as exc:
        print_problems(exc)
        raise SystemExit(2) from None
    check_exposure_or_exit(config)
    if config.shard.count > 1:
        ids = ", ".join(c.id for c in config.enabled_cameras) or "none"
        log.info("shard %d/%d serves cameras: %s", config.shard.index, config.shard.count, ids)
    return config


def check_exposure_or_exit(config: EdgeConfig) -> None:
    """Refuse (exit 2) to serve beyond loopback without a token unless `server.auth: none`
    says so, and then warn: the page, `/api` and `/metrics` would be open to the network."""
    server = config.server
    problem = server.exposure_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    if server.is_open_beyond_loopback:
        log.warning(
            "server.auth is none: anyone who can reach %s:%s can watch every camera and read "
            "/api and /metrics without a token",
            server.host,
            server.port,
        )


async def serve(
    config: EdgeConfig, started: asyncio.Event | None = None, source: ConfigSource | None = None
) -> None:
    """Run the service; SIGTERM and SIGINT cancel it and every stage shuts down in order. With
    `source`, SIGHUP and every change of its file reload the config (`edge.reload`)."""
    from edge.app import EdgeService

    service = EdgeService(config, source=source)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    reloads: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        t = loop.create_task(service.reload_config("signal"), name="reload:signal")
        reloads.add(t)
        t.add_done_callback(reloads.discard)

    if source is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await service.run(started)
    except asyncio.CancelledError:
        log.info("edge: shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        for t in reloads:
            t.cancel()


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config, args.host, args.port, args.shard)
    from edge.app import StartupError

    try:
        source = ConfigSource(Path(args.config).absolute(), args.host, args.port, args.shard)
        asyncio.run(serve(config, source=source))
    except StartupError as exc:
        print(f"edge: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0
