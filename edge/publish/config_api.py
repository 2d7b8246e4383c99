"""The config API: read the running config, and edit a camera's counting lines in `cameras.yaml`.

    config_api.add_routes(app, host, server)  # create_app does this when given a ConfigHost

Routes (registered only with a `ConfigHost`, edge/publish/service.py):
- `GET /api/config` → `{"config": {...}, "config_path": PATH|null, "last_reload": {...}|null}`:
  the config that runs now, every credential redacted (camera, webhook and MQTT passwords,
  `server.auth_token`), and what the last reload did (`ReloadResult.to_json()`).
- `PUT /api/cameras/{id}/lines` body `{"lines": [{"name", "points": [[x, y], [x, y]],
  "directions": [a, b]}, ...]}` (`Content-Type: application/json`; coordinates in source pixels)
  → `{"camera": ID, "lines": [...], "reload": {...}}`. The lines replace the camera's `lines:` in
  the config file (edge/config/writer.py: comments and layout kept, atomic, `.bak` backup), then
  the service reloads the file. Refusals, as `{"error": ...}`: 400 a body or line that is wrong
  (named: `lines[1].points: ...`), 404 a camera the file does not have, 409 a service without a
  config file, a file that does not validate as it is, or one that cannot be written; 415 another
  content type; 403 a request from a page of another origin.

Access: the same token as the rest of `/api/` (web.py's middleware). A server that listens
beyond loopback without a token (`server.auth: none`) answers 403 to both routes: whoever reaches
the port could otherwise rewrite the config.

Writers are serialised by an asyncio lock here and a `flock` in the writer (against other
processes), and the reload runs under the same lock, so that the last file written is the last
one loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from edge.config import ConfigError, LineConfig, ServerConfig
from edge.config.writer import FileBusy, UnknownCamera, UnsupportedLayout, edit_lines
from edge.publish.service import ConfigHost
from edge.redact import describe_exception, redact

log = logging.getLogger(__name__)

HOST_KEY = web.AppKey("edge_config_host", object)
SERVER_KEY = web.AppKey("edge_config_server", ServerConfig)
LOCK_KEY = web.AppKey("edge_config_lock", asyncio.Lock)
MAX_LINES = 64
"""Lines one camera may have through the API: more is a mistake, not a road."""
_LINES = TypeAdapter(list[LineConfig])
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|api_?key|credential")
_TURN_PASSWORD = re.compile(r"^(turns?:[^:@/]*:)[^@]*@")
"""`turn:USER:PASS@host` (stream.ice_servers): no `//`, so the URL patterns miss it."""
_SAME_ORIGIN_FETCH = ("same-origin", "none")


def add_routes(app: web.Application, host: ConfigHost | None, server: ServerConfig) -> None:
    """Register the config routes when the service hands a ConfigHost (none: they answer 404)."""
    if host is None:
        return
    app[HOST_KEY] = host
    app[SERVER_KEY] = server
    app[LOCK_KEY] = asyncio.Lock()
    app.router.add_get("/api/config", get_config)
    app.router.add_put("/api/cameras/{camera_id}/lines", put_lines)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _host(request: web.Request) -> ConfigHost:
    return request.app[HOST_KEY]  # type: ignore[return-value]


def _closed(request: web.Request) -> web.Response | None:
    """The 403 of a server open beyond loopback with no token, else None."""
    server = request.app[SERVER_KEY]
    if not server.is_open_beyond_loopback:
        return None
    return _error(
        403,
        f"the config API is off: the server listens on {server.host!r} without "
        "server.auth_token; set a token or listen on 127.0.0.1 to use it",
    )


def redact_tree(node: Any, key: str = "") -> Any:
    """A JSON tree with every credential masked: values under secret-looking keys
    (`auth_token`) become "***", and every string goes through `redact` (URL passwords,
    registered secrets)."""
    if isinstance(node, dict):
        return {k: redact_tree(v, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact_tree(v, key) for v in node]
    if node is not None and _SECRET_KEY.search(key):
        return "***"
    if isinstance(node, str):
        return redact(_TURN_PASSWORD.sub(r"\1***@", node))
    return node


async def get_config(request: web.Request) -> web.Response:
    if (refused := _closed(request)) is not None:
        return refused
    host = _host(request)
    last = host.last_reload
    body = {
        "config": redact_tree(host.config.model_dump(mode="json")),
        "config_path": None if host.config_path is None else redact(str(host.config_path)),
        "last_reload": None if last is None else redact_tree(last.to_json()),
    }
    return web.json_response(body)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_lines(request: web.Request) -> list[LineConfig]:
    """The lines of a same-origin JSON body `{"lines": [...]}`, or BadRequest saying what is
    wrong (one line, `lines[1].points: ...`)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in _SAME_ORIGIN_FETCH:
        raise BadRequest(403, f"config edits from another origin are refused ({site})")
    if request.content_type != "application/json":
        raise BadRequest(415, "Content-Type must be application/json")
    try:
        body = json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, "the body is too large") from None
    except ValueError as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"lines"}:
        raise BadRequest(400, 'the body must be {"lines": [...]} and nothing else')
    raw = body["lines"]
    if not isinstance(raw, list):
        raise BadRequest(400, f'"lines" must be a list, not {type(raw).__name__}')
    if len(raw) > MAX_LINES:
        raise BadRequest(400, f"at most {MAX_LINES} lines per camera, not {len(raw)}")
    try:
        lines = _LINES.validate_python(raw)
    except ValidationError as exc:
        raise BadRequest(400, "; ".join(_describe(e) for e in exc.errors()[:5])) from None
    names = [line.name for line in lines]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadRequest(400, f"lines: duplicate line names: {', '.join(dupes)}")
    return lines


def _describe(err: Any) -> str:
    """`lines[0].points.1: Input should be ...` from one pydantic error."""
    where = "lines"
    for item in err["loc"]:
        where += f"[{item}]" if isinstance(item, int) and where == "lines" else f".{item}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return redact(f"{where}: {msg}")


async def put_lines(request: web.Request) -> web.Response:
    if (refused := _closed(request)) is not None:
        return refused
    host = _host(request)
    camera_id = request.match_info["camera_id"]
    try:
        lines = await read_lines(request)
    except BadRequest as exc:
        return _error(exc.status, str(exc))
    path = host.config_path
    if path is None:
        return _error(409, "this service runs a config built in code, not a file: nothing to edit")
    async with request.app[LOCK_KEY]:
        try:
            await asyncio.to_thread(edit_lines, path, camera_id, lines)
        except UnknownCamera:
            return _error(404, f"unknown camera {camera_id[:64]!r}: not in {path.name}")
        except ConfigError as exc:
            problems = "; ".join(exc.problems[:5])
            return _error(409, redact(f"{path.name} does not validate with this edit: {problems}"))
        except (UnsupportedLayout, FileBusy, OSError) as exc:
            return _error(409, f"cannot edit {path.name}: {describe_exception(exc)}")
        log.info("camera %s: %d counting line(s) written to %s", camera_id, len(lines), path)
        result = await host.reload_config("api")
    saved = [line.model_dump(mode="json") for line in lines]
    return web.json_response(
        {"camera": camera_id, "lines": saved, "reload": redact_tree(result.to_json())}
    )
