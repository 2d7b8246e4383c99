"""The MQTT sink against a real broker: Debian's mosquitto, started by the tests on a free port
with its own config (never the system service).

Every event arrives once and in order per camera; the current interval's counts are retained;
with the broker stopped and started again the sink reconnects and delivers everything it held
within its bound, and counts what it had to drop beyond it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio

from edge.config import MqttConfig
from edge.intervals import interval_start, iso_utc
from edge.metrics import EdgeMetrics
from edge.testing import MosquittoBroker, async_wait_for, free_port, synthetic_traffic
from edge.track.events import EventBus, VehicleEvent
from edge.track.mqtt import MqttSink


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Collector:
    """A subscriber with a persistent session (QoS 1), reconnecting on its own, so that it gets
    what was published while it was away, as an integrator's client would."""

    def __init__(self, port: int, topic: str = "edge/#") -> None:
        self.port = port
        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier="collector",
                                          clean_session=False) as client:  # fmt: skip
                    await client.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for m in client.messages:
                        self.messages.append((str(m.topic), bytes(m.payload), bool(m.retain)))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.05)

    def events(self, camera: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.messages if t == f"edge/{camera}/events"]


@contextlib.asynccontextmanager
async def collecting(port: int, topic: str = "edge/#") -> AsyncIterator[Collector]:
    c = Collector(port, topic)
    task = asyncio.create_task(c.run())
    try:
        await asyncio.wait_for(c.connected.wait(), 10)
        yield c
    finally:
        task.cancel()
        await asyncio.wait([task])


@pytest_asyncio.fixture
async def metrics() -> EdgeMetrics:
    m = EdgeMetrics()
    m.init_sink("mqtt")
    return m


def current_interval_traffic(camera: str, n: int, first_track: int = 1) -> list[VehicleEvent]:
    start = datetime.fromtimestamp(interval_start(time.time(), 900) + 1, UTC)
    return synthetic_traffic(n, 0.5, start, camera, first_track)


def sample(metrics: EdgeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_every_event_once_in_order_per_camera_and_retained_counts(
    broker: MosquittoBroker, metrics: EdgeMetrics
) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}")
    events = {cam: current_interval_traffic(cam, 150) for cam in ("cam1", "cam2")}
    async with collecting(broker.port) as sub:
        bus = EventBus([MqttSink(config, 900, metrics)], metrics)
        await bus.start()
        for a, b in zip(events["cam1"], events["cam2"], strict=True):
            bus.emit(a)
            bus.emit(b)
        await bus.stop()
        await async_wait_for(lambda: len(sub.events("cam1")) + len(sub.events("cam2")) >= 600, 20)
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive by now
        for cam, sent in events.items():
            assert sub.events(cam) == [e.to_dict() for e in sent]
    assert sample(metrics, "edge_events_emitted_total", sink="mqtt") == 600
    async with collecting(broker.port, "edge/+/counts/#") as late:  # retained: a late subscriber
        await async_wait_for(lambda: len(late.messages) >= 4, 10)
        counts = {t: json.loads(p) for t, p, retained in late.messages if retained}
    start = iso_utc(interval_start(time.time(), 900))
    for cam in ("cam1", "cam2"):
        for line in ("north", "west"):
            body = counts[f"edge/{cam}/counts/{line}"]
            crossings = [e for e in events[cam] if e.kind == "crossing" and e.line == line]
            assert body["total"] == len(crossings) == 75
            assert (body["interval_start"], body["interval_s"]) == (start, 900)
            assert sum(n for d in body["counts"].values() for n in d.values()) == 75


async def test_broker_restart_loses_nothing_within_the_bound(
    broker: MosquittoBroker, metrics: EdgeMetrics
) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", backoff_initial_s=0.1,
                        backoff_max_s=0.5, queue_size=1000)  # fmt: skip
    events = current_interval_traffic("cam1", 150)  # 300 events
    sink = MqttSink(config, 900, metrics)
    bus = EventBus([sink], metrics)
    async with collecting(broker.port) as sub:
        await bus.start()
        for e in events[:100]:
            bus.emit(e)
        await async_wait_for(lambda: len(sub.events("cam1")) == 100, 20)
        broker.stop()
        await async_wait_for(lambda: sample(metrics, "edge_mqtt_connected") == 0, 10)
        for e in events[100:]:
            bus.emit(e)  # held while the broker is away
        await asyncio.sleep(0.5)  # a few reconnection attempts fail meanwhile
        assert len(sub.events("cam1")) == 100
        broker.start()
        await async_wait_for(lambda: len(sub.events("cam1")) >= 300, 30)
        await bus.stop()
        await asyncio.sleep(0.2)
        assert sub.events("cam1") == [e.to_dict() for e in events]
    assert sample(metrics, "edge_mqtt_connected") == 0  # closed
    assert sample(metrics, "edge_events_dropped_total", sink="mqtt", reason="queue_full") == 0


async def test_beyond_the_bound_drops_are_counted_and_the_rest_arrive_in_order(
    broker: MosquittoBroker, metrics: EdgeMetrics
) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", backoff_initial_s=0.1,
                        backoff_max_s=0.5, queue_size=20)  # fmt: skip
    events = current_interval_traffic("cam1", 100)  # 200 events
    bus = EventBus([MqttSink(config, 900, metrics)], metrics, batch_size=10)
    async with collecting(broker.port) as sub:
        await bus.start()
        await async_wait_for(lambda: sample(metrics, "edge_mqtt_connected") == 1, 10)
        broker.stop()
        await async_wait_for(lambda: sample(metrics, "edge_mqtt_connected") == 0, 10)
        for e in events:
            bus.emit(e)
        broker.start()
        await bus.stop()
        dropped = sample(metrics, "edge_events_dropped_total", sink="mqtt", reason="queue_full")
        await async_wait_for(lambda: len(sub.events("cam1")) >= 200 - dropped, 20)
        got = sub.events("cam1")
    assert dropped >= 200 - 20 - 10  # the queue and one batch in hand were kept
    assert len(got) == 200 - dropped
    sent = [e.to_dict() for e in events]
    assert got == [d for d in sent if d in got]  # in order, nothing twice
    assert got[: len(got)] == sent[: len(got)]  # the first ones, held from the start


async def test_shutdown_with_the_broker_away_gives_up_and_counts(metrics: EdgeMetrics) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", backoff_initial_s=0.1,
                        backoff_max_s=0.2)  # fmt: skip
    bus = EventBus([MqttSink(config, 900, metrics, shutdown_wait_s=0.5)], metrics)
    await bus.start()
    for e in current_interval_traffic("cam1", 5):
        bus.emit(e)
    t = time.monotonic()
    await bus.stop()
    assert time.monotonic() - t < 5
    assert sample(metrics, "edge_events_dropped_total", sink="mqtt", reason="failed") == 10
    assert sample(metrics, "edge_events_emitted_total", sink="mqtt") == 0


def test_seeded_counts_continue_the_interval(metrics: EdgeMetrics) -> None:
    start = interval_start(time.time(), 900)
    stored = {("cam1", "north"): (start, {"car": {"away": 7}})}
    sink = MqttSink(MqttConfig(url="mqtt://127.0.0.1"), 900, metrics, seed=lambda: stored)
    sink._counts.update(stored)  # what start() does with the seed
    when = datetime.fromtimestamp(start + 5, UTC)
    msgs = sink._messages([VehicleEvent("cam1", 1, "car", "crossing", when, line="north",
                                        direction="away")])  # fmt: skip
    body = json.loads(msgs[-1][1])
    assert msgs[-1][0] == "edge/cam1/counts/north" and msgs[-1][3] is True
    assert body["counts"] == {"car": {"away": 8}} and body["total"] == 8
    later = datetime.fromtimestamp(start + 900 + 5, UTC) + timedelta(0)
    msgs = sink._messages([VehicleEvent("cam1", 2, "bus", "crossing", later, line="north",
                                        direction="toward")])  # fmt: skip
    assert json.loads(msgs[-1][1])["counts"] == {"bus": {"toward": 1}}  # a new interval
