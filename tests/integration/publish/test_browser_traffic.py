"""A real Chromium shows the traffic view: counts per camera and line, the last 24 h chart per
interval and class (uPlot), the CSV link, and the latest events kept live by server-sent events,
from a real store beside live simulated cameras. The screenshot goes to artifacts/publish/."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from edge.config import StoreConfig
from edge.intervals import interval_start
from edge.metrics import EdgeMetrics
from edge.publish.live import LiveFeed
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.store.query import queries_for
from edge.store.sink import StoreSink
from edge.testing import async_wait_for, synthetic_traffic
from edge.track.events import EventBus, VehicleEvent

from .conftest import ARTIFACTS, Served, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

LINES = {cam: {"north": ("toward", "away"), "west": ("toward", "away")} for cam in ("cam1", "cam2")}
CLASSES = ["car", "motorcycle", "bus", "truck"]


@dataclass
class Site:
    base_url: str
    bus: EventBus


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(served: Served, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    path = tmp_path_factory.mktemp("traffic") / "edge.db"
    metrics = EdgeMetrics()
    store = StoreSink(StoreConfig(path=path), metrics)
    feed = LiveFeed(metrics)
    bus = EventBus([store, feed], metrics)
    await bus.start()
    start = datetime.fromtimestamp(interval_start(time.time(), 900) - 6 * 3600, UTC)
    for e in synthetic_traffic(300, 70.0, start) + synthetic_traffic(120, 170.0, start, "cam2",
                                                                      1000):  # fmt: skip
        bus.emit(e)
    await async_wait_for(lambda: bus.queued == 0, 10)
    app = create_app(served.service, served.stream, gateway=WebRtcGateway(served.stream),
                     data=queries_for(path, 15, CLASSES, LINES), feed=feed)  # fmt: skip
    try:
        async with serving(app) as base_url:
            yield Site(base_url, bus)
    finally:
        await bus.stop()


async def api(site: Site, path: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(site.base_url + path) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_counts_chart_and_live_event_list(site: Site, browser: Browser) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 1100})
    try:
        await page.goto(site.base_url + "/")
        await async_wait_for(lambda: page.evaluate("() => window.edge.traffic.ready"), 15)
        assert await page.evaluate("() => window.edge.traffic.error") is None
        # the chart: one uPlot canvas, a series per class, summing to the API's counts of cam1
        assert await page.locator("#counts-chart .uplot canvas").count() >= 1
        report = await api(site, "/api/counts?camera=cam1")
        series = await page.evaluate("() => window.edge.traffic.series")
        assert set(series) == set(CLASSES) and len(series["car"]) == 96
        assert sum(map(sum, series.values())) == sum(r["total"] for r in report["rows"]) == 300
        legend = await page.locator("#counts-chart .u-legend").inner_text()
        assert all(cls in legend for cls in CLASSES)
        # counts per camera and line
        totals = await page.locator("#totals tbody tr").all_inner_texts()
        assert len(totals) == 4 and any(t.startswith("cam1\tnorth") for t in totals), totals
        day = {tuple(t.split("\t")[:2]): int(t.split("\t")[3]) for t in totals}
        assert day[("cam1", "north")] + day[("cam1", "west")] == 300
        assert day[("cam2", "north")] + day[("cam2", "west")] == 120
        href = await page.locator("#csv-link").get_attribute("href")
        assert href == "/api/counts?camera=cam1&format=csv"
        # the latest events, newest first, plates shown, times in local time
        newest = (await api(site, "/api/events?limit=20"))["events"]
        rows = page.locator("#events tbody tr")
        assert await rows.count() == 20
        local = await page.evaluate("(iso) => new Date(iso).toLocaleString()", newest[0]["time"])
        assert (await rows.nth(0).inner_text()).startswith(local)
        plates = await page.locator("#events td.plate").all_inner_texts()
        assert [p for p in plates if p] == [e["plate"] for e in newest if e["plate"]]
        # live: a vehicle that crosses now shows at the top at once, and in the chart
        now = datetime.now(UTC)
        site.bus.emit(VehicleEvent("cam1", 9999, "truck", "crossing", now, line="north",
                                   direction="away", plate="LIVE123"))  # fmt: skip
        await async_wait_for(
            lambda: page.evaluate("() => window.edge.traffic.live === 1"), 10
        )  # fmt: skip
        assert (await rows.nth(0).locator("td.plate").inner_text()) == "LIVE123"

        async def charted() -> bool:
            s = await page.evaluate("() => window.edge.traffic.series")
            return sum(map(sum, s.values())) == 301

        await async_wait_for(charted, 10)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "traffic.png"), full_page=True)
        assert Path(ARTIFACTS / "traffic.png").stat().st_size > 10_000
        now_row = await page.locator("#totals tbody tr").all_inner_texts()
        assert any(r.startswith("cam1\tnorth\t") and int(r.split("\t")[2]) >= 1 for r in now_row)
    finally:
        await page.close()


async def test_csv_link_downloads_the_report(site: Site) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(site.base_url + "/api/counts?camera=cam1&format=csv") as resp:
            text = await resp.text()
    lines = text.splitlines()
    assert lines[0].startswith("camera,line,interval_start,interval_end,car_toward,car_away")
    assert len(lines) == 1 + 2 * 96
