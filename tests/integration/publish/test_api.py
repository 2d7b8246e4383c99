"""The HTTP surface: camera API, health, metrics, auth, offer errors, VP8 fallback, PLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from edge.config import CameraConfig, ServerConfig, StreamConfig
from edge.ingest.source import CameraSource
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import async_wait_for, free_port

from .conftest import EXPECTED_SIZE, Served
from .rawclient import RawViewer

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_cameras_api_redacts_credentials(served: Served, http: aiohttp.ClientSession) -> None:
    async with http.get(served.base_url + "/api/cameras") as resp:
        assert resp.status == 200
        text = await resp.text()
        body = await resp.json()
    assert "s3cret-pw" not in text
    cams = {c["id"]: c for c in body["cameras"]}
    assert set(cams) == {"cam1", "cam2"}
    assert cams["cam1"]["url"].startswith("rtsp://viewer:***@127.0.0.1")
    assert cams["cam1"]["name"] == "Overpass"
    assert all(c["state"] == "streaming" for c in cams.values())
    assert (cams["cam2"]["width"], cams["cam2"]["height"]) == (320, 240)


async def test_health_ready_and_metrics(served: Served, http: aiohttp.ClientSession) -> None:
    async with http.get(served.base_url + "/healthz") as resp:
        assert resp.status == 200
    async with http.get(served.base_url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["ready"] is True
    async with http.get(served.base_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'edge_encoders_active{camera="cam1"}' in text
    assert 'edge_viewers{camera="cam2"}' in text
    assert "s3cret-pw" not in text


async def test_not_ready_without_a_streaming_camera(http: aiohttp.ClientSession) -> None:
    dead = CameraSource(CameraConfig(id="dead", url=f"rtsp://127.0.0.1:{free_port()}/x"))
    service = PassthroughService([dead], StreamConfig())
    await dead.start()
    runner = web.AppRunner(create_app(service))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["ready"] is False
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()
        await dead.stop()


async def test_bad_offers_are_refused_clearly(served: Served, http: aiohttp.ClientSession) -> None:
    url = served.base_url + "/api/cameras/{}/webrtc"
    async with http.post(url.format("nope"), json={"sdp": "v=0", "type": "offer"}) as resp:
        assert resp.status == 404
    async with http.post(url.format("cam1"), data=b"not json") as resp:
        assert resp.status == 400
    async with http.post(url.format("cam1"), json={"sdp": "v=0\r\n", "type": "offer"}) as resp:
        assert resp.status == 400 and "no video" in (await resp.json())["error"]
    assert served.sample("edge_viewers", camera="cam1") == 0  # nothing leaked


async def test_auth_token_guards_api_and_metrics(
    served: Served, http: aiohttp.ClientSession
) -> None:
    token = "tok-12345678"
    app = create_app(served.service, served.stream, ServerConfig(auth_token=token))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        for path in ("/api/cameras", "/metrics"):
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
                assert token not in await resp.text()
            async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
            async with http.get(f"{base}{path}?token={token}") as resp:
                assert resp.status == 200
        for open_path in ("/", "/healthz", "/static/app.js"):
            async with http.get(base + open_path) as resp:
                assert resp.status == 200, open_path
    finally:
        await runner.cleanup()


async def test_vp8_only_viewers_share_one_vp8_encoder(served: Served) -> None:
    viewers = [await RawViewer(served.base_url, "cam2", codec="VP8").connect() for _ in range(2)]
    try:
        assert all(v.answer["codec"] == "vp8" for v in viewers)
        await async_wait_for(lambda: all(v.track is not None for v in viewers), 10)
        for v in viewers:
            assert v.track is not None
            frame = await asyncio.wait_for(v.track.recv(), 10)
            assert (frame.width, frame.height) == EXPECTED_SIZE["cam2"]
        publisher = served.service.publishers["cam2"]
        assert publisher.encoder("vp8") is not None and publisher.encoder("h264") is None
        assert served.sample("edge_encoders_active", camera="cam2") == 1
    finally:
        for v in viewers:
            await v.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)


async def test_pli_forces_a_keyframe_in_the_shared_encoder(served: Served) -> None:
    viewer = await RawViewer(served.base_url, "cam2").connect()
    try:
        await async_wait_for(lambda: viewer.track is not None, 10)
        assert viewer.track is not None
        await asyncio.wait_for(viewer.track.recv(), 10)
        encoder = served.service.publishers["cam2"].encoder("h264")
        assert encoder is not None
        requests, keyframes = encoder.keyframe_requests, encoder.keyframes
        await viewer.send_pli()
        await async_wait_for(lambda: encoder.keyframe_requests > requests, 5)
        await async_wait_for(lambda: encoder.keyframes > keyframes, 5)
    finally:
        await viewer.close()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)


async def test_viewer_slots_are_bounded(served: Served) -> None:
    gateway = WebRtcGateway(served.stream, max_sessions=1)
    runner = web.AppRunner(create_app(served.service, served.stream, gateway=gateway))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    first = await RawViewer(f"http://127.0.0.1:{port}", "cam2").connect()
    try:
        second = RawViewer(f"http://127.0.0.1:{port}", "cam2")
        with pytest.raises(aiohttp.ClientResponseError) as refused:
            await second.connect()
        await second.close()
        assert refused.value.status == 503
        assert served.sample("edge_viewers", camera="cam2") == 1
    finally:
        await first.close()
        await runner.cleanup()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)
