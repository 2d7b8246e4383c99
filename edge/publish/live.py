"""`LiveFeed`: the event bus's sink that hands each vehicle event to the page's live feeds.

Each subscriber (one `GET /api/events/live` stream) has a small bounded queue; a subscriber too
slow to take its events loses the oldest ones rather than holding the bus back, and what it loses
is counted (`edge_events_dropped_total{sink="live",reason="queue_full"}`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from edge.metrics import EdgeMetrics

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256
MAX_SUBSCRIBERS = 64


class JsonEvent(Protocol):
    """Any event that serialises itself (edge.track.events.VehicleEvent does)."""

    @property
    def camera(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class Subscription:
    """One live stream's queue; `None` in it means the feed closed."""

    def __init__(self, camera: str | None) -> None:
        self.camera = camera
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)


class FeedFull(Exception):
    """Every live-feed slot is taken."""


class LiveFeed:
    name = "live"

    def __init__(self, metrics: EdgeMetrics, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.metrics = metrics
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def subscribe(self, camera: str | None = None) -> Subscription:
        if len(self._subscribers) >= self.max_subscribers:
            raise FeedFull(f"{self.max_subscribers} live feeds are open already")
        sub = Subscription(camera)
        if self._closed:
            sub.queue.put_nowait(None)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self._closed = False

    async def write(self, events: Sequence[JsonEvent]) -> None:
        for event in events:
            data = event.to_dict()
            for sub in list(self._subscribers):
                if sub.camera is not None and sub.camera != event.camera:
                    continue
                if sub.queue.full():  # the oldest goes: a live view wants the latest
                    sub.queue.get_nowait()
                    self.metrics.events_dropped.labels(sink=self.name, reason="queue_full").inc()
                sub.queue.put_nowait(data)
        self.metrics.events_emitted.labels(sink=self.name).inc(len(events))

    def close_subscribers(self) -> None:
        """End every live stream (the web server is shutting down)."""
        self._closed = True
        for sub in list(self._subscribers):
            if sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    async def close(self) -> None:
        self.close_subscribers()
