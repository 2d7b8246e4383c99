"""The service's one HTTP server: viewer page, camera API, WebRTC signalling, health and metrics.

    app = create_app(view, stream=config.stream, server=config.server)
    # view: anything shaped like edge.publish.service.ServiceView (edge/app.py implements it)

Routes:
- `GET /` the viewer page (static/index.html): every camera in a grid, click to enlarge;
  `/?camera=ID` shows one camera; `?token=T` when the server has an auth token.
- `GET /api/cameras` → `{"cameras": [CameraStatus.to_json(), ...]}` (credentials redacted).
- `POST /api/cameras/{id}/webrtc` body `{"sdp": OFFER, "type": "offer"}` with
  `Content-Type: application/json` → `{"sdp": ANSWER, "type": "answer", "session": ID,
  "codec": "h264"|"vp8"}`. Refusals are `{"error": "..."}`: 404 unknown camera, 403 a request
  that a page of another origin sent (`Sec-Fetch-Site`), 415 another content type, 413 a body
  over `MAX_BODY_BYTES`, 400 a malformed or unusable offer, 429 the client's address holds
  `stream.max_viewers_per_client` viewers, 503 the camera's or the server's slots are taken, or
  the camera starts only once the model has loaded (all three with Retry-After). Requiring JSON
  matters: a page of another site can send a `text/plain` POST without asking (no CORS
  preflight), while a JSON one needs a preflight this server never grants, so without a token no
  other site can take viewer slots from a visitor's browser.
- `POST /api/sessions/{session}/close` frees a viewer at once (the page's close beacon).
- `GET /api/shard` → `{"index": K, "count": N, "cameras": [ids], "peers": [{"index": k,
  "url": URL}, ...]}`: which share of the cameras this process serves (`edge run --shard K/N`)
  and the other shards' pages (`shard.peers`; empty when not configured).
- `GET /api/webrtc/config` → `{"ice_servers": [...]}` for the browser's RTCPeerConnection.
- `GET /api/counts`, `GET /api/events`, `GET /api/events/live`: traffic data (data_api.py).
- `GET /api/config`, `PUT /api/cameras/{id}/lines`: the running config and line edits
  (config_api.py), with a `config_host`; refused (403) beyond loopback without a token.
- `GET /healthz` 200 while the process serves; `GET /readyz` 200 when `view.is_ready()`, else 503.
- `GET /metrics` Prometheus exposition of `view.registry`.
With `ServerConfig.auth_token` set, `/api/*` and `/metrics` need `Authorization: Bearer T` or
`?token=T` (a beacon cannot set headers); the page, static files and probes stay open.
Every error under `/api/` is a one-line JSON `{"error": ...}`, aiohttp's own (404, 405) included.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.config import ServerConfig, ShardConfig, StreamConfig
from edge.config.shard import peer_urls
from edge.metrics import EdgeMetrics
from edge.publish import config_api, data_api
from edge.publish.live import LiveFeed
from edge.publish.service import ConfigHost, ServiceView
from edge.publish.webrtc import OfferError, TooManyViewers, WebRtcGateway, browser_ice_servers
from edge.redact import redact

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
VIEW_KEY = web.AppKey("edge_view", object)
SHARD_KEY = web.AppKey("edge_shard", ShardConfig)
GATEWAY_KEY = web.AppKey("edge_webrtc", WebRtcGateway)
_PROTECTED = ("/api/", "/metrics")
MAX_BODY_BYTES = 64 * 1024
"""Largest request body: a browser's offer is 3-10 KB; a bigger one is refused with a 413."""
_SAME_ORIGIN_FETCH = ("same-origin", "none")
"""`Sec-Fetch-Site` values of our own page (or a typed URL); absent from non-browser clients."""
_BODY_HEADERS = ("content-type", "content-length")


class Refused(Exception):
    """A request refused with a JSON error; `reason` is its `edge_viewers_refused` label."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


STARTING_RETRY_S = 1
"""Retry-After of an offer for a camera that starts once the model has loaded."""


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _short(value: Any, limit: int = 40) -> str:
    """A client's value for an error message, cut short: never echo a 64 KB string back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors under /api/ (unknown route, 405 of a CORS preflight) as JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        if exc.content_type == "application/json":
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.reason if not exc.text or exc.text == default else exc.text
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return json_error(exc.status, message, headers)


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


async def shard_info(request: web.Request) -> web.Response:
    shard = request.app[SHARD_KEY]
    peers = [
        {"index": k, "url": redact(url)}
        for k, url in enumerate(peer_urls(shard))
        if k != shard.index
    ]
    cameras = [c.id for c in _view(request).cameras()]
    return web.json_response(
        {"index": shard.index, "count": shard.count, "cameras": cameras, "peers": peers}
    )


async def webrtc_config(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    return web.json_response({"ice_servers": browser_ice_servers(gateway.stream.ice_servers)})


async def offer(request: web.Request) -> web.Response:
    camera_id = request.match_info["camera_id"]
    view = _view(request)
    publisher = view.publisher(camera_id)
    if publisher is None:
        if any(c.id == camera_id for c in view.cameras()):  # configured, not started yet
            return json_error(
                503, f"camera {camera_id} is starting (the model is loading)",
                {"Retry-After": str(STARTING_RETRY_S)},
            )  # fmt: skip
        return json_error(404, f"unknown camera {_short(camera_id)}")
    try:
        sdp = await read_offer(request)
        session = await request.app[GATEWAY_KEY].answer(publisher, sdp, remote=request.remote)
    except TooManyViewers as exc:
        retry = {"Retry-After": str(math.ceil(exc.retry_after_s))}
        return _refuse(
            publisher.metrics, camera_id, Refused(exc.status, exc.reason, str(exc), retry)
        )
    except OfferError as exc:
        return _refuse(publisher.metrics, camera_id, Refused(400, "bad_offer", str(exc)))
    except Refused as exc:
        return _refuse(publisher.metrics, camera_id, exc)
    return web.json_response(
        {"sdp": session.answer_sdp, "type": "answer", "session": session.id, "codec": session.codec}
    )


def _refuse(metrics: EdgeMetrics, camera_id: str, refused: Refused) -> web.Response:
    metrics.count_viewer_refused(refused.reason)
    level = logging.WARNING if refused.reason == "bad_offer" else logging.INFO
    log.log(level, "camera %s: offer refused (%s): %s", camera_id, refused.status, refused)
    return json_error(refused.status, str(refused), refused.headers)


async def read_offer(request: web.Request) -> str:
    """The offer's SDP from a same-origin JSON body, or `Refused` saying what is wrong."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in _SAME_ORIGIN_FETCH:
        raise Refused(403, "cross_site", f"offers from another origin are refused ({site})")
    if request.content_type != "application/json":
        got = request.headers.get("Content-Type", "none")
        raise Refused(
            415, "content_type", f"Content-Type must be application/json, not {_short(got)}"
        )
    size = request.content_length
    if size is not None and size > MAX_BODY_BYTES:
        raise Refused(
            413, "too_large", f"the body is {size} bytes; an offer has at most {MAX_BODY_BYTES}"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes") from None
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise Refused(400, "bad_offer", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        expected = '{"sdp": "...", "type": "offer"}'
        raise Refused(400, "bad_offer", f"the body must be {expected}, not a {type(body).__name__}")
    sdp, kind = body.get("sdp"), body.get("type", "offer")
    if not isinstance(sdp, str) or not sdp:
        raise Refused(400, "bad_offer", f'"sdp" must be a non-empty string, not {_short(sdp)}')
    if kind != "offer":
        raise Refused(400, "bad_offer", f'"type" must be "offer", not {_short(kind)}')
    return sdp


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
    data: data_api.TrafficData | None = None,
    feed: LiveFeed | None = None,
    shard: ShardConfig | None = None,
    config_host: ConfigHost | None = None,
) -> web.Application:
    """The aiohttp application; run it with aiohttp's AppRunner on `server.host:server.port`.

    `data` answers the counts and events routes, `feed` the live event feed (edge/publish/
    data_api.py), `config_host` the config routes (config_api.py); without them those routes
    answer 404."""
    server = server or ServerConfig()
    auth = _auth_middleware(server.auth_token)
    app = web.Application(middlewares=[_json_errors, auth], client_max_size=MAX_BODY_BYTES)
    app[VIEW_KEY] = view
    app[GATEWAY_KEY] = gateway or WebRtcGateway(stream or StreamConfig())
    app[SHARD_KEY] = shard or ShardConfig()
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/api/cameras", list_cameras)
    app.router.add_get("/api/shard", shard_info)
    app.router.add_get("/api/webrtc/config", webrtc_config)
    app.router.add_post("/api/cameras/{camera_id}/webrtc", offer)
    app.router.add_post("/api/sessions/{session_id}/close", close_session)
    data_api.add_routes(app, data, feed)
    config_api.add_routes(app, config_host, server)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_shutdown.append(_close_viewers)
    return app
