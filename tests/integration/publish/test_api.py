"""The HTTP surface: camera API, health, metrics, auth, VP8 fallback, PLI, viewer caps.

Malformed, oversized and cross-site signalling are in test_signalling_faults.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from edge.config import CameraConfig, IngestConfig, ServerConfig, StreamConfig
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.publish.passthrough import PassthroughService
from edge.publish.viewer_client import SignallingError, WebRtcViewer
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import async_wait_for, free_port

from .conftest import EXPECTED_SIZE, Served, serving

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
    metrics = EdgeMetrics()
    dead_cam = CameraConfig(id="dead", url=f"rtsp://127.0.0.1:{free_port()}/x")
    dead = CameraSource(dead_cam, IngestConfig(), metrics)
    service = PassthroughService([dead], StreamConfig(), metrics)
    await dead.start()
    try:
        async with serving(create_app(service)) as base:
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503 and (await resp.json())["ready"] is False
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200
    finally:
        await dead.stop()


async def test_auth_token_guards_api_and_metrics(
    served: Served, http: aiohttp.ClientSession
) -> None:
    token = "tok-12345678"
    app = create_app(served.service, served.stream, ServerConfig(auth_token=token))
    async with serving(app) as base:
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
        for open_path in ("/", "/healthz", "/readyz", "/static/app.js"):
            async with http.get(base + open_path) as resp:
                assert resp.status == 200, open_path
        with pytest.raises(SignallingError) as refused:  # signalling is guarded too
            await WebRtcViewer(base, "cam2").connect()
        assert refused.value.status == 401
        viewer = await WebRtcViewer(base, "cam2", token=token).connect()
        try:
            frame = await viewer.recv()
            assert (frame.width, frame.height) == EXPECTED_SIZE["cam2"]
        finally:
            await viewer.close()


async def test_vp8_only_viewers_share_one_vp8_encoder(served: Served) -> None:
    viewers = [await WebRtcViewer(served.base_url, "cam2", codec="VP8").connect() for _ in range(2)]
    try:
        assert all(v.answer["codec"] == "vp8" for v in viewers)
        for v in viewers:
            frame = await v.recv()
            assert (frame.width, frame.height) == EXPECTED_SIZE["cam2"]
        publisher = served.service.publishers["cam2"]
        assert publisher.encoder("vp8") is not None and publisher.encoder("h264") is None
        assert served.sample("edge_encoders_active", camera="cam2") == 1
    finally:
        for v in viewers:
            await v.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)


async def test_pli_forces_a_keyframe_in_the_shared_encoder(served: Served) -> None:
    viewer = await WebRtcViewer(served.base_url, "cam2").connect()
    try:
        await viewer.recv()
        encoder = served.service.publishers["cam2"].encoder("h264")
        assert encoder is not None
        requests, keyframes = encoder.keyframe_requests, encoder.keyframes
        await viewer.send_pli()
        await async_wait_for(lambda: encoder.keyframe_requests > requests, 5)
        await async_wait_for(lambda: encoder.keyframes > keyframes, 5)
    finally:
        await viewer.close()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)


async def test_viewer_caps_per_client_per_camera_and_in_all(served: Served) -> None:
    """Each cap refuses with its own status and names its setting; the others still get in."""
    stream = served.stream.model_copy(
        update={"max_viewers": 3, "max_viewers_per_camera": 2, "max_viewers_per_client": 1}
    )
    app = create_app(served.service, stream, gateway=WebRtcGateway(stream))
    viewers: list[WebRtcViewer] = []

    async def join(camera: str, address: str) -> WebRtcViewer:
        viewer = WebRtcViewer(base, camera, local_address=address)
        try:
            await viewer.connect()
        except SignallingError:
            await viewer.close()
            raise
        viewers.append(viewer)
        return viewer

    async with serving(app) as base:
        try:
            await join("cam2", "127.0.0.2")
            with pytest.raises(SignallingError) as own_share:  # the same address, any camera
                await join("cam1", "127.0.0.2")
            await join("cam2", "127.0.0.3")
            with pytest.raises(SignallingError) as camera_full:
                await join("cam2", "127.0.0.4")
            await join("cam1", "127.0.0.4")  # another camera still has room
            with pytest.raises(SignallingError) as server_full:
                await join("cam1", "127.0.0.5")
            for refused, status, setting in (
                (own_share, 429, "stream.max_viewers_per_client = 1"),
                (camera_full, 503, "stream.max_viewers_per_camera = 2"),
                (server_full, 503, "stream.max_viewers = 3"),
            ):
                assert refused.value.status == status
                assert setting in refused.value.error
                assert refused.value.headers["Retry-After"] == str(int(stream.connect_timeout_s))
            for viewer in viewers:  # the viewers let in are real ones
                await viewer.recv()
            assert served.sample("edge_viewers", camera="cam2") == 2
        finally:
            for viewer in viewers:
                await viewer.close()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)
