"""A GStreamer RTSP server that plays video files as live, looping H.264 cameras.

Runs under the system interpreter (`/usr/bin/python3`) because `gi` comes from Debian packages,
so it imports nothing from `edge`. The parent talks to it through stdout (one `READY url ...`
line once every stream plays) and signals: SIGTERM/SIGINT stop it cleanly, SIGSTOP freezes it the
way a hung camera freezes, and EOF on stdin (with `--watch-stdin`) means the parent died.

With `EDGE_CAMSIM_CREDENTIALS=user:password` in its environment (never on the command line, where
`ps` would show it) every stream asks for those credentials (RTSP Basic or Digest), as a real
camera does: a client without them, or with others, gets `401 Unauthorized`.

Each file is decoded at real-time pace by its own pipeline that seeks back to 0 on EOS and feeds
an `intervideosink`; the RTSP media (shared by all clients) re-encodes it with a GOP of about one
second so that a client opening mid-stream gets a keyframe quickly (the clips' own GOPs are up to
10 s long, and the server answers DESCRIBE only once it can describe the stream).

Usage: rtsp_server.py [--host 127.0.0.1] [--port 8554] [--watch-stdin] NAME=FILE ...
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CREDENTIALS_ENV = "EDGE_CAMSIM_CREDENTIALS"
_ROLE = "viewer"


def parse_streams(items: list[str]) -> dict[str, str]:
    streams: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not _NAME.match(name) or not path:
            raise SystemExit(f"rtsp_server: bad stream {item!r}: expected NAME=FILE")
        if name in streams:
            raise SystemExit(f"rtsp_server: stream name {name!r} given twice")
        if not os.path.isfile(path):
            raise SystemExit(f"rtsp_server: {name}: file not found: {path}")
        streams[name] = os.path.abspath(path)
    if not streams:
        raise SystemExit("rtsp_server: no streams given")
    return streams


class FilePlayer:
    """Decodes one file at real-time pace into an inter-video channel, looping on EOS."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.pipeline = Gst.parse_launch(
            "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=I420 "
            "! intervideosink name=sink sync=true"
        )
        self.pipeline.get_by_name("src").set_property("location", path)
        self.pipeline.get_by_name("sink").set_property("channel", name)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::eos", self._on_eos)
        bus.connect("message::error", self._on_error)

    def preroll(self) -> tuple[int, int]:
        """Pause the pipeline until the first frame is ready; return the file's frame rate."""
        self.pipeline.set_state(Gst.State.PAUSED)
        result, _, _ = self.pipeline.get_state(10 * Gst.SECOND)
        if result == Gst.StateChangeReturn.FAILURE:
            raise SystemExit(f"rtsp_server: {self.name}: cannot play the file")
        caps = self.pipeline.get_by_name("sink").get_static_pad("sink").get_current_caps()
        ok, num, den = caps.get_structure(0).get_fraction("framerate") if caps else (False, 0, 1)
        return (num, den) if ok and num > 0 and den > 0 else (25, 1)

    def play(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def close(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)

    def _on_eos(self, _bus: Gst.Bus, _msg: Gst.Message) -> None:
        self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)

    def _on_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        err, debug = msg.parse_error()
        print(f"rtsp_server: {self.name}: {err.message} ({debug})", file=sys.stderr, flush=True)


def media_factory(name: str, fps: tuple[int, int]) -> GstRtspServer.RTSPMediaFactory:
    """The file's own frame rate is forced on `intervideosrc`, which otherwise runs at 30 fps."""
    gop = max(1, round(fps[0] / fps[1]))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( intervideosrc channel={name} ! video/x-raw,framerate={fps[0]}/{fps[1]} "
        "! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bframes=0 "
        "threads=1 ! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    return factory


def require_credentials(
    server: GstRtspServer.RTSPServer, factories: list[GstRtspServer.RTSPMediaFactory], text: str
) -> None:
    """Only `user:password` may watch; anonymous clients get no token and so no access."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise SystemExit(f"rtsp_server: {CREDENTIALS_ENV} must be USER:PASSWORD")
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, _ROLE)
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    auth.add_digest(user, password, token)
    server.set_auth(auth)
    role = Gst.Structure.new_from_string(
        f"{_ROLE}, {GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS}=(boolean)true, "
        f"{GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT}=(boolean)true"
    )
    for factory in factories:
        factory.add_role_from_structure(role)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    parser.add_argument("streams", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args(argv)
    streams = parse_streams(args.streams)

    Gst.init(None)
    loop = GLib.MainLoop()
    players = [FilePlayer(name, path) for name, path in streams.items()]
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    factories = [media_factory(player.name, player.preroll()) for player in players]
    for player, factory in zip(players, factories, strict=True):
        mounts.add_factory(f"/{player.name}", factory)
    credentials = os.environ.pop(CREDENTIALS_ENV, "")
    if credentials:
        require_credentials(server, factories, credentials)
    for player in players:
        player.play()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    port = server.get_bound_port()

    def quit_loop(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)
    if args.watch_stdin:
        GLib.io_add_watch(
            sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, _on_stdin, loop
        )
    urls = " ".join(f"rtsp://{args.host}:{port}/{name}" for name in streams)
    print(f"READY {urls}", flush=True)
    try:
        loop.run()
    finally:
        for player in players:
            player.close()
    return 0


def _on_stdin(fd: int, condition: GLib.IOCondition, loop: GLib.MainLoop) -> bool:
    """The parent holds our stdin open; EOF means it died, so we must not linger."""
    data = os.read(fd, 4096) if condition & GLib.IO_IN else b""
    if not data:
        loop.quit()
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
