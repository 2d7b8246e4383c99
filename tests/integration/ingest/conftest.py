"""Shared pieces of the ingest integration tests: real clips, fast timeouts, a frame consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge.assets import asset
from edge.config import IngestConfig
from edge.ingest.source import CameraSource
from edge.types import Frame


@pytest.fixture
def clips() -> dict[str, Path]:
    """25 fps and 12.5 fps clips (see the assets README)."""
    found = {
        "highway": asset("video", "traffic_highway_cctv.mp4"),
        "parking": asset("video", "car-detection.mp4"),
    }
    missing = [str(p) for p in found.values() if not p.is_file()]
    assert not missing, f"shared assets missing: {missing}"
    return found


@pytest.fixture
def fast_ingest() -> IngestConfig:
    """Short timeouts and backoff so that failures show within seconds."""
    return IngestConfig(
        open_timeout_s=1.0, read_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=1.0
    )


class Consumer:
    """Takes every frame a source offers, as a downstream stage would, remembering them."""

    def __init__(self, source: CameraSource) -> None:
        self.source = source
        self.frames: list[Frame] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for frame in self.source.frames():
            self.frames.append(frame)

    def count(self) -> int:
        return len(self.frames)

    def since(self, t: float) -> int:
        return sum(1 for f in self.frames if f.received_at >= t)


@pytest.fixture
async def consume() -> AsyncIterator[Callable[[CameraSource], Consumer]]:
    consumers: list[Consumer] = []

    def make(source: CameraSource) -> Consumer:
        consumers.append(Consumer(source))
        return consumers[-1]

    yield make
    for c in consumers:
        c.task.cancel()
        await asyncio.gather(c.task, return_exceptions=True)


def first_time_in(source: CameraSource, state: str, after: float) -> float | None:
    """When `source` first entered `state` at or after monotonic time `after`."""
    for t, s in source.history:
        if s == state and t >= after:
            return t
    return None


@pytest.fixture
def entered() -> Callable[[CameraSource, str, float], float | None]:
    return first_time_in


@pytest.fixture
def now() -> Callable[[], float]:
    return time.monotonic
