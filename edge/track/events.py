"""Vehicle events (line crossings, ends of tracks) and the sinks that keep or deliver them.

`EventBus.emit` is called from the pipeline and must never wait on a disk or a web server: it only
appends to each sink's bounded queue (any thread may call it). One asyncio task per sink drains its
queue; `stop()` drains every queue before returning, so shutting down loses nothing silently —
whatever a sink finally gives up on is counted in `edge_events_dropped_total{sink, reason}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import aiohttp

from edge.config import WebhookConfig
from edge.metrics import EdgeMetrics
from edge.redact import redact_url

log = logging.getLogger(__name__)

EventKind = Literal["crossing", "track_end"]


@dataclass(frozen=True, slots=True)
class PlateInfo:
    """What the OCR stage knows of a track when an event is emitted."""

    plate: str | None = None
    plate_confidence: float | None = None
    """How sure the vote over the track's reads is, 0–1."""
    plate_reads: int | None = None
    """How many reads gave exactly this plate."""
    snapshot: str | None = None
    """File name of the vehicle's best crop (track_end, when snapshots are on)."""
    plate_snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class VehicleEvent:
    camera: str
    track_id: int
    class_name: str
    kind: EventKind
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When it happened, timezone-aware (UTC in the JSON)."""
    line: str | None = None
    direction: str | None = None
    plate: str | None = None
    frame: int | None = None
    """Frame index in the source, when known (offline analysis)."""
    plate_confidence: float | None = None
    plate_reads: int | None = None
    snapshot: str | None = None
    plate_snapshot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        t = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
        return {
            "camera": self.camera,
            "track_id": self.track_id,
            "class": self.class_name,
            "kind": self.kind,
            "line": self.line,
            "direction": self.direction,
            "time": t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "epoch": round(t.timestamp(), 3),
            "plate": self.plate,
            "frame": self.frame,
            "plate_confidence": self.plate_confidence,
            "plate_reads": self.plate_reads,
            "snapshot": self.snapshot,
            "plate_snapshot": self.plate_snapshot,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


class EventSink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def write(self, events: Sequence[VehicleEvent]) -> None:
        """Deliver or give up (counting what was given up); never raise."""

    async def close(self) -> None: ...


class SinkError(RuntimeError):
    """A sink that cannot work at all (its file cannot be created); one line for a person."""


class JsonlSink:
    """Appends one JSON object per line; rotates to `.1`, `.2`, … when `max_bytes` is reached."""

    name = "jsonl"

    def __init__(
        self, path: Path, max_bytes: int, backups: int, metrics: EdgeMetrics
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.metrics = metrics

    async def start(self) -> None:
        """Create the file now: a path that can never be written (a file where its folder should
        be, no permission) stops the start, instead of every event being lost later. A write that
        fails later (a full disk) costs those events only, counted as `io_error`."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, FileExistsError | NotADirectoryError):
                reason = "a file stands where a folder of its path should be"
            raise SinkError(f"events.jsonl: cannot write {self.path}: {reason}") from None

    async def write(self, events: Sequence[VehicleEvent]) -> None:
        try:
            await asyncio.to_thread(self._append, [e.to_json() + "\n" for e in events])
        except OSError as exc:
            log.error("events file %s: %s; %d events lost", self.path, exc, len(events))
            self.metrics.events_dropped.labels(sink=self.name, reason="io_error").inc(len(events))
            return
        self.metrics.events_emitted.labels(sink=self.name).inc(len(events))

    def _append(self, lines: list[str]) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        out = open(self.path, "a", encoding="utf-8")
        try:
            for line in lines:
                n = len(line.encode("utf-8"))
                if size > 0 and size + n > self.max_bytes:
                    out.close()
                    self._rotate()
                    out = open(self.path, "a", encoding="utf-8")
                    size = 0
                out.write(line)
                size += n
        finally:
            out.close()

    def _rotate(self) -> None:
        """events.jsonl → .1 → .2 …; the oldest beyond `backups` is deleted."""
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    async def close(self) -> None:
        return None


class WebhookSink:
    """POSTs batches of events as a JSON array; retries with exponential backoff.

    Server errors (5xx, 429) and connection failures are retried `config.retries` times, waiting
    `backoff_s`, doubling up to `backoff_max_s`; other 4xx answers are not retried (the receiver
    refuses the payload). Either way the events given up are counted, never silently lost.
    """

    name = "webhook"

    def __init__(
        self,
        config: WebhookConfig,
        metrics: EdgeMetrics,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def write(self, events: Sequence[VehicleEvent]) -> None:
        assert self._session is not None, "start() first"
        body = json.dumps([e.to_dict() for e in events]).encode()
        delay = self.backoff_s
        reason = "failed"
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
            try:
                headers = {"Content-Type": "application/json"}
                async with self._session.post(self.config.url, data=body, headers=headers) as r:
                    if r.status < 300:
                        self.metrics.events_emitted.labels(sink=self.name).inc(len(events))
                        return
                    what = f"HTTP {r.status}"
                    if 400 <= r.status < 500 and r.status != 429:
                        reason = "rejected"
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                what = type(exc).__name__
            log.warning(
                "webhook %s: %s (attempt %d of %d)",
                redact_url(self.config.url), what, attempt + 1, self.config.retries + 1,
            )  # fmt: skip
        log.error("webhook %s: gave up on %d events", redact_url(self.config.url), len(events))
        self.metrics.events_dropped.labels(sink=self.name, reason=reason).inc(len(events))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Queue:
    """A sink's bounded queue, fed from any thread, drained by one task on the loop."""

    def __init__(self, sink: EventSink, capacity: int, metrics: EdgeMetrics) -> None:
        self.sink = sink
        self.capacity = capacity
        self.metrics = metrics
        self.items: deque[VehicleEvent] = deque()
        self.lock = threading.Lock()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def put(self, event: VehicleEvent) -> None:
        with self.lock:
            if len(self.items) >= self.capacity:
                self.metrics.events_dropped.labels(sink=self.sink.name, reason="queue_full").inc()
                return
            self.items.append(event)
            self.metrics.events_queue.labels(sink=self.sink.name).set(len(self.items))

    def take(self, n: int) -> list[VehicleEvent]:
        with self.lock:
            batch = [self.items.popleft() for _ in range(min(n, len(self.items)))]
            self.metrics.events_queue.labels(sink=self.sink.name).set(len(self.items))
            return batch


class EventBus:
    """Fans events out to sinks; `emit` never blocks, `stop` delivers everything queued."""

    def __init__(
        self,
        sinks: Sequence[EventSink],
        metrics: EdgeMetrics,
        queue_size: int = 10_000,
        batch_size: int = 100,
    ) -> None:
        self.metrics = metrics
        self.batch_size = batch_size
        self._queues = [
            _Queue(s, getattr(getattr(s, "config", None), "queue_size", queue_size), self.metrics)
            for s in sinks
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stopped = False

    def emit(self, event: VehicleEvent) -> None:
        """Queue for every sink (dropping and counting when a queue is full); any thread."""
        if self._stopped:
            log.error("event for track %s of camera %s after stop(): dropped", event.track_id,
                      event.camera)  # fmt: skip
            for q in self._queues:
                self.metrics.events_dropped.labels(sink=q.sink.name, reason="stopped").inc()
            return
        for q in self._queues:
            q.put(event)
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started: events wait in the queues for start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for q in self._queues:
            if running is loop:
                q.wakeup.set()
            else:
                loop.call_soon_threadsafe(q.wakeup.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for q in self._queues:
            await q.sink.start()
            q.wakeup = asyncio.Event()
            q.task = asyncio.create_task(self._drain(q), name=f"events-{q.sink.name}")
            q.wakeup.set()

    async def _drain(self, q: _Queue) -> None:
        while True:
            await q.wakeup.wait()
            q.wakeup.clear()
            while batch := q.take(self.batch_size):
                await q.sink.write(batch)
            if self._stopping:
                return

    async def stop(self) -> None:
        """Deliver every queued event (or count it as dropped), then close the sinks."""
        self._stopping = True
        for q in self._queues:
            stopping = getattr(q.sink, "stopping", None)
            if stopping is not None:  # a sink that waits for a server stops waiting for long
                stopping()
            q.wakeup.set()
        for q in self._queues:
            if q.task is not None:
                await q.task
            await q.sink.close()
        self._stopped = True

    @property
    def queued(self) -> int:
        return sum(len(q.items) for q in self._queues)
