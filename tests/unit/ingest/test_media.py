"""How camera URLs are classified and opened, and that none of it leaks a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import CameraConfig, IngestConfig
from edge.ingest.media import MediaLocation, open_options
from edge.ingest.source import CameraSource, CameraState


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
    src = CameraSource(cam)
    texts = [repr(src), src.url, repr(src.media), src.media.safe_url]
    assert all("pa55word" not in t for t in texts)
    assert src.url == "rtsp://admin:***@10.0.0.5/stream1"
    assert src.state == CameraState.STOPPED
    assert src.latest() is None and src.stats.frames == 0


async def test_frames_before_start_is_an_error():
    src = CameraSource(CameraConfig(id="c1", url="/x.mp4"))
    with pytest.raises(RuntimeError, match="start"):
        async for _ in src.frames():
            pass
