"""How camera URLs are classified and opened, and that none of it leaks a password."""

from __future__ import annotations

import errno
import http.server
import random
import socket
import threading
import time
from pathlib import Path

import av
import pytest

from edge.config import CameraConfig, IngestConfig
from edge.ingest.media import (
    MediaLocation,
    OpenError,
    classify_open_error,
    open_media,
    open_options,
)
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for


@pytest.mark.parametrize(
    ("url", "target", "scheme"),
    [
        ("/data/clip.mp4", "/data/clip.mp4", "file"),
        ("file:///data/my%20clip.mp4", "/data/my clip.mp4", "file"),
        ("rtsp://cam.local:554/live", "rtsp://cam.local:554/live", "rtsp"),
        ("HTTP://cam/video.mjpg", "HTTP://cam/video.mjpg", "http"),
    ],
)
def test_locations_are_classified(url, target, scheme):
    loc = MediaLocation.parse(url)
    assert (loc.target, loc.scheme) == (target, scheme)
    assert loc.is_file == (scheme == "file")


def test_home_relative_paths_expand():
    assert MediaLocation.parse("~/x.mp4").target == str(Path.home() / "x.mp4")


def test_rtsp_opens_over_tcp_without_probing_and_with_bounded_reads():
    opts = open_options(MediaLocation.parse("rtsp://h/x"), IngestConfig(read_timeout_s=3.0))
    assert opts == {
        "rtsp_transport": "tcp",
        "analyzeduration": "0",
        "probesize": "32",
        "timeout": "1500000",  # half: FFmpeg's stall surfaces after 2x (see edge.ingest.media)
    }


def test_http_has_a_timeout_and_files_need_no_options():
    assert "timeout" in open_options(MediaLocation.parse("https://h/x"), IngestConfig())
    assert open_options(MediaLocation.parse("/x.mp4"), IngestConfig()) == {}


def test_source_never_shows_the_password_before_it_runs():
    cam = CameraConfig(id="c1", url="rtsp://admin:pa55word@10.0.0.5/stream1")
    src = CameraSource(cam, IngestConfig(), EdgeMetrics())
    texts = [repr(src), src.url, repr(src.media), src.media.safe_url]
    assert all("pa55word" not in t for t in texts)
    assert src.url == "rtsp://admin:***@10.0.0.5/stream1"
    assert src.state == CameraState.STOPPED
    assert src.latest() is None and src.stats.frames == 0


async def test_frames_before_start_is_an_error():
    src = CameraSource(CameraConfig(id="c1", url="/x.mp4"), IngestConfig(), EdgeMetrics())
    with pytest.raises(RuntimeError, match="start"):
        async for _ in src.frames():
            pass


RTSP = MediaLocation.parse("rtsp://admin:Xy-secret-77@10.0.0.5/s")
FILE = MediaLocation.parse("/data/x.mp4")


@pytest.mark.parametrize(
    "error",
    [
        av.error.HTTPUnauthorizedError(-1, "Server returned 401 Unauthorized", RTSP.target),
        av.error.HTTPForbiddenError(-1, "Server returned 403 Forbidden", RTSP.target),
    ],
)
def test_refused_credentials_are_unauthorized_whenever_they_come(error):
    found = classify_open_error(error, RTSP, elapsed_s=0.01, timeout_s=1.5)
    assert found.is_unauthorized and not found.is_timeout
    assert "refused the user name and password" in str(found)
    assert "Xy-secret-77" not in str(found) and RTSP.target not in str(found)


@pytest.mark.parametrize(
    ("error", "media", "elapsed_s", "is_timeout"),
    [
        (av.error.InvalidDataError(-1, "Invalid data found", RTSP.target), RTSP, 1.5, True),
        (av.error.ExitError(-1, "Immediate exit requested", RTSP.target), RTSP, 5.0, True),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), RTSP, 0.2, True),
        (av.error.InvalidDataError(-1, "Invalid data found", RTSP.target), RTSP, 0.05, False),
        (av.error.InvalidDataError(-1, "Invalid data found", FILE.target), FILE, 9.0, False),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), RTSP, 1.5, False),
    ],
)
def test_silence_until_the_timeout_is_a_timeout_whatever_ffmpeg_calls_it(
    error, media, elapsed_s, is_timeout
):
    found = classify_open_error(error, media, elapsed_s=elapsed_s, timeout_s=1.5)
    assert found.is_timeout == is_timeout and not found.is_unauthorized
    assert ("timed out after" in str(found)) == is_timeout
    assert type(error).__name__ in str(found)
    assert "Xy-secret-77" not in str(found)


def test_a_camera_that_accepts_and_never_answers_times_out_in_words():
    """A real socket that accepts connections and sends nothing, as a hung camera does."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        media = MediaLocation.parse(f"rtsp://admin:Hung-pw-31@127.0.0.1:{port}/x")
        ingest = IngestConfig(open_timeout_s=1.0, read_timeout_s=1.0)
        with pytest.raises(OpenError) as caught:
            open_media(media, ingest)
    assert caught.value.is_timeout, str(caught.value)
    assert str(caught.value).startswith("timed out after")
    assert "Invalid data" not in str(caught.value) and "Hung-pw-31" not in str(caught.value)


async def test_a_file_of_random_bytes_stops_the_camera_and_says_why(tmp_path: Path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(random.Random(0).randbytes(200_000))
    metrics = EdgeMetrics()
    before = time.time()
    junk_cam = CameraConfig(id="junk", url=str(junk))
    async with CameraSource(junk_cam, IngestConfig(), metrics) as src:
        await async_wait_for(lambda: src.state == CameraState.STOPPED, 10)
    reason = "InvalidDataError: Invalid data found when processing input"
    assert src.last_error == f"cannot open: {reason}"
    assert src.last_error_at is not None and before <= src.last_error_at <= time.time()
    assert src.stats.unauthorized == 0 and src.stats.frames == 0


class _RefusingCamera(http.server.BaseHTTPRequestHandler):
    """An HTTP camera that answers 401 (or 403 under /forbidden/) to everyone."""

    def do_GET(self) -> None:
        forbidden = self.path.startswith("/forbidden/")
        self.send_response(403 if forbidden else 401)
        if not forbidden:
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("path", ["video.mjpg", "forbidden/video.mjpg"])
def test_an_http_camera_answering_401_or_403_is_unauthorized(path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://viewer:Http-pw-42@127.0.0.1:{server.server_address[1]}/{path}"
        with pytest.raises(OpenError) as caught:
            open_media(MediaLocation.parse(url), IngestConfig())
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.is_unauthorized
    assert ("403 Forbidden" if path.startswith("forbidden") else "401") in str(caught.value)
    assert "Http-pw-42" not in str(caught.value)
