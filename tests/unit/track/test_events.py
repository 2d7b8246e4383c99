"""Vehicle events: JSON shape, the rotating JSONL file (and its write errors), and the webhook
against a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from edge.config import WebhookConfig
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for, free_port
from edge.testing import metric_value as sample
from edge.track.events import EventBus, JsonlSink, VehicleEvent, WebhookSink


def event(i: int, kind: str = "crossing") -> VehicleEvent:
    return VehicleEvent(
        camera="cam1", track_id=i, class_name="car", kind=kind,  # type: ignore[arg-type]
        time=datetime(2026, 5, 4, 12, 0, 0, 250_000, tzinfo=UTC),
        line="gate" if kind == "crossing" else None,
        direction="in" if kind == "crossing" else None,
    )  # fmt: skip


def test_event_json_has_every_field() -> None:
    d = json.loads(event(7).to_json())
    assert d == {
        "camera": "cam1", "track_id": 7, "class": "car", "kind": "crossing", "line": "gate",
        "direction": "in", "time": "2026-05-04T12:00:00.250Z", "epoch": 1777896000.25,
        "plate": None, "frame": None, "plate_confidence": None, "plate_reads": None,
        "snapshot": None, "plate_snapshot": None,
    }  # fmt: skip
    end = json.loads(event(8, "track_end").to_json())
    assert end["kind"] == "track_end" and end["line"] is None


async def test_jsonl_rotates_by_size_and_keeps_every_event(tmp_path: Path) -> None:
    metrics = EdgeMetrics()
    path = tmp_path / "ev" / "events.jsonl"
    sink = JsonlSink(path, max_bytes=1024, backups=20, metrics=metrics)
    bus = EventBus([sink], metrics)
    await bus.start()
    for i in range(60):
        bus.emit(event(i))
    await bus.stop()
    files = sorted(path.parent.iterdir(), key=lambda p: -int(p.suffix[1:] or 0)
                   if p.suffix != ".jsonl" else 0)  # fmt: skip
    assert len(files) > 3, "expected several rotated files"
    assert all(f.stat().st_size <= 1024 for f in files)
    ids = [json.loads(line)["track_id"] for f in files for line in f.read_text().splitlines()]
    assert ids == list(range(60))  # oldest file first, nothing lost, in order
    assert sample(metrics, "edge_events_emitted_total", sink="jsonl") == 60


async def test_jsonl_keeps_only_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    metrics = EdgeMetrics()
    bus = EventBus([JsonlSink(path, max_bytes=1024, backups=2, metrics=metrics)], metrics)
    await bus.start()
    for i in range(100):
        bus.emit(event(i))
    await bus.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl", "events.jsonl.1", "events.jsonl.2",
    ]  # fmt: skip
    last = [json.loads(x)["track_id"] for x in path.read_text().splitlines()]
    assert last[-1] == 99


class Receiver:
    """A real aiohttp server that fails the first `failures` requests with `status`."""

    def __init__(self, failures: int = 0, status: int = 500) -> None:
        self.failures = failures
        self.status = status
        self.requests = 0
        self.events: list[dict] = []
        self.authorization: list[str | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.authorization.append(request.headers.get("Authorization"))
        await self.gate.wait()
        if self.requests <= self.failures:
            return web.Response(status=self.status)
        self.events += await request.json()
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def webhook(url: str, metrics: EdgeMetrics, retries: int = 5, queue_size: int = 1000):
    config = WebhookConfig(url=url, retries=retries, queue_size=queue_size, timeout_s=5)
    return WebhookSink(config, metrics, backoff_s=0.01, backoff_max_s=0.05)


async def test_webhook_delivers_every_event() -> None:
    metrics = EdgeMetrics()
    async with Receiver() as server:
        bus = EventBus([webhook(server.url, metrics)], metrics)
        await bus.start()
        for i in range(25):
            bus.emit(event(i))
        await bus.stop()
    assert [e["track_id"] for e in server.events] == list(range(25))
    assert server.events[0]["time"] == "2026-05-04T12:00:00.250Z"
    assert sample(metrics, "edge_events_emitted_total", sink="webhook") == 25


async def test_webhook_retries_a_server_that_fails_first() -> None:
    metrics = EdgeMetrics()
    async with Receiver(failures=3, status=503) as server:
        bus = EventBus([webhook(server.url, metrics, retries=5)], metrics)
        await bus.start()
        for i in range(5):
            bus.emit(event(i))
        await bus.stop()
    assert server.requests >= 4
    assert sorted(e["track_id"] for e in server.events) == list(range(5))
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="failed") == 0


async def test_webhook_gives_up_after_retries_and_counts_the_loss() -> None:
    metrics = EdgeMetrics()
    async with Receiver(failures=1000) as server:
        bus = EventBus([webhook(server.url, metrics, retries=2)], metrics, batch_size=10)
        await bus.start()
        for i in range(4):
            bus.emit(event(i))
        await bus.stop()
    assert server.requests == 3  # one try and two retries for the single batch
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="failed") == 4


async def test_webhook_does_not_retry_a_refused_payload() -> None:
    metrics = EdgeMetrics()
    async with Receiver(failures=1000, status=400) as server:
        bus = EventBus([webhook(server.url, metrics, retries=5)], metrics)
        await bus.start()
        bus.emit(event(1))
        await bus.stop()
    assert server.requests == 1
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="rejected") == 1


async def test_webhook_unreachable_is_retried_then_counted() -> None:
    metrics = EdgeMetrics()
    bus = EventBus([webhook(f"http://127.0.0.1:{free_port()}/x", metrics, retries=1)], metrics)
    await bus.start()
    bus.emit(event(1))
    await bus.stop()
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="failed") == 1


async def test_emit_never_waits_for_a_hung_server_and_stop_flushes_all() -> None:
    metrics = EdgeMetrics()
    async with Receiver() as server:
        server.gate.clear()  # the server accepts requests but does not answer
        bus = EventBus([webhook(server.url, metrics, queue_size=50)], metrics, batch_size=5)
        await bus.start()
        for i in range(30):
            bus.emit(event(i))  # returns although nothing was delivered yet
        await asyncio.sleep(0)
        assert server.events == []
        assert sample(metrics, "edge_events_queue", sink="webhook") > 0
        server.gate.set()
        await bus.stop()
    assert [e["track_id"] for e in server.events] == list(range(30))
    assert sample(metrics, "edge_events_queue", sink="webhook") == 0


async def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    metrics = EdgeMetrics()
    async with Receiver() as server:
        bus = EventBus([webhook(server.url, metrics, queue_size=5)], metrics)
        for i in range(20):  # before start: nothing drains yet
            bus.emit(event(i))
        await bus.start()
        await bus.stop()
    assert [e["track_id"] for e in server.events] == [0, 1, 2, 3, 4]
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="queue_full") == 15


async def test_emit_from_another_thread(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    metrics = EdgeMetrics()
    bus = EventBus([JsonlSink(path, max_bytes=10**6, backups=1, metrics=metrics)], metrics)
    await bus.start()

    def producer() -> None:
        for i in range(200):
            bus.emit(event(i))

    worker = threading.Thread(target=producer)
    worker.start()
    await asyncio.to_thread(worker.join)
    await bus.stop()
    ids = [json.loads(x)["track_id"] for x in path.read_text().splitlines()]
    assert ids == list(range(200))


@pytest.mark.parametrize("bad", ["ftp://x/y", "http://"])
def test_webhook_url_is_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        WebhookConfig(url=bad)


async def test_emit_after_stop_is_counted_not_lost_silently(tmp_path: Path) -> None:
    metrics = EdgeMetrics()
    sink = JsonlSink(tmp_path / "e.jsonl", max_bytes=10**6, backups=1, metrics=metrics)
    bus = EventBus([sink], metrics)
    await bus.start()
    await bus.stop()
    bus.emit(event(1))
    assert sample(metrics, "edge_events_dropped_total", sink="jsonl", reason="stopped") == 1


async def test_jsonl_on_a_full_disk_counts_io_error_drops_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/dev/full refuses every write with ENOSPC, as a full disk does."""
    metrics = EdgeMetrics()
    bus = EventBus([JsonlSink(Path("/dev/full"), max_bytes=10**6, backups=1, metrics=metrics)],
                   metrics)  # fmt: skip
    await bus.start()
    for i in range(7):
        bus.emit(event(i))
    await bus.stop()
    assert sample(metrics, "edge_events_dropped_total", sink="jsonl", reason="io_error") == 7
    assert sample(metrics, "edge_events_emitted_total", sink="jsonl") == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "events file /dev/full: [Errno 28] No space left on device; 7 events lost"
    ]
    assert all(r.exc_info is None for r in caplog.records)


async def test_jsonl_writes_again_once_the_io_error_is_gone(tmp_path: Path) -> None:
    """A folder put where the file was fails every write; once removed, events flow again."""
    metrics = EdgeMetrics()
    path = tmp_path / "events.jsonl"
    bus = EventBus([JsonlSink(path, max_bytes=10**6, backups=1, metrics=metrics)], metrics)
    await bus.start()
    path.unlink()
    path.mkdir()
    for i in range(5):
        bus.emit(event(i))

    def dropped() -> float:
        return sample(metrics, "edge_events_dropped_total", sink="jsonl", reason="io_error")

    await async_wait_for(lambda: dropped() == 5, 10)
    path.rmdir()
    for i in range(5, 9):
        bus.emit(event(i))
    await bus.stop()
    assert [json.loads(x)["track_id"] for x in path.read_text().splitlines()] == [5, 6, 7, 8]
    assert dropped() == 5
    assert sample(metrics, "edge_events_emitted_total", sink="jsonl") == 4


@pytest.mark.parametrize("reachable", [True, False], ids=["server-503", "unreachable"])
async def test_webhook_credentials_never_reach_the_log(
    reachable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed deliveries are logged with the URL: its password masked, its user kept."""
    caplog.set_level(logging.DEBUG)
    password = "wh-s3cret-pw"
    metrics = EdgeMetrics()
    async with Receiver(failures=1000, status=503) as server:
        port = server.port if reachable else free_port()
        url = f"http://hookuser:{password}@127.0.0.1:{port}/hook"
        bus = EventBus([webhook(url, metrics, retries=1)], metrics)
        await bus.start()
        bus.emit(event(1))
        await bus.stop()
    assert sample(metrics, "edge_events_dropped_total", sink="webhook", reason="failed") == 1
    assert caplog.text.count("http://hookuser:***@127.0.0.1") == 3  # two attempts, one give-up
    assert password not in caplog.text
    if reachable:  # the credentials did go to the server, as HTTP basic auth
        basic = "Basic " + base64.b64encode(f"hookuser:{password}".encode()).decode()
        assert server.authorization == [basic, basic]
