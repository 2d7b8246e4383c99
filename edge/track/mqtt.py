"""`MqttSink`: vehicle events to an MQTT broker, and each line's current interval counts.

Topics (PREFIX is `events.mqtt.topic_prefix`, `edge` by default):
- `PREFIX/CAMERA/events`: each event as the JSON line of events.jsonl, QoS `events.mqtt.qos`
  (1: at least once), in the order the camera produced them;
- `PREFIX/CAMERA/counts/LINE`: retained, after every batch with crossings on that line:
  `{"camera", "line", "interval_start", "interval_end", "interval_s", "counts": {class:
  {direction: n}}, "total"}` for the interval in progress (aligned to the clock, as the store's).
  `seed` gives the counts stored before a restart, so the interval continues rather than restart
  from zero. `/`, `+` and `#` in a line name become `_`.

The connection is one background task that reconnects with full-jitter backoff
(`backoff_initial_s` doubling to `backoff_max_s`). While the broker is away, `write` waits for it
and the event bus keeps queueing, up to `events.mqtt.queue_size` events; beyond that the bus drops
and counts them (`edge_events_dropped_total{sink="mqtt",reason="queue_full"}`), so nothing queued
within the bound is lost. A batch cut off by a lost connection is sent again from the first
message not acknowledged. When the service stops, `write` waits at most `shutdown_wait_s` for a
broker that is away, then gives up on what is left (counted as `failed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from edge.config import MqttConfig
from edge.intervals import interval_start, iso_utc
from edge.metrics import EdgeMetrics
from edge.redact import redact_url
from edge.track.events import VehicleEvent

log = logging.getLogger(__name__)

CountsSeed = Callable[[], Mapping[tuple[str, str], tuple[int, dict[str, dict[str, int]]]]]
"""(camera, line) → (interval start, class → direction → n) of the interval in progress."""


def topic_part(name: str) -> str:
    return name.replace("/", "_").replace("+", "_").replace("#", "_")


class MqttSink:
    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        interval_s: int,
        metrics: EdgeMetrics,
        seed: CountsSeed | None = None,
        shutdown_wait_s: float = 5.0,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self.metrics = metrics
        self.seed = seed
        self.shutdown_wait_s = shutdown_wait_s
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._counts: dict[tuple[str, str], tuple[int, dict[str, dict[str, int]]]] = {}
        self.safe_url = redact_url(config.url)

    def _make_client(self) -> aiomqtt.Client:
        parts = urlsplit(self.config.url)
        tls = parts.scheme == "mqtts"
        return aiomqtt.Client(
            parts.hostname or "", parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=self.config.client_id, timeout=10,
            tls_context=ssl.create_default_context() if tls else None,
        )  # fmt: skip

    async def start(self) -> None:
        self._connected = asyncio.Event()
        self._stopping = False
        if self.seed is not None:
            self._counts.update(await asyncio.to_thread(self.seed))
        self._task = asyncio.create_task(self._connection(), name="mqtt-connection")

    async def _connection(self) -> None:
        """Connect, hold the connection until it drops, back off, again; until cancelled."""
        ceiling = self.config.backoff_initial_s
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    self._connected.set()
                    self.metrics.mqtt_connected.set(1)
                    log.info("mqtt %s: connected", self.safe_url)
                    ceiling = self.config.backoff_initial_s
                    async for _ in client.messages:  # returns only by raising on a disconnect
                        pass
            except aiomqtt.MqttError as exc:
                if self._connected.is_set():
                    log.warning("mqtt %s: connection lost: %s", self.safe_url, exc)
                else:
                    log.warning("mqtt %s: cannot connect: %s (next try within %.1f s)",
                                self.safe_url, exc, ceiling)  # fmt: skip
            finally:
                self._client = None
                self._connected.clear()
                self.metrics.mqtt_connected.set(0)
            await asyncio.sleep(random.uniform(0, ceiling))
            ceiling = min(ceiling * 2, self.config.backoff_max_s)

    def stopping(self) -> None:
        """The service stops: from now on wait at most `shutdown_wait_s` for the broker."""
        self._stopping = True

    def _messages(self, events: Sequence[VehicleEvent]) -> list[tuple[str, str, int, bool]]:
        prefix = self.config.topic_prefix
        out: list[tuple[str, str, int, bool]] = [
            (f"{prefix}/{e.camera}/events", e.to_json(), self.config.qos, False) for e in events
        ]
        touched: dict[tuple[str, str], None] = {}
        for e in events:
            if e.kind == "crossing" and e.line is not None and e.direction is not None:
                key = (e.camera, e.line)
                start = interval_start(e.time.timestamp(), self.interval_s)
                held = self._counts.get(key)
                if held is None or held[0] < start:
                    held = self._counts[key] = (start, {})
                if held[0] == start:  # a late event of a past interval is not current
                    per_dir = held[1].setdefault(e.class_name, {})
                    per_dir[e.direction] = per_dir.get(e.direction, 0) + 1
                    touched[key] = None
        for camera, line in touched:
            payload = json.dumps(self.counts_payload(camera, line), separators=(",", ":"))
            topic = f"{prefix}/{camera}/counts/{topic_part(line)}"
            out.append((topic, payload, 1, self.config.retain_counts))
        return out

    def counts_payload(self, camera: str, line: str) -> dict[str, Any]:
        start, counts = self._counts[(camera, line)]
        return {
            "camera": camera, "line": line, "interval_start": iso_utc(start),
            "interval_end": iso_utc(start + self.interval_s), "interval_s": self.interval_s,
            "counts": counts, "total": sum(n for d in counts.values() for n in d.values()),
        }  # fmt: skip

    async def write(self, events: Sequence[VehicleEvent]) -> None:
        messages = self._messages(events)
        sent = 0
        while sent < len(messages):
            client = await self._wait_connected()
            if client is None:
                break
            topic, payload, qos, retain = messages[sent]
            try:
                await client.publish(topic, payload, qos=qos, retain=retain)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt %s: publish failed (%s); sending again once reconnected",
                            self.safe_url, exc)  # fmt: skip
                await asyncio.sleep(0.05)  # the connection task notices the drop
                continue
            sent += 1
        delivered = sum(1 for m in messages[:sent] if m[0].endswith("/events"))
        self.metrics.events_emitted.labels(sink=self.name).inc(delivered)
        if delivered < len(events):
            lost = len(events) - delivered
            log.error("mqtt %s: broker away at shutdown; %d events not sent", self.safe_url, lost)
            self.metrics.events_dropped.labels(sink=self.name, reason="failed").inc(lost)

    async def _wait_connected(self) -> aiomqtt.Client | None:
        """The connected client; None once stopping and the broker stayed away too long."""
        while True:
            if self._connected.is_set() and self._client is not None:
                return self._client
            try:
                timeout = self.shutdown_wait_s if self._stopping else 1.0
                async with asyncio.timeout(timeout):
                    await self._connected.wait()
            except TimeoutError:
                if self._stopping:
                    return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # its CancelledError stays in the task
            self._task = None
