"""Fault matrix, signalling: malformed, oversized and cross-site offers.

Each is refused with one JSON line saying what is wrong, counted in `edge_viewers_refused_total`,
and leaves nothing behind (no peer connection, no viewer, no encoder, no traceback in the log);
the server then serves a real viewer as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser

from edge.publish.viewer_client import WebRtcViewer
from edge.publish.web import MAX_BODY_BYTES
from edge.testing import async_wait_for

from .conftest import EXPECTED_SIZE, Served, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

OFFER_URL = "{}/api/cameras/cam2/webrtc"


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="module")
async def offer_sdp() -> AsyncIterator[str]:
    """A real browser-like offer (aiortc), never answered."""
    viewer = WebRtcViewer("http://unused", "cam2")
    try:
        yield await viewer.create_offer()
    finally:
        await viewer.close()


def assert_nothing_left(served: Served) -> None:
    assert not served.gateway.sessions
    assert served.sample("edge_viewers", camera="cam2") == 0


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a refusal logged a traceback"


async def assert_still_serves(served: Served) -> None:
    viewer = await WebRtcViewer(served.base_url, "cam2").connect()
    try:
        frame = await viewer.recv()
        assert (frame.width, frame.height) == EXPECTED_SIZE["cam2"]
    finally:
        await viewer.close()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)


def _cut(sdp: str) -> str:
    return sdp[: len(sdp) // 2]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "the body is not JSON: Expecting value"),
        (b"\xff\xfe\x00garbage", "the body is not JSON"),
        (b"[1, 2]", 'the body must be {"sdp": "...", "type": "offer"}, not a list'),
        (b'{"type": "offer"}', '"sdp" must be a non-empty string, not None'),
        (b'{"sdp": 42, "type": "offer"}', '"sdp" must be a non-empty string, not 42'),
        (b'{"sdp": "v=0", "type": "answer"}', '"type" must be "offer", not \'answer\''),
        (b'{"sdp": "v=0\\r\\n", "type": "offer"}', "the offer has no video section"),
        ("CUT", "cannot answer the offer"),  # a real offer cut in half
        ("NO-CODEC", "no common video codec"),  # offers only a codec the server lacks
    ],
)
async def test_fault_malformed_signalling(
    served: Served,
    http: aiohttp.ClientSession,
    offer_sdp: str,
    caplog: pytest.LogCaptureFixture,
    body: bytes | str,
    expected: str,
) -> None:
    if body == "CUT":
        body = web.json_response({"sdp": _cut(offer_sdp), "type": "offer"}).body  # type: ignore[assignment]
    elif body == "NO-CODEC":
        sdp = offer_sdp.replace("H264/90000", "AV1X/90000").replace("VP8/90000", "AV1X/90000")
        body = web.json_response({"sdp": sdp, "type": "offer"}).body  # type: ignore[assignment]
    assert isinstance(body, bytes)
    refused_before = served.refused("bad_offer")
    headers = {"Content-Type": "application/json"}
    async with http.post(OFFER_URL.format(served.base_url), data=body, headers=headers) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
    assert expected in error, error
    assert "\n" not in error and len(error) < 400
    assert served.refused("bad_offer") == refused_before + 1
    assert_nothing_left(served)
    assert_no_traceback(caplog)


async def test_fault_oversized_signalling(
    served: Served, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = OFFER_URL.format(served.base_url)
    refused_before = served.refused("too_large")
    big = b'{"sdp": "' + b"a" * (2 * 1024 * 1024) + b'", "type": "offer"}'
    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=big, headers=headers) as resp:  # with a Content-Length
        assert resp.status == 413
        assert f"at most {MAX_BODY_BYTES}" in (await resp.json())["error"]

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse up front
        for _ in range(32):
            yield b" " * 8192

    async with http.post(url, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert f"over {MAX_BODY_BYTES} bytes" in (await resp.json())["error"]
    assert served.refused("too_large") == refused_before + 2
    assert_nothing_left(served)
    assert_no_traceback(caplog)
    await assert_still_serves(served)


async def test_fault_signalling_that_is_not_json(
    served: Served, http: aiohttp.ClientSession, offer_sdp: str
) -> None:
    """text/plain and form bodies are what another site's page can POST without a preflight."""
    url = OFFER_URL.format(served.base_url)
    body = web.json_response({"sdp": offer_sdp, "type": "offer"}).body
    assert isinstance(body, bytes)
    refused_before = served.refused("content_type")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        async with http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 415, content_type
            assert "must be application/json" in (await resp.json())["error"]
    assert served.refused("content_type") == refused_before + 3
    assert_nothing_left(served)
    headers = {"Content-Type": "application/json; charset=utf-8"}  # parameters are fine
    async with http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
        session = (await resp.json())["session"]
    assert await served.gateway.close(session)


CROSS_SITE_JS = """async (url) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  const body = JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" });
  pc.close();
  const out = {};
  try {  // a "simple" request: sent without a preflight, its answer hidden from the page
    const r = await fetch(url, { method: "POST", mode: "no-cors",
                                 headers: { "Content-Type": "text/plain" }, body });
    out.simple = r.type;
  } catch (e) { out.simple = `error ${e}`; }
  try {  // JSON needs a CORS preflight, which this server never grants
    await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    out.json = "sent";
  } catch (e) { out.json = "blocked"; }
  out.beacon = navigator.sendBeacon(url, body);
  return out;
}"""


async def test_fault_cross_site_signalling(
    served: Served, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """A page of another origin, in a real Chromium, tries to take a viewer slot three ways."""

    async def home(_: web.Request) -> web.Response:
        return web.Response(text="<p>another site</p>", content_type="text/html")

    other_site = web.Application()
    other_site.router.add_get("/", home)
    refused_before = served.refused("cross_site"), served.refused("content_type")
    page = await browser.new_page()
    try:
        async with serving(other_site) as other_url:
            await page.goto(other_url + "/")
            result = await page.evaluate(CROSS_SITE_JS, OFFER_URL.format(served.base_url))
        assert result["simple"] == "opaque"  # sent, and refused by the server (below)
        assert result["json"] == "blocked"  # the browser never sent it
        assert result["beacon"] is True
        # the simple request and the beacon reached the server and were refused for where they
        # came from (Sec-Fetch-Site), before their text/plain body was even looked at
        await async_wait_for(lambda: served.refused("cross_site") >= refused_before[0] + 2, 10)
        await asyncio.sleep(0.5)  # nothing else arrives late and gets a slot
        assert served.refused("cross_site") == refused_before[0] + 2
        assert served.refused("content_type") == refused_before[1]
        assert_nothing_left(served)
        assert_no_traceback(caplog)
    finally:
        await page.close()


async def test_refusals_are_logged_in_one_line(
    served: Served, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.publish.web")
    async with http.post(OFFER_URL.format(served.base_url), data=b"x") as resp:
        assert resp.status == 415
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.publish.web"]
    assert any("camera cam2: offer refused (415)" in line for line in lines), lines
