"""`/api/counts`, `/api/events` and `/api/events/live` over HTTP, on a real SQLite store: every
parameter, every bad value (a 400 naming the parameter), capped limits, pages, CSV, auth."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from edge.config import ServerConfig, StoreConfig, StreamConfig
from edge.intervals import interval_start
from edge.metrics import EdgeMetrics
from edge.publish.data_api import MAX_EVENTS, MAX_INTERVALS
from edge.publish.live import LiveFeed
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app
from edge.store.query import queries_for
from edge.store.sink import StoreSink
from edge.testing import synthetic_traffic
from edge.track.events import EventBus, VehicleEvent

from .conftest import serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
TOKEN = "data-token-1234"
CLASSES = ["car", "motorcycle", "bus", "truck"]
LINES = {"cam1": {"north": ("toward", "away"), "west": ("toward", "away")},
         "cam2": {"gate": ("in", "out")}}  # fmt: skip
CAM1 = synthetic_traffic(200, 17.0, T0)  # 10:00-10:57, 400 events
CAM2 = synthetic_traffic(30, 100.0, T0, camera="cam2", first_track=1000)
RANGE = "from=2026-12-03T10:00:00Z&to=2026-12-03T11:00:00Z"


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def get(self, path: str, token: str | None = TOKEN) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


async def store(path: Path, events: list[VehicleEvent]) -> None:
    metrics = EdgeMetrics()
    bus = EventBus([StoreSink(StoreConfig(path=path), metrics)], metrics)
    await bus.start()
    for e in events:
        bus.emit(e)
    await bus.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    path = tmp_path_factory.mktemp("store") / "edge.db"
    cam2 = [VehicleEvent(e.camera, e.track_id, e.class_name, e.kind, e.time,
                         line="gate" if e.line else None,
                         direction=("in" if e.direction == "toward" else "out")
                         if e.direction else None, plate=e.plate, frame=e.frame)
            for e in CAM2]  # fmt: skip
    await store(path, CAM1 + cam2)
    service = PassthroughService([], StreamConfig(), EdgeMetrics())
    data = queries_for(path, 15, CLASSES, LINES)
    app = create_app(service, server=ServerConfig(auth_token=TOKEN), data=data,
                     feed=LiveFeed(service.metrics))  # fmt: skip
    async with aiohttp.ClientSession() as http, serving(app) as base:
        yield Api(base, http)


def tally(interval_s: int, line: str | None = None) -> Counter:
    return Counter(
        (e.line, interval_start(e.time.timestamp(), interval_s), e.class_name, e.direction)
        for e in CAM1 if e.kind == "crossing" and (line is None or e.line == line)
    )  # fmt: skip


async def test_counts_json_per_interval_line_class_direction(api: Api) -> None:
    status, body = await api.get(f"/api/counts?camera=cam1&{RANGE}")
    assert status == 200, body
    assert body["interval_s"] == 900 and body["classes"] == CLASSES
    assert (body["from"], body["to"]) == ("2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z")
    rows = body["rows"]
    assert [(r["line"], r["start"]) for r in rows] == [
        (line, f"2026-12-03T10:{m:02d}:00Z") for line in ("north", "west") for m in (0, 15, 30, 45)
    ]
    got = Counter()
    for r in rows:
        start = int(datetime.fromisoformat(r["start"]).timestamp())
        for cls, dirs in r["counts"].items():
            assert set(dirs) == {"toward", "away"}  # every column, zeros too
            for d, n in dirs.items():
                if n:
                    got[(r["line"], start, cls, d)] = n
        assert r["total"] == sum(n for dirs in r["counts"].values() for n in dirs.values())
    assert got == tally(900)


@pytest.mark.parametrize("interval", ["1h", "3600", "3600s", "60m"])
async def test_counts_interval_is_a_multiple_of_the_stored_one(api: Api, interval: str) -> None:
    status, body = await api.get(f"/api/counts?camera=cam1&line=north&interval={interval}&{RANGE}")
    assert status == 200, body
    assert [(r["line"], r["start"], r["total"]) for r in body["rows"]] == [
        ("north", "2026-12-03T10:00:00Z", sum(tally(900, "north").values()))
    ]


async def test_counts_all_cameras_and_a_line_of_any_camera(api: Api) -> None:
    _, everything = await api.get(f"/api/counts?interval=1d&{RANGE}")
    assert {(r["camera"], r["line"]) for r in everything["rows"]} == {
        ("cam1", "north"), ("cam1", "west"), ("cam2", "gate")
    }
    assert everything["from"] == "2026-12-03T00:00:00Z"  # rounded out to whole intervals
    assert sum(r["total"] for r in everything["rows"]) == 230
    _, gate = await api.get(f"/api/counts?line=gate&{RANGE}")
    assert {r["camera"] for r in gate["rows"]} == {"cam2"}
    assert sum(r["total"] for r in gate["rows"]) == 30
    assert all(set(d) == {"in", "out"} for r in gate["rows"] for d in r["counts"].values())


async def test_counts_default_range_is_the_last_24_hours(api: Api) -> None:
    status, body = await api.get("/api/counts?camera=cam2")
    assert status == 200
    start = datetime.fromisoformat(body["from"])
    end = datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=1) and len(body["rows"]) == 96
    now = datetime.now(UTC)
    assert end - timedelta(minutes=15) <= now <= end + timedelta(seconds=5)


async def test_counts_csv_is_a_classified_count_report(api: Api) -> None:
    status, text = await api.get(f"/api/counts?camera=cam1&format=csv&{RANGE}")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = [f"{c}_{d}" for c in CLASSES for d in ("toward", "away")]
    assert list(rows[0]) == ["camera", "line", "interval_start", "interval_end", *columns,
                             "total"]  # fmt: skip
    assert len(rows) == 8
    for r in rows:
        assert int(r["total"]) == sum(int(r[c]) for c in columns)
        start = int(datetime.fromisoformat(r["interval_start"]).timestamp())
        for c in columns:
            cls, d = c.split("_")
            assert int(r[c]) == tally(900)[(r["line"], start, cls, d)]
    assert sum(int(r["total"]) for r in rows) == 200


async def test_csv_download_is_named(api: Api) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{api.base}/api/counts?camera=cam1&line=west&format=csv&{RANGE}"
    async with api.http.get(url, headers=headers) as resp:
        assert resp.content_type == "text/csv"
        assert resp.headers["Content-Disposition"].startswith(
            'attachment; filename="counts-cam1-west-'
        )


BAD_COUNTS = [
    ("camera=nope", "camera: unknown camera 'nope' (known: cam1, cam2)"),
    ("camera=cam2&line=north", "line: no line 'north' of camera cam2"),
    ("line=nope", "line: no line 'nope' of any camera"),
    ("from=yesterday", "from: 'yesterday' is not an ISO 8601 time"),
    ("to=2026-13-01", "to: '2026-13-01' is not an ISO 8601 time"),
    ("to=1e300", "to: '1e300' is out of range"),
    ("from=nan", "from: 'nan' is out of range"),
    ("from=2026-12-03T11:00:00Z&to=2026-12-03T10:00:00Z", "from: must be before to"),
    ("interval=abc", "interval: 'abc' is not a duration"),
    ("interval=0", "interval: 0 s: must be a multiple"),
    ("interval=5m", "interval: 300 s: must be a multiple of the stored 900 s"),
    ("interval=2d", "interval: 172800 s: must be a multiple"),
    ("interval=-15m", "interval: '-15m' is not a duration"),
    ("format=xml", "format: 'xml': must be json or csv"),
    ("camera=cam1&camera=cam2", "camera: given more than once"),
    ("cam=cam1", "'cam': unknown parameter (known: camera, line, from, to, interval, format)"),
    ("from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
     f"to: the range holds 911712 intervals; at most {MAX_INTERVALS}"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "error"), BAD_COUNTS, ids=[q for q, _ in BAD_COUNTS])
async def test_bad_counts_parameters_are_400_naming_it(api: Api, query: str, error: str) -> None:
    status, body = await api.get(f"/api/counts?{query}")
    assert status == 400, body
    assert body["error"].startswith(error), body


async def test_events_newest_first_paged_by_cursor(api: Api) -> None:
    seen: list[dict] = []
    path = "/api/events?camera=cam1&limit=37"
    while True:
        status, body = await api.get(path)
        assert status == 200, body
        assert body["limit"] == 37
        seen += body["events"]
        if body["next_cursor"] is None:
            break
        path = f"/api/events?camera=cam1&limit=37&cursor={body['next_cursor']}"
    assert len(seen) == 400 and len({e["id"] for e in seen}) == 400
    assert [e["epoch"] for e in seen] == sorted((e["epoch"] for e in seen), reverse=True)
    assert seen[0]["time"].endswith("Z") and seen[0]["camera"] == "cam1"
    assert {e["kind"] for e in seen} == {"crossing", "track_end"}


async def test_events_filters(api: Api) -> None:
    _, ends = await api.get("/api/events?kind=track_end&limit=1000")
    assert len(ends["events"]) == 230 and {e["kind"] for e in ends["events"]} == {"track_end"}
    plates = [e["plate"] for e in ends["events"] if e["plate"]]
    assert "AB001CD" in plates and len(plates) == 50 + 8
    _, window = await api.get(
        "/api/events?camera=cam2&since=2026-12-03T10:10:00Z&until=2026-12-03T10:20:00Z"
    )
    lo, hi = (T0 + timedelta(minutes=10)).timestamp(), (T0 + timedelta(minutes=20)).timestamp()
    expected = [e for e in CAM2 if lo <= e.time.timestamp() < hi]
    assert len(window["events"]) == len(expected) > 0
    assert all(lo <= e["epoch"] < hi and e["camera"] == "cam2" for e in window["events"])
    _, unix = await api.get(f"/api/events?camera=cam2&since={lo}&until={hi}")
    assert unix["events"] == window["events"]
    _, default = await api.get("/api/events")
    assert len(default["events"]) == 100 and default["limit"] == 100


async def test_events_limit_is_capped(api: Api) -> None:
    status, body = await api.get("/api/events?limit=100000")
    assert status == 200 and body["limit"] == MAX_EVENTS
    assert len(body["events"]) == 460 and body["next_cursor"] is None  # all there is
    status, body = await api.get(f"/api/events?limit={MAX_EVENTS + 1}&since=0")
    assert status == 200 and body["limit"] == MAX_EVENTS


BAD_EVENTS = [
    ("camera=nope", "camera: unknown camera 'nope'"),
    ("kind=plate", "kind: 'plate': must be one of crossing, track_end"),
    ("limit=abc", "limit: 'abc' is not a whole number"),
    ("limit=0", "limit: 0: must be at least 1"),
    ("limit=-5", "limit: -5: must be at least 1"),
    ("limit=1.5", "limit: '1.5' is not a whole number"),
    ("since=soon", "since: 'soon' is not an ISO 8601 time"),
    ("until=10:00", "until: '10:00' is not an ISO 8601 time"),
    ("since=2026-12-03T11:00:00Z&until=2026-12-03T10:00:00Z", "since: must be before until"),
    ("cursor=!!!", "cursor: '!!!' is not a cursor this API gave"),
    ("cursor=bm90LWEtY3Vyc29y", "cursor: 'bm90LWEtY3Vyc29y' is not a cursor"),
    ("line=north", "'line': unknown parameter"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "error"), BAD_EVENTS, ids=[q for q, _ in BAD_EVENTS])
async def test_bad_events_parameters_are_400_naming_it(api: Api, query: str, error: str) -> None:
    status, body = await api.get(f"/api/events?{query}")
    assert status == 400, body
    assert body["error"].startswith(error), body


@pytest.mark.parametrize("path", ["/api/counts", "/api/events", "/api/events/live"])
async def test_the_data_routes_need_the_token(api: Api, path: str) -> None:
    status, body = await api.get(path, token=None)
    assert status == 401 and body == {"error": "missing or wrong token"}
    status, _ = await api.get(path, token="wrong-token-123")
    assert status == 401


async def test_without_a_store_the_routes_say_so() -> None:
    service = PassthroughService([], StreamConfig(), EdgeMetrics())
    async with aiohttp.ClientSession() as http, serving(create_app(service)) as base:
        for path in ("/api/counts", "/api/events", "/api/events/live"):
            async with http.get(base + path) as resp:
                assert resp.status == 404
                assert "error" in await resp.json()


async def test_live_feed_sends_each_event_as_it_happens() -> None:
    service = PassthroughService([], StreamConfig(), EdgeMetrics())
    feed = LiveFeed(service.metrics)
    bus = EventBus([feed], service.metrics)
    await bus.start()
    app = create_app(service, feed=feed)
    events = synthetic_traffic(5, 1.0, datetime.now(UTC)) + CAM2[:4]
    async with aiohttp.ClientSession() as http, serving(app) as base:
        async with http.get(base + "/api/events/live") as every, \
                http.get(base + "/api/events/live?camera=cam2") as cam2:  # fmt: skip
            assert every.status == 200 and every.content_type == "text/event-stream"
            await asyncio.wait_for(every.content.readline(), 5)  # the opening comment
            await asyncio.wait_for(cam2.content.readline(), 5)
            for e in events:
                bus.emit(e)
            assert await read_events(every, len(events)) == [e.to_dict() for e in events]
            assert await read_events(cam2, 4) == [e.to_dict() for e in CAM2[:4]]
            async with http.get(base + "/api/events/live?camera=a&x=1") as bad:
                assert bad.status == 400
                assert (await bad.json())["error"].startswith("'x': unknown parameter")
    await bus.stop()
    assert feed.subscribers == 0


async def read_events(resp: aiohttp.ClientResponse, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().strip()
        if line.startswith("data: "):
            out.append(json.loads(line[6:]))
    return out
