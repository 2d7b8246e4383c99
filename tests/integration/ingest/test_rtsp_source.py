"""CameraSource against the real GStreamer RTSP server: rates, kills, freezes, dead cameras."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from edge.config import CameraConfig, IngestConfig
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, free_port

pytestmark = pytest.mark.timeout(60)


def camera(cam_id: str, url: str, **kw: object) -> CameraConfig:
    return CameraConfig(id=cam_id, url=url, **kw)


async def test_two_cameras_stream_at_their_source_rates_together(clips, fast_ingest, consume):
    metrics = EdgeMetrics()
    with CameraSimulator({"hw": clips["highway"], "pk": clips["parking"]}) as sim:
        hw = CameraSource(camera("hw", sim.url("hw")), fast_ingest, metrics)
        pk = CameraSource(camera("pk", sim.url("pk")), fast_ingest, metrics)
        async with hw, pk:
            got = {s.camera_id: consume(s) for s in (hw, pk)}
            await async_wait_for(lambda: hw.state == "streaming" and pk.state == "streaming", 10)
            await asyncio.sleep(0.5)  # past the opening burst
            start = time.monotonic()
            before = {s.camera_id: s.stats.frames for s in (hw, pk)}
            await asyncio.sleep(3.0)
            elapsed = time.monotonic() - start
            rates = {
                s.camera_id: (s.stats.frames - before[s.camera_id]) / elapsed for s in (hw, pk)
            }
            assert rates["hw"] == pytest.approx(25.0, rel=0.12), rates
            assert rates["pk"] == pytest.approx(12.5, rel=0.12), rates
            assert hw.source_fps == pytest.approx(25.0)
            assert pk.source_fps == pytest.approx(12.5)
            # the consumer keeps up, so it sees (nearly) every frame, in order, with rising pts
            frames = got["hw"].frames
            assert len(frames) >= hw.stats.frames - hw.stats.dropped - 1
            assert [f.seq for f in frames] == sorted(f.seq for f in frames)
            pts = [f.pts for f in frames if f.pts is not None]
            assert pts == sorted(pts) and len(pts) >= len(frames) - 1
            assert (frames[-1].width, frames[-1].height) == (320, 240)
            assert frames[-1].to_bgr(160, 120).shape == (120, 160, 3)
            assert hw.latest() is not None and hw.latest().camera_id == "hw"
    decoded = metrics.registry.get_sample_value("edge_frames_decoded_total", {"camera": "hw"})
    assert decoded == hw.stats.frames
    assert metrics.registry.get_sample_value("edge_camera_source_fps", {"camera": "pk"}) == 12.5
    assert hw.state == CameraState.STOPPED and pk.state == CameraState.STOPPED


async def test_killed_server_means_backoff_and_restart_brings_frames_back(
    clips, fast_ingest, consume, entered
):
    metrics = EdgeMetrics()
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        async with CameraSource(camera("hw", sim.url("hw")), fast_ingest, metrics) as src:
            got = consume(src)
            await async_wait_for(lambda: src.state == "streaming", 10)
            killed_at = time.monotonic()
            sim.kill()
            await async_wait_for(lambda: src.state == "backoff", 5)
            await async_wait_for(lambda: src.stats.reconnects >= 4, 10)  # refused, again and again
            assert (
                metrics.registry.get_sample_value("edge_camera_reconnects_total", {"camera": "hw"})
                == src.stats.reconnects
            )
            assert "ConnectionRefused" in (src.last_error or "")
            restarted_at = time.monotonic()
            sim.start()
            budget = src.backoff.ceiling + 2.0
            await async_wait_for(lambda: got.since(restarted_at) > 0, budget)
            assert entered(src, "backoff", killed_at) is not None
            await async_wait_for(lambda: got.since(restarted_at) >= 10, 5)
            assert src.state == CameraState.STREAMING


async def test_frozen_server_is_stalled_within_the_read_timeout_and_recovers(
    clips, fast_ingest, consume, entered
):
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        async with CameraSource(camera("hw", sim.url("hw")), fast_ingest, EdgeMetrics()) as src:
            got = consume(src)
            await async_wait_for(lambda: src.state == "streaming", 10)
            await asyncio.sleep(0.3)
            paused_at = time.monotonic()
            sim.pause()
            timeout = fast_ingest.read_timeout_s
            await async_wait_for(lambda: entered(src, "stalled", paused_at), timeout + 1.0)
            stalled_at = entered(src, "stalled", paused_at)
            assert stalled_at is not None
            assert stalled_at - paused_at <= timeout + 0.3
            await asyncio.sleep(1.0)
            assert got.since(stalled_at) == 0  # nothing arrives while frozen
            resumed_at = time.monotonic()
            sim.resume()
            await async_wait_for(lambda: got.since(resumed_at) >= 10, src.backoff.maximum_s + 5)
            assert src.state == CameraState.STREAMING
            assert src.stats.reconnects >= 1
            after = [state for t, state in src.history if t >= stalled_at]
            assert after[0] == "stalled" and after[-1] == "streaming"


async def test_unreachable_camera_retries_with_growing_delays_while_another_streams(clips, consume):
    ingest = IngestConfig(
        open_timeout_s=1.0, read_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=1.6
    )
    dead_url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        metrics = EdgeMetrics()
        live = CameraSource(camera("hw", sim.url("hw")), ingest, metrics)
        dead = CameraSource(camera("dead", dead_url), ingest, metrics)
        async with live, dead:
            got = consume(live)
            await async_wait_for(lambda: live.state == "streaming", 10)
            start = time.monotonic()
            await async_wait_for(lambda: dead.stats.reconnects >= 5, 10)
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - start
            assert live.stats.frames > 0
            assert got.since(start) / elapsed == pytest.approx(25.0, rel=0.25)
            assert live.state == CameraState.STREAMING
            assert dead.state in (CameraState.BACKOFF, CameraState.CONNECTING)
    steps = list(dead.backoff.history)
    ceilings = [s.ceiling for s in steps[:6]]
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.6, 1.6]
    assert all(0 <= s.delay <= s.ceiling for s in steps)
    # the waits really happened: each attempt came at least its drawn delay after the previous
    attempts = [t for t, s in dead.history if s == "connecting"]
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    for gap, step in zip(gaps, steps, strict=False):
        assert gap >= step.delay - 0.02
    assert dead.stats.frames == 0 and "ConnectionRefused" in (dead.last_error or "")


async def test_credentials_never_show_in_logs_repr_or_errors(clips, fast_ingest, consume, caplog):
    caplog.set_level(logging.DEBUG)
    password = "Sup3rSecretPw"
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        metrics = EdgeMetrics()
        good = CameraSource(camera("hw", sim.url("hw", "admin", password)), fast_ingest, metrics)
        refused = CameraSource(
            camera("gone", f"rtsp://admin:{password}@127.0.0.1:{free_port()}/x"),
            fast_ingest,
            metrics,
        )
        async with good, refused:
            consume(good)
            await async_wait_for(lambda: good.state == "streaming", 10)
            await async_wait_for(lambda: refused.stats.reconnects >= 1, 5)
            sim.kill()  # PyAV's end-of-stream and timeout errors carry the URL
            await async_wait_for(lambda: good.stats.reconnects >= 1, 5)
            exposed = [
                caplog.text,
                repr(good),
                repr(refused),
                good.url,
                refused.url,
                str(good.last_error),
                str(refused.last_error),
                repr(good.media),
                str(good.stats),
            ]
    assert "admin:***@" in good.url
    assert any("admin:***@" in text for text in exposed[:1])  # the URL is logged, masked
    for text in exposed:
        assert password not in text


async def test_fault_wrong_credentials_are_unauthorized_and_retried_only_at_the_cap(clips, consume):
    """A camera that asks for a password (RTSP Digest, as real ones do): the right one streams,
    a wrong one is `unauthorized`, counted, and retried between half the cap and the cap."""
    ingest = IngestConfig(
        open_timeout_s=1.0, read_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=1.0
    )
    password = "p@ss/w:rd-Right"
    metrics = EdgeMetrics()
    with CameraSimulator({"hw": clips["highway"]}, credentials=("admin", password)) as sim:
        good = CameraSource(camera("good", sim.url("hw", "admin", password)), ingest, metrics)
        wrong = CameraSource(camera("wrong", sim.url("hw", "admin", "Wr0ng-pass")), ingest, metrics)
        async with good, wrong:
            consume(good)
            await async_wait_for(lambda: good.state == "streaming", 10)
            await async_wait_for(lambda: wrong.state == "unauthorized", 5)
            await async_wait_for(lambda: wrong.stats.unauthorized >= 3, 10)
    steps = list(wrong.backoff.history)
    assert steps and all(s.ceiling == 1.0 and 0.5 <= s.delay <= 1.0 for s in steps)
    assert wrong.stats.frames == 0 and wrong.stats.reconnects == wrong.stats.unauthorized - 1
    assert good.stats.unauthorized == 0
    assert "401 Unauthorized" in (wrong.last_error or "")
    assert "refused the user name and password" in (wrong.last_error or "")
    assert "Wr0ng-pass" not in str(wrong.last_error)
    sample = metrics.registry.get_sample_value
    assert sample("edge_camera_unauthorized_total", {"camera": "wrong"}) == wrong.stats.unauthorized
    assert sample("edge_camera_unauthorized_total", {"camera": "good"}) == 0
    states = [s for _, s in wrong.history]
    assert "backoff" not in states and states.count("unauthorized") >= 3


async def test_fault_a_hung_camera_times_out_in_words_not_invalid_data(clips, fast_ingest):
    """A camera frozen before we connect accepts TCP and then says nothing: FFmpeg gives up with
    "Invalid data found"; the source must say it timed out."""
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        sim.pause()
        try:
            hung = CameraSource(camera("hung", sim.url("hw")), fast_ingest, EdgeMetrics())
            async with hung as src:
                await async_wait_for(lambda: src.last_error is not None, 10)
                await async_wait_for(lambda: src.state == "backoff", 5)
        finally:
            sim.resume()
    assert (src.last_error or "").startswith("cannot open: timed out after"), src.last_error
    assert "Invalid data" not in (src.last_error or "")
