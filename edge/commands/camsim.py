"""`edge camsim [--port 8554] NAME=FILE ...`: serve video files as live, looping RTSP cameras.

With `EDGE_CAMSIM_CREDENTIALS=user:password` in the environment (not an option: a command line
shows in `ps`), the cameras ask for those credentials, as real ones do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from edge.cli import port_number
from edge.redact import redact


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "camsim",
        help="serve video files as live RTSP cameras (rtsp://HOST:PORT/NAME)",
        description="Serve each FILE as a live, looping H.264 RTSP stream at real-time pace. "
        "Prints 'READY url ...' once every stream plays; stops on SIGTERM or Ctrl-C. "
        "EDGE_CAMSIM_CREDENTIALS=user:password in the environment makes every stream ask for "
        "them (RTSP Digest).",
    )
    p.add_argument("--port", type=port_number, default=8554, help="RTSP port (0: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("streams", nargs="+", metavar="NAME=FILE", help="camera name and video file")
    p.set_defaults(func=run)


def parse_streams(items: list[str]) -> dict[str, Path]:
    streams: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"edge camsim: {item!r}: expected NAME=FILE")
        if name in streams:
            raise SystemExit(f"edge camsim: camera name {name!r} given twice")
        streams[name] = Path(path).expanduser()
    return streams


def run(args: argparse.Namespace) -> int:
    from edge.ingest.camsim import CREDENTIALS_ENV, CameraSimulator, SimulatorError

    streams = parse_streams(args.streams)
    credentials: tuple[str, str] | None = None
    if os.environ.get(CREDENTIALS_ENV):
        user, _, password = os.environ[CREDENTIALS_ENV].partition(":")
        credentials = (user, password)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        sim = CameraSimulator(streams, port=args.port, host=args.host, credentials=credentials)
        sim.start()
    except (FileNotFoundError, SimulatorError) as exc:
        print(f"edge camsim: {redact(str(exc))}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"edge camsim: {CREDENTIALS_ENV}: {exc}", file=sys.stderr)
        return 2
    try:
        print("READY " + " ".join(sim.urls().values()), flush=True)
        while not stop.wait(0.5):
            if not sim.running:
                print("edge camsim: the RTSP server exited", file=sys.stderr)
                return 1
        return 0
    finally:
        sim.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
