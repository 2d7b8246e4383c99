"""Traffic data routes: interval counts (JSON or CSV), stored events, and the live event feed.

- `GET /api/counts?camera=&line=&from=&to=&interval=&format=json|csv`: counts per interval,
  camera, line, class and direction; every interval of the range is listed, zeros included.
  `from`/`to` are ISO 8601 (UTC unless an offset is given) or Unix seconds, rounded out to whole
  intervals; by default the last 24 h up to the end of the current interval. `interval` is
  `900`, `900s`, `15m`, `1h`, `1d`: a multiple of the stored interval, at most a day. `format=csv`
  is a classified count report: one row per interval and line, a column per class × direction
  (`car_toward`), and `total`.
- `GET /api/events?camera=&kind=&since=&until=&limit=&cursor=`: stored events, newest first;
  `limit` (default 100) is capped at `MAX_EVENTS`; `next_cursor` (null on the last page) goes in
  `cursor` for the next page.
- `GET /api/events/live?camera=`: server-sent events, one `data: {event JSON}` per event as it
  happens (the page's live list).
- `GET /api/snapshots/NAME`: a snapshot JPEG named by an event's `snapshot`/`plate_snapshot`
  (only when `ocr.snapshots.dir` is set); 404 once the folder's bound has removed it.
Every bad parameter, an unknown one included, is a 400 whose error starts with its name
(`{"error": "interval: ..."}`). Queries run on worker threads, never on the event loop.

The data come from any object shaped like `TrafficData` (edge/app.py hands it the store's
queries); without one these routes answer 404 saying that the store is off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from edge.intervals import parse_duration_s, parse_time
from edge.publish.live import FeedFull, LiveFeed

MAX_EVENTS = 1000
"""Largest page of `/api/events`; a bigger `limit` is capped to it (the answer says so)."""
DEFAULT_EVENTS = 100
MAX_INTERVALS = 20_000
"""Most intervals one counts query may span (about seven months of 15-minute bins)."""
MAX_INTERVAL_S = 86400
DEFAULT_RANGE_S = 86400
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies and the browser from closing an idle live feed."""
_KINDS = ("crossing", "track_end")


class Report(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    def to_csv(self) -> str: ...


class TrafficData(Protocol):
    """What these routes need from the store (edge.store.query.StoreQueries has this shape)."""

    interval_s: int

    def cameras(self) -> Mapping[str, Sequence[str]]: ...

    def counts(
        self, start_s: int, end_s: int, interval_s: int, camera: str | None = None,
        line: str | None = None,
    ) -> Report: ...  # fmt: skip

    def events(
        self, limit: int, camera: str | None = None, kind: str | None = None,
        since_ms: int | None = None, until_ms: int | None = None,
        before: tuple[int, int] | None = None,
    ) -> list[dict[str, Any]]: ...  # fmt: skip


class BadParameter(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")


DATA_KEY = web.AppKey("edge_traffic_data", object)
FEED_KEY = web.AppKey("edge_live_feed", object)
SNAPSHOTS_KEY = web.AppKey("edge_snapshots_dir", Path)
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.jpg")


def _short(value: str, limit: int = 40) -> str:
    return repr(value) if len(value) <= limit else repr(value[: limit - 3] + "...")


def _params(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query.items():
        if name == "token":
            continue
        if name not in allowed:
            raise BadParameter(_short(name), f"unknown parameter (known: {', '.join(allowed)})")
        if name in out:
            raise BadParameter(name, "given more than once")
        out[name] = value
    return out


def _time(params: dict[str, str], name: str) -> float | None:
    if name not in params:
        return None
    try:
        value = parse_time(params[name])
    except ValueError:
        raise BadParameter(name, f"{_short(params[name])} is not an ISO 8601 time "
                                 "(2026-12-03T10:00:00Z) or Unix seconds") from None  # fmt: skip
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise BadParameter(name, f"{_short(params[name])} is out of range")
    return value


def _camera_line(params: dict[str, str], cameras: Mapping[str, Sequence[str]]
                 ) -> tuple[str | None, str | None]:  # fmt: skip
    camera, line = params.get("camera"), params.get("line")
    if camera is not None and camera not in cameras:
        known = ", ".join(sorted(cameras)) or "none"
        raise BadParameter("camera", f"unknown camera {_short(camera)} (known: {known})")
    if line is not None:
        lines = cameras[camera] if camera is not None else [n for ls in cameras.values()
                                                             for n in ls]  # fmt: skip
        if line not in lines:
            where = f"of camera {camera}" if camera is not None else "of any camera"
            raise BadParameter("line", f"no line {_short(line)} {where}")
    return camera, line


def _interval(params: dict[str, str], base_s: int) -> int:
    if "interval" not in params:
        return base_s
    try:
        value = parse_duration_s(params["interval"])
    except ValueError as exc:
        raise BadParameter("interval", str(exc)) from None
    if value <= 0 or value % base_s or value > MAX_INTERVAL_S:
        raise BadParameter("interval", f"{value} s: must be a multiple of the stored "
                           f"{base_s} s, at most {MAX_INTERVAL_S} s (1d)")  # fmt: skip
    return value


def _data(request: web.Request) -> TrafficData:
    data = request.app.get(DATA_KEY)
    if data is None:
        raise web.HTTPNotFound(
            text='{"error": "the store is off (store.path: null)"}', content_type="application/json"
        )
    return data  # type: ignore[return-value]


async def counts(request: web.Request) -> web.StreamResponse:
    data = _data(request)
    try:
        p = _params(request, ("camera", "line", "from", "to", "interval", "format"))
        fmt = p.get("format", "json")
        if fmt not in ("json", "csv"):
            raise BadParameter("format", f"{_short(fmt)}: must be json or csv")
        interval = _interval(p, data.interval_s)
        cameras = await asyncio.to_thread(data.cameras)
        camera, line = _camera_line(p, cameras)
        end = _time(p, "to")
        end_s = math.ceil((time.time() if end is None else end) / interval) * interval
        start = _time(p, "from")
        start_s = (int(start // interval) * interval if start is not None
                   else end_s - max(DEFAULT_RANGE_S, interval))  # fmt: skip
        if start_s >= end_s:
            raise BadParameter("from", "must be before to")
        if (end_s - start_s) // interval > MAX_INTERVALS:
            raise BadParameter("to", f"the range holds {(end_s - start_s) // interval} intervals; "
                               f"at most {MAX_INTERVALS}: ask a longer interval or a shorter "
                               "range")  # fmt: skip
    except BadParameter as exc:
        return web.json_response({"error": str(exc)}, status=400)
    report = await asyncio.to_thread(data.counts, start_s, end_s, interval, camera, line)
    if fmt == "json":
        return web.json_response(report.to_json())
    name = f"counts-{camera or 'all'}{'-' + line if line else ''}-{start_s}-{interval}s.csv"
    return web.Response(
        text=report.to_csv(), content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )  # fmt: skip


def encode_cursor(event: dict[str, Any]) -> str:
    raw = f"{round(event['epoch'] * 1000)}:{event['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        time_ms, ident = raw.split(":")
        return int(time_ms), int(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter("cursor", f"{_short(text)} is not a cursor this API gave") from None


async def events(request: web.Request) -> web.Response:
    data = _data(request)
    try:
        p = _params(request, ("camera", "kind", "since", "until", "limit", "cursor"))
        camera, _ = _camera_line(p, await asyncio.to_thread(data.cameras))
        kind = p.get("kind")
        if kind is not None and kind not in _KINDS:
            raise BadParameter("kind", f"{_short(kind)}: must be one of {', '.join(_KINDS)}")
        try:
            limit = int(p.get("limit", DEFAULT_EVENTS))
        except ValueError:
            raise BadParameter("limit", f"{_short(p['limit'])} is not a whole number") from None
        if limit < 1:
            raise BadParameter("limit", f"{limit}: must be at least 1")
        limit = min(limit, MAX_EVENTS)
        since, until = _time(p, "since"), _time(p, "until")
        if since is not None and until is not None and since >= until:
            raise BadParameter("since", "must be before until")
        before = decode_cursor(p["cursor"]) if "cursor" in p else None
    except BadParameter as exc:
        return web.json_response({"error": str(exc)}, status=400)
    since_ms = None if since is None else math.floor(since * 1000)
    until_ms = None if until is None else math.floor(until * 1000)
    page = await asyncio.to_thread(data.events, limit, camera, kind, since_ms, until_ms, before)
    cursor = encode_cursor(page[-1]) if len(page) == limit else None
    return web.json_response({"events": page, "limit": limit, "next_cursor": cursor})


async def live(request: web.Request) -> web.StreamResponse:
    feed: LiveFeed | None = request.app.get(FEED_KEY)  # type: ignore[assignment]
    if feed is None:
        raise web.HTTPNotFound(text='{"error": "no live feed"}', content_type="application/json")
    data = request.app.get(DATA_KEY)
    try:
        p = _params(request, ("camera",))
        if data is not None:
            _camera_line(p, await asyncio.to_thread(data.cameras))  # type: ignore[attr-defined]
        sub = feed.subscribe(p.get("camera"))
    except BadParameter as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except FeedFull as exc:
        return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "5"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})  # fmt: skip
    try:
        await resp.prepare(request)
        await resp.write(b": live vehicle events\n\n")
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    item = await sub.queue.get()
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            await resp.write(f"data: {json.dumps(item, separators=(',', ':'))}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        feed.unsubscribe(sub)
        raise
    feed.unsubscribe(sub)
    return resp


async def snapshot(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    folder = request.app[SNAPSHOTS_KEY]
    path = folder / name
    if not _SNAPSHOT_NAME.fullmatch(name) or not path.is_file():
        return web.json_response(
            {"error": f"name: no snapshot {_short(name)} (snapshots beyond ocr.snapshots.max_mb "
                      "are removed, oldest first)"}, status=404)  # fmt: skip
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


def add_snapshot_route(app: web.Application, folder: Path) -> None:
    """`GET /api/snapshots/NAME` from `folder` (names as the track-end events give them)."""
    app[SNAPSHOTS_KEY] = Path(folder)
    app.router.add_get("/api/snapshots/{name}", snapshot)


def add_routes(app: web.Application, data: TrafficData | None, feed: LiveFeed | None) -> None:
    if data is not None:
        app[DATA_KEY] = data
    if feed is not None:
        app[FEED_KEY] = feed

        async def end_feeds(_: web.Application) -> None:
            feed.close_subscribers()

        app.on_shutdown.append(end_feeds)
    app.router.add_get("/api/counts", counts)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/events/live", live)
