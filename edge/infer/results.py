"""`ResultStream`: one camera's detected frames, latest-only, as an async iterator.

A subscriber that falls behind loses its oldest results (the batcher counts them as dropped,
reason "queue_full"): results never queue without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from edge.types import DetectedFrame

RESULT_QUEUE_SIZE = 4


class Subscriptions(Protocol):
    def _unsubscribe(self, stream: ResultStream) -> None: ...


class ResultStream:
    """Async iterator of one camera's results; keeps only the newest `maxsize` undelivered."""

    def __init__(self, batcher: Subscriptions, camera_id: str, maxsize: int) -> None:
        self.camera_id = camera_id
        self._batcher = batcher
        self._items: deque[DetectedFrame] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: DetectedFrame) -> bool:
        """Queue `item`; return False when the oldest queued result had to be dropped."""
        full = len(self._items) == self._items.maxlen
        self._items.append(item)
        self._ready.set()
        return not full

    def discard(self) -> int:
        """Drop every undelivered result; return how many there were."""
        n = len(self._items)
        self._items.clear()
        return n

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._batcher._unsubscribe(self)

    def __aiter__(self) -> ResultStream:
        return self

    async def __anext__(self) -> DetectedFrame:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
