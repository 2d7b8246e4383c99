"""CameraSource on files and HTTP: on-demand reading, real-time pacing, looping, corrupt data."""

from __future__ import annotations

import functools
import http.server
import logging
import random
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from edge.config import CameraConfig, IngestConfig
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, metric_value

pytestmark = pytest.mark.timeout(60)


def short_clip(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of a real clip, re-encoded (a file that ends quickly)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            frame = frame.reformat(width=320, height=240, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def file_source(camera: CameraConfig, **kw: bool) -> CameraSource:
    """A source with the default ingest settings and a metrics registry of its own."""
    return CameraSource(camera, IngestConfig(), EdgeMetrics(), **kw)


async def take(source: CameraSource, n: int) -> list:
    out = []
    async for frame in source.frames():
        out.append(frame)
        if len(out) == n:
            break
    return out


async def test_file_is_read_on_demand_without_drops_and_ends_stopped(clips):
    src = file_source(CameraConfig(id="f", url=str(clips["parking"])))
    async with src:
        frames = [f async for f in src.frames()]
    assert len(frames) == 377  # every frame of the file (assets README: 30.2 s at 12.5 fps)
    assert [f.seq for f in frames] == list(range(1, 378))
    assert frames[1].pts == pytest.approx(0.08)
    assert src.stats.dropped == 0 and src.stats.decode_errors == 0
    assert src.state == CameraState.STOPPED
    assert src.source_fps == pytest.approx(12.5)


async def test_file_url_with_fps_cap_keeps_every_other_frame(clips, tmp_path):
    clip = short_clip(clips["highway"], tmp_path / "short.mp4", 50)
    cam = CameraConfig(id="f", url=clip.as_uri(), fps=12.5)
    async with file_source(cam) as src:
        frames = [f async for f in src.frames()]
    assert len(frames) == 25
    assert src.stats.dropped_by_reason == {"fps_cap": 25}
    steps = {round(b.pts - a.pts, 3) for a, b in zip(frames, frames[1:], strict=False)}
    assert steps == {0.08}


async def test_looping_file_replays_and_plain_file_stops(clips, tmp_path):
    clip = short_clip(clips["highway"], tmp_path / "short.mp4", 10)
    once = file_source(CameraConfig(id="once", url=str(clip)))
    async with once:
        assert len([f async for f in once.frames()]) == 10
    looping = file_source(CameraConfig(id="loop", url=str(clip)), loop=True)
    async with looping:
        frames = await take(looping, 25)
        assert looping.state == CameraState.STREAMING
    pts = [f.pts for f in frames]
    assert pts[10] == pts[0] and pts[20] == pts[0]
    assert [f.seq for f in frames] == list(range(1, 26))
    assert looping.stats.reconnects == 0
    # a frame decoded but not taken when the source stopped is counted, not lost
    stats = looping.stats
    assert set(stats.dropped_by_reason) <= {"shutdown"}
    assert stats.frames == len(frames) + stats.dropped


async def test_realtime_file_is_paced_and_a_slow_consumer_gets_the_latest_frame(clips):
    """The consumer comes back only once two newer frames were decoded: it must get the newest,
    the ones in between counted as superseded."""
    metrics = EdgeMetrics()
    highway = CameraConfig(id="rt", url=str(clips["highway"]))
    src = CameraSource(highway, IngestConfig(), metrics, realtime=True)
    started = time.monotonic()
    slow: list = []
    async with src:
        async for frame in src.frames():
            assert frame is src.latest()  # the newest frame, never an older one queued
            slow.append(frame)
            if len(slow) == 8:
                break
            await async_wait_for(lambda f=frame: src.stats.frames >= f.seq + 3, 10)
        elapsed = time.monotonic() - started
        decoded = src.stats.frames
    # Paced: never ahead of the recording (read flat out, the file decodes at hundreds of fps;
    # +2: the frame waiting for its time is already counted). Alive: above a tenth of the pace.
    assert 2.5 * elapsed <= decoded <= 25.0 * elapsed + 2
    gaps = [b.seq - a.seq for a, b in zip(slow, slow[1:], strict=False)]
    assert min(gaps) >= 2  # it skipped ahead instead of queueing
    stats = src.stats
    assert set(stats.dropped_by_reason) <= {"superseded", "shutdown"}
    assert stats.dropped_by_reason["superseded"] >= slow[-1].seq - len(slow)
    assert stats.frames == len(slow) + stats.dropped  # taken, superseded, or pending at stop
    for reason, n in stats.dropped_by_reason.items():
        assert metric_value(metrics, "edge_frames_dropped_total", camera="rt", reason=reason) == n


async def test_corrupt_packets_are_counted_and_skipped(clips, tmp_path):
    data = bytearray(clips["highway"].read_bytes())
    rng = random.Random(1)
    for _ in range(40):
        at = rng.randrange(len(data) // 10, len(data) * 9 // 10)
        data[at : at + 200] = rng.randbytes(200)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    src = file_source(CameraConfig(id="bad", url=str(bad)))
    async with src:
        frames = [f async for f in src.frames()]
    assert src.stats.decode_errors > 0
    assert len(frames) > 600  # the rest of the clip still came through
    assert src.state == CameraState.STOPPED
    assert "corrupt data" in (src.last_error or "")


@pytest.fixture
def http_server(clips) -> Iterator[str]:
    root = clips["highway"].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="http-clips", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_http_source_streams(http_server, clips):
    url = f"{http_server}/{clips['parking'].name}"
    async with file_source(CameraConfig(id="web", url=url)) as src:
        frames = await take(src, 30)
        assert src.state == CameraState.STREAMING
    assert (frames[0].width, frames[0].height) == (768, 432)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))
    # live-like (latest only): each frame decoded was taken or counted as dropped
    assert set(src.stats.dropped_by_reason) <= {"superseded", "shutdown"}
    assert src.stats.frames == len(frames) + src.stats.dropped


async def test_missing_file_stops_with_a_clear_error(tmp_path, caplog):
    src = file_source(CameraConfig(id="nofile", url=str(tmp_path / "absent.mp4")))
    with caplog.at_level(logging.INFO, logger="edge.ingest"):
        async with src:
            assert [f async for f in src.frames()] == []
    assert src.state == CameraState.STOPPED
    assert "No such file" in (src.last_error or "")
    said = [r.getMessage() for r in caplog.records if "No such file" in r.getMessage()]
    assert len(said) == 1 and "camera nofile" in said[0] and "\n" not in said[0], said
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
