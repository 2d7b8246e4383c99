"""A browser that asks for a camera's video while the service still loads its model (the cameras
start once it is loaded) is told to come back shortly (503 with Retry-After, which the page
honours), not that the camera does not exist."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from edge.app import EdgeService
from edge.config import EdgeConfig
from edge.metrics import EdgeMetrics
from edge.publish.web import create_app
from edge.testing import free_port


async def test_an_offer_before_the_model_is_loaded_is_asked_to_retry(assets: Path) -> None:
    config = EdgeConfig.model_validate({
        "cameras": [{"id": "gate", "url": str(assets / "video" / "car-detection.mp4")}],
        "metrics": {"gpu": False},
    })  # fmt: skip
    service = EdgeService(config, EdgeMetrics())  # not run: its detector is not loaded
    runner = web.AppRunner(create_app(service, config.stream, config.server))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    offer = {"sdp": "v=0\r\n", "type": "offer"}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/api/cameras") as r:
                cams = (await r.json())["cameras"]
                assert [(c["id"], c["state"]) for c in cams] == [("gate", "stopped")]
            async with http.post("/api/cameras/gate/webrtc", json=offer) as r:
                assert r.status == 503, await r.text()
                assert int(r.headers["Retry-After"]) >= 1
                assert "starting" in (await r.json())["error"]
            async with http.post("/api/cameras/nope/webrtc", json=offer) as r:
                assert r.status == 404
    finally:
        await runner.cleanup()
