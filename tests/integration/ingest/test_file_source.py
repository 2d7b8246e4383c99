"""CameraSource on files and HTTP: on-demand reading, real-time pacing, looping, corrupt data."""

from __future__ import annotations

import asyncio
import functools
import http.server
import random
import shutil
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from edge.config import CameraConfig
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for

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


async def take(source: CameraSource, n: int, delay: float = 0.0) -> list:
    out = []
    async for frame in source.frames():
        out.append(frame)
        if delay:
            await asyncio.sleep(delay)
        if len(out) == n:
            break
    return out


async def test_file_is_read_on_demand_without_drops_and_ends_stopped(clips):
    src = CameraSource(CameraConfig(id="f", url=str(clips["parking"])))
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
    async with CameraSource(cam) as src:
        frames = [f async for f in src.frames()]
    assert len(frames) == 25
    assert src.stats.dropped_by_reason == {"fps_cap": 25}
    steps = {round(b.pts - a.pts, 3) for a, b in zip(frames, frames[1:], strict=False)}
    assert steps == {0.08}


async def test_looping_file_replays_and_plain_file_stops(clips, tmp_path):
    clip = short_clip(clips["highway"], tmp_path / "short.mp4", 10)
    once = CameraSource(CameraConfig(id="once", url=str(clip)))
    async with once:
        assert len([f async for f in once.frames()]) == 10
    looping = CameraSource(CameraConfig(id="loop", url=str(clip)), loop=True)
    async with looping:
        frames = await take(looping, 25)
        assert looping.state == CameraState.STREAMING
    pts = [f.pts for f in frames]
    assert pts[10] == pts[0] and pts[20] == pts[0]
    assert [f.seq for f in frames] == list(range(1, 26))
    assert looping.stats.reconnects == 0


async def test_realtime_file_is_paced_and_a_slow_consumer_gets_the_latest_frame(clips):
    metrics = EdgeMetrics()
    src = CameraSource(
        CameraConfig(id="rt", url=str(clips["highway"])), metrics=metrics, realtime=True
    )
    async with src:
        await async_wait_for(lambda: src.stats.frames > 0, 5)
        start, before = time.monotonic(), src.stats.frames
        slow = await take(src, 8, delay=0.2)  # 5 fps consumer on a 25 fps file
        rate = (src.stats.frames - before) / (time.monotonic() - start)
    assert rate == pytest.approx(25.0, rel=0.15)
    assert src.stats.dropped_by_reason.get("superseded", 0) >= 20
    gaps = [b.seq - a.seq for a, b in zip(slow, slow[1:], strict=False)]
    assert min(gaps) >= 3  # it skipped ahead instead of queueing
    assert (
        metrics.registry.get_sample_value(
            "edge_frames_dropped_total", {"camera": "rt", "reason": "superseded"}
        )
        == src.stats.dropped_by_reason["superseded"]
    )


async def test_corrupt_packets_are_counted_and_skipped(clips, tmp_path):
    data = bytearray(clips["highway"].read_bytes())
    rng = random.Random(1)
    for _ in range(40):
        at = rng.randrange(len(data) // 10, len(data) * 9 // 10)
        data[at : at + 200] = rng.randbytes(200)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    src = CameraSource(CameraConfig(id="bad", url=str(bad)))
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
    async with CameraSource(CameraConfig(id="web", url=url)) as src:
        frames = await take(src, 30)
        assert src.state == CameraState.STREAMING
    assert (frames[0].width, frames[0].height) == (768, 432)
    assert frames[-1].seq == frames[0].seq + 29 or src.stats.dropped > 0


async def test_missing_file_stops_with_a_clear_error(tmp_path):
    src = CameraSource(CameraConfig(id="nofile", url=str(tmp_path / "absent.mp4")))
    async with src:
        assert [f async for f in src.frames()] == []
    assert src.state == CameraState.STOPPED
    assert "absent.mp4" in (src.last_error or "")
    assert shutil.which("true")  # the process (and this loop) lived on
