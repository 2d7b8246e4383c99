"""`edge demo`: the camera simulator on the shared clips plus the whole service, ready to open.

It fails as `edge run` does: one line on stderr (`edge: cannot listen on ...`), exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from edge.assets import asset
from edge.cli import add_shard_argument, port_number
from edge.commands.run import DEFAULT_CONFIG, REPO_CONFIG, load_or_exit, serve
from edge.config import EdgeConfig
from edge.config.source import ConfigSource
from edge.redact import redact

CLIPS = {
    "highway": "traffic_highway_cctv.mp4",
    "overpass": "traffic_highway_overpass.mp4",
    "parking": "car-detection.mp4",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="simulated RTSP cameras from the shared clips + the service")
    p.add_argument(
        "--config", default=str(REPO_CONFIG), help="YAML config (default: the repository's "
        f"{DEFAULT_CONFIG}, whatever the working directory)",
    )  # fmt: skip
    p.add_argument(
        "--rtsp-port", type=port_number, default=None, help="simulator port (default: free)"
    )
    p.add_argument("--host", help="override server.host")
    p.add_argument("--port", type=port_number, help="override server.port")
    add_shard_argument(p)
    p.set_defaults(func=run)


def point_cameras_at(config: EdgeConfig, urls: dict[str, str]) -> None:
    """Replace the URL of each loopback camera whose path names a simulated stream."""
    for cam in config.cameras:
        parts = urlsplit(cam.url)
        name = parts.path.strip("/")
        if parts.hostname in ("127.0.0.1", "localhost") and name in urls:
            cam.url = urls[name]


def run(args: argparse.Namespace) -> int:
    from edge.app import StartupError
    from edge.ingest.camsim import SimulatorError

    config = load_or_exit(args.config, args.host, args.port, args.shard)
    source = ConfigSource(Path(args.config).absolute(), args.host, args.port, args.shard)
    try:
        _run(config, args.rtsp_port, source)
    except (StartupError, SimulatorError, FileNotFoundError) as exc:
        print(f"edge: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0


def _run(config: EdgeConfig, rtsp_port: int | None, source: ConfigSource) -> None:
    from edge.ingest.camsim import CameraSimulator

    streams = {name: asset("video", clip) for name, clip in CLIPS.items()}
    with CameraSimulator(streams, port=rtsp_port) as sim:
        point_cameras_at(config, sim.urls())
        # a reload (the page's line editor, an edit of the file) points them there again
        source = replace(source, adjust=lambda cfg: point_cameras_at(cfg, sim.urls()))
        started = asyncio.Event()

        async def main() -> None:
            async def announce() -> None:
                await started.wait()
                port = config.server.port
                host = config.server.host
                # the token itself is a secret: never printed, only where it goes
                token = "?token=<server.auth_token>" if config.server.auth_token else ""
                print(
                    f"\nedge demo is running: open http://{host}:{port}/{token} (Ctrl-C stops)\n",
                    flush=True,
                )

            waiter = asyncio.create_task(announce())
            try:
                await serve(config, started, source)
            finally:
                waiter.cancel()

        asyncio.run(main())
