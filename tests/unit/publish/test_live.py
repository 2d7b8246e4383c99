"""The live feed's subscriber queues: filtered by camera, bounded, the oldest dropped and counted,
closed at shutdown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.metrics import EdgeMetrics
from edge.publish.live import SUBSCRIBER_QUEUE, FeedFull, LiveFeed
from edge.track.events import VehicleEvent


def event(camera: str, track: int) -> VehicleEvent:
    return VehicleEvent(camera, track, "car", "track_end", datetime.now(UTC))


async def test_a_slow_subscriber_keeps_the_newest_and_counts_drops() -> None:
    metrics = EdgeMetrics()
    feed = LiveFeed(metrics)
    everything, cam2 = feed.subscribe(), feed.subscribe("cam2")
    await feed.write([event("cam1", i) for i in range(SUBSCRIBER_QUEUE + 10)] + [event("cam2", 0)])
    assert everything.queue.qsize() == SUBSCRIBER_QUEUE
    assert everything.queue.get_nowait()["track_id"] == 11  # the 11 oldest went
    assert cam2.queue.qsize() == 1 and cam2.queue.get_nowait()["camera"] == "cam2"
    dropped = metrics.registry.get_sample_value(
        "edge_events_dropped_total", {"sink": "live", "reason": "queue_full"}
    )
    assert dropped == 11
    assert metrics.registry.get_sample_value("edge_events_emitted_total", {"sink": "live"}) == (
        SUBSCRIBER_QUEUE + 11
    )


async def test_subscribers_are_capped_and_closed() -> None:
    feed = LiveFeed(EdgeMetrics(), max_subscribers=2)
    a, b = feed.subscribe(), feed.subscribe()
    with pytest.raises(FeedFull):
        feed.subscribe()
    feed.unsubscribe(b)
    feed.subscribe()
    await feed.close()
    assert a.queue.get_nowait() is None  # the stream ends
