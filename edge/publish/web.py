"""The service's one HTTP server: viewer page, camera API, WebRTC signalling, health and metrics.

    app = create_app(view, stream=config.stream, server=config.server)
    # view: anything shaped like edge.publish.service.ServiceView (edge/app.py implements it)

Routes:
- `GET /` the viewer page (static/index.html): every camera in a grid, click to enlarge;
  `/?camera=ID` shows one camera; `?token=T` when the server has an auth token.
- `GET /api/cameras` → `{"cameras": [CameraStatus.to_json(), ...]}` (credentials redacted).
- `POST /api/cameras/{id}/webrtc` body `{"sdp": OFFER, "type": "offer"}` →
  `{"sdp": ANSWER, "type": "answer", "session": ID, "codec": "h264"|"vp8"}`;
  404 unknown camera, 400 unusable offer, 503 when every viewer slot is taken.
- `POST /api/sessions/{session}/close` frees a viewer at once (the page's close beacon).
- `GET /api/webrtc/config` → `{"ice_servers": [...]}` for the browser's RTCPeerConnection.
- `GET /healthz` 200 while the process serves; `GET /readyz` 200 when `view.is_ready()`, else 503.
- `GET /metrics` Prometheus exposition of `view.registry`.
With `ServerConfig.auth_token` set, `/api/*` and `/metrics` need `Authorization: Bearer T` or
`?token=T` (a beacon cannot set headers); the page, static files and probes stay open.
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.config import ServerConfig, StreamConfig
from edge.publish.service import ServiceView
from edge.publish.webrtc import OfferError, TooManyViewers, WebRtcGateway, browser_ice_servers

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
VIEW_KEY = web.AppKey("edge_view", object)
GATEWAY_KEY = web.AppKey("edge_webrtc", WebRtcGateway)
_PROTECTED = ("/api/", "/metrics")


def _is_authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def _auth_middleware(token: str | None) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith(_PROTECTED) and not _is_authorised(request, token):
            raise web.HTTPUnauthorized(
                text='{"error": "missing or wrong token"}',
                content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return auth


def _view(request: web.Request) -> ServiceView:
    return request.app[VIEW_KEY]  # type: ignore[return-value]


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def list_cameras(request: web.Request) -> web.Response:
    cameras = [c.to_json() for c in _view(request).cameras()]
    return web.json_response({"cameras": cameras})


async def webrtc_config(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    return web.json_response({"ice_servers": browser_ice_servers(gateway.stream.ice_servers)})


async def offer(request: web.Request) -> web.Response:
    camera_id = request.match_info["camera_id"]
    publisher = _view(request).publisher(camera_id)
    if publisher is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"unknown camera {camera_id!r}"}),
            content_type="application/json",
        )
    try:
        body = await request.json()
        sdp = body["sdp"]
        if body.get("type", "offer") != "offer" or not isinstance(sdp, str):
            raise OfferError("expected {'sdp': str, 'type': 'offer'}")
        session = await request.app[GATEWAY_KEY].answer(publisher, sdp, remote=request.remote)
    except TooManyViewers as exc:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": str(exc)}),
            content_type="application/json",
            headers={"Retry-After": "5"},
        ) from None
    except (ValueError, KeyError, TypeError) as exc:  # OfferError and bad JSON are ValueErrors
        log.warning("camera %s: offer refused: %s", camera_id, exc)
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None
    return web.json_response(
        {"sdp": session.answer_sdp, "type": "answer", "session": session.id, "codec": session.codec}
    )


async def close_session(request: web.Request) -> web.Response:
    closed = await request.app[GATEWAY_KEY].close(request.match_info["session_id"])
    return web.json_response({"closed": closed})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = bool(_view(request).is_ready())
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(_view(request).registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _close_viewers(app: web.Application) -> None:
    await app[GATEWAY_KEY].close_all()


def create_app(
    view: ServiceView,
    stream: StreamConfig | None = None,
    server: ServerConfig | None = None,
    gateway: WebRtcGateway | None = None,
) -> web.Application:
    """The aiohttp application; run it with aiohttp's AppRunner on `server.host:server.port`."""
    server = server or ServerConfig()
    auth = _auth_middleware(server.auth_token)
    app = web.Application(middlewares=[auth], client_max_size=1 << 20)
    app[VIEW_KEY] = view
    app[GATEWAY_KEY] = gateway or WebRtcGateway(stream or StreamConfig())
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/api/cameras", list_cameras)
    app.router.add_get("/api/webrtc/config", webrtc_config)
    app.router.add_post("/api/cameras/{camera_id}/webrtc", offer)
    app.router.add_post("/api/sessions/{session_id}/close", close_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_shutdown.append(_close_viewers)
    return app
