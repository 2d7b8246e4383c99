"""PacketFanout: bounded per-viewer queues, slow viewers drop and resync, others unaffected."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from edge.metrics import EdgeMetrics
from edge.publish.fanout import PacketFanout
from edge.testing import metric_value


def _packet(i: int, key: bool) -> av.Packet:
    packet = av.Packet(bytes([0, 0, 0, 1, 0x65 if key else 0x41, i % 256]))
    packet.pts = i
    packet.is_keyframe = key
    return packet


def _dropped(metrics: EdgeMetrics, camera: str = "cam") -> float:
    return metric_value(metrics, "edge_frames_dropped_total", camera=camera, reason="viewer_slow")


def _fanout(metrics: EdgeMetrics, keyframes: list[int], queue: int = 4) -> PacketFanout:
    return PacketFanout(
        "cam",
        asyncio.get_running_loop(),
        request_keyframe=lambda: keyframes.append(1),
        metrics=metrics,
        queue_packets=queue,
    )


async def test_reading_viewer_starts_at_keyframe_and_gets_every_packet() -> None:
    metrics, keys = EdgeMetrics(), []
    fanout = _fanout(metrics, keys)
    track = fanout.add_viewer()
    first = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert keys == [1]  # starting to read asks the encoder for a keyframe
    fanout.publish(_packet(0, key=False))  # before the keyframe: useless to a new viewer
    fanout.publish(_packet(1, key=True))
    fanout.publish(_packet(2, key=False))
    assert (await first).pts == 1
    assert (await track.recv()).pts == 2
    assert _dropped(metrics) == 1


async def test_stalled_viewer_is_bounded_and_does_not_affect_another() -> None:
    metrics, keys = EdgeMetrics(), []
    fanout = _fanout(metrics, keys, queue=4)
    fast, stalled = fanout.add_viewer(), fanout.add_viewer()
    waiting = [asyncio.ensure_future(t.recv()) for t in (fast, stalled)]
    await asyncio.sleep(0)
    fanout.publish(_packet(0, key=True))
    assert [(await w).pts for w in waiting] == [0, 0]
    received = []
    for i in range(1, 40):  # keyframe every 10 packets
        fanout.publish(_packet(i, key=i % 10 == 0))
        received.append((await fast.recv()).pts)  # the fast viewer keeps up
        assert stalled.queued <= 4  # the stalled one never holds more than its bound
    assert received == list(range(1, 40))
    assert stalled.packets_dropped > 30
    assert _dropped(metrics) == stalled.packets_dropped
    # when it reads again, it restarts from a keyframe, never mid-GOP
    resumed = asyncio.ensure_future(stalled.recv())
    for i in range(40, 51):
        fanout.publish(_packet(i, key=i % 10 == 0))
    packet = await resumed
    assert packet.is_keyframe


async def test_viewer_not_yet_connected_queues_nothing_and_drops_nothing() -> None:
    metrics, keys = EdgeMetrics(), []
    fanout = _fanout(metrics, keys)
    track = fanout.add_viewer()
    for i in range(20):
        fanout.publish(_packet(i, key=i == 0))
    assert track.queued == 0
    assert _dropped(metrics) == 0


async def test_stop_frees_viewer_and_ends_pending_recv() -> None:
    metrics, keys = EdgeMetrics(), []
    changes: list[int] = []
    fanout = PacketFanout(
        "cam",
        asyncio.get_running_loop(),
        request_keyframe=lambda: keys.append(1),
        on_viewers_changed=lambda f: changes.append(f.viewer_count),
        metrics=metrics,
    )
    a, b = fanout.add_viewer(), fanout.add_viewer()
    pending = asyncio.ensure_future(a.recv())
    await asyncio.sleep(0)
    a.stop()
    with pytest.raises(MediaStreamError):
        await pending
    assert fanout.viewer_count == 1
    fanout.close()
    assert fanout.viewer_count == 0
    assert b.readyState == "ended"
    assert changes == [1, 2, 1, 0]


async def test_publish_threadsafe_delivers_on_the_loop() -> None:
    metrics, keys = EdgeMetrics(), []
    fanout = _fanout(metrics, keys)
    track = fanout.add_viewer()
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    await asyncio.to_thread(fanout.publish_threadsafe, _packet(5, key=True))
    assert (await asyncio.wait_for(pending, 5)).pts == 5


async def test_queue_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PacketFanout(
            "cam",
            asyncio.get_running_loop(),
            request_keyframe=lambda: None,
            metrics=EdgeMetrics(),
            queue_packets=0,
        )
