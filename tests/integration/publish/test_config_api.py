"""The config API over real HTTP: the running config with every credential redacted, line edits
written back into a real `cameras.yaml` (comments, `${VAR}`s and backup kept), refusals that
leave the file alone, the loopback rule, and concurrent writers that never leave half a file."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from edge.config import EdgeConfig, LineConfig, ServerConfig, StreamConfig, load_config
from edge.config.loading import parse_config
from edge.metrics import EdgeMetrics
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app

from .conftest import FileConfigHost, serving

TOKEN = "tok-secret-1234"
SECRETS = ("gate-pass-000", "yard-pass-123", "hook-pass-456", "mqtt-pass-789", "turn-pass-321",
           "hooktok789", TOKEN)  # fmt: skip
CONFIG = """\
# site config: comments like this one must survive an edit
cameras:
  - id: gate   # the gate camera
    url: rtsp://admin:${GATE_PW}@127.0.0.1:8554/gate
    lines:  # drawn by hand
      - name: entry
        points: [[10, 20], [300, 20]]
        directions: [in, out]
    fps: 10    # a key after the lines

  - id: yard
    url: rtsp://viewer:yard-pass-123@127.0.0.1:8554/yard

events:
  jsonl: null
  webhook:
    url: https://hook:hook-pass-456@example.com/hook?token=hooktok789
  mqtt:
    url: mqtt://edge:mqtt-pass-789@broker.local:1883

stream:
  ice_servers: ["turn:edge:turn-pass-321@turn.example.com:3478"]

server:
  auth_token: ${EDGE_TEST_TOKEN}   # from the environment
"""
NEW_LINES = [
    {"name": "drawn", "points": [[100, 200], [640.5, 210]], "directions": ["east", "west"]},
    {"name": "yes", "points": [[0, 0], [5, 5]], "directions": ["in", "out"]},
]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATE_PW", "gate-pass-000")
    monkeypatch.setenv("EDGE_TEST_TOKEN", TOKEN)
    path = tmp_path / "cameras.yaml"
    path.write_text(CONFIG)
    return path


@contextlib.asynccontextmanager
async def _site(
    host: FileConfigHost | None, server: ServerConfig | None = None
) -> AsyncIterator[str]:
    service = PassthroughService([], StreamConfig(), EdgeMetrics())
    server = server or (host.config.server if host else ServerConfig())
    async with serving(create_app(service, server=server, config_host=host)) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def put(
    http: aiohttp.ClientSession, url: str, body: Any, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.put(url, json=body, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_get_config_needs_the_token_and_redacts_every_credential(
    config_file: Path, http: aiohttp.ClientSession
) -> None:
    host = FileConfigHost(config_file)
    async with _site(host) as base:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(base + "/api/config") as resp:
                assert resp.status == 401
        async with http.get(base + "/api/config") as resp:
            assert resp.status == 200
            text = await resp.text()
            body = await resp.json()
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, leaked
    config = body["config"]
    assert [c["id"] for c in config["cameras"]] == ["gate", "yard"]
    assert config["cameras"][0]["url"] == "rtsp://admin:***@127.0.0.1:8554/gate"
    assert config["cameras"][0]["lines"][0]["name"] == "entry"
    assert config["server"]["auth_token"] == "***"
    assert config["stream"]["ice_servers"] == ["turn:edge:***@turn.example.com:3478"]
    assert body["config_path"] == str(config_file)
    assert body["last_reload"] is None


async def test_put_lines_rewrites_only_the_lines_and_reloads(
    config_file: Path, http: aiohttp.ClientSession
) -> None:
    host = FileConfigHost(config_file)
    async with _site(host) as base:
        status, body = await put(http, base + "/api/cameras/gate/lines", {"lines": NEW_LINES})
        assert status == 200, body
        assert body["reload"]["result"] == "applied" and body["reload"]["trigger"] == "api"
        assert body["reload"]["lines_changed"] == ["gate"]
        async with http.get(base + "/api/config") as resp:
            shown = await resp.json()
    assert shown["last_reload"]["trigger"] == "api"
    assert shown["config"]["cameras"][0]["lines"][0]["name"] == "drawn"
    text = config_file.read_text()
    # everything but the camera's lines is the user's text, byte for byte
    old_rows, new_rows = CONFIG.splitlines(), text.splitlines()
    assert old_rows[:5] == new_rows[:5] and old_rows[8:] == new_rows[11:], text
    assert new_rows[5:11] == [
        "      - name: drawn",
        "        points: [[100, 200], [640.5, 210]]",
        "        directions: [east, west]",
        '      - name: "yes"',  # a YAML 1.1 boolean, quoted to stay a name
        "        points: [[0, 0], [5, 5]]",
        "        directions: [in, out]",
    ]
    assert config_file.with_name("cameras.yaml.bak").read_text() == CONFIG
    lines = load_config(config_file).cameras[0].lines
    assert lines == [LineConfig.model_validate(x) for x in NEW_LINES]
    assert host.config.cameras[0].lines == lines
    assert sorted(p.name for p in config_file.parent.iterdir()) == [
        ".cameras.yaml.lock", "cameras.yaml", "cameras.yaml.bak",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "kwargs", "status", "says"),
    [
        ("{not json", {}, 400, "not JSON"),
        ({"lines": "north"}, {}, 400, '"lines" must be a list'),
        ({"lines": [], "extra": 1}, {}, 400, '{"lines": [...]}'),
        ({"lines": [{"name": "a", "points": [[1, 1], [1, 1]]}]}, {}, 400,
         "lines[0]: the two points of a line must differ"),
        ({"lines": [{"name": "a", "points": [[-1, 1], [5, 1]]}]}, {}, 400,
         "lines[0].points.0.0: Input should be greater than or equal to 0"),
        ({"lines": [{"name": "a", "points": [[1, 1]]}]}, {}, 400, "lines[0].points"),
        ({"lines": [{"name": "a", "points": [[1, 1], [2, 2]], "colour": "red"}]}, {}, 400,
         "lines[0].colour: unknown key"),
        ({"lines": [{"name": "a", "points": [[1, 1], [2, 2]]}] * 2}, {}, 400,
         "duplicate line names: a"),
        ({"lines": []}, {"headers": {"Sec-Fetch-Site": "cross-site"}}, 403, "another origin"),
    ],
)  # fmt: skip
async def test_bad_edits_change_nothing(
    config_file: Path,
    http: aiohttp.ClientSession,
    body: Any,
    kwargs: dict[str, Any],
    status: int,
    says: str,
) -> None:
    host = FileConfigHost(config_file)
    async with _site(host) as base:
        url = base + "/api/cameras/gate/lines"
        if isinstance(body, str):
            kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
            async with http.put(url, **kwargs) as resp:
                got, answer = resp.status, await resp.json()
        else:
            got, answer = await put(http, url, body, **kwargs)
    assert (got, says in answer["error"]) == (status, True), answer
    assert config_file.read_text() == CONFIG
    assert not config_file.with_name("cameras.yaml.bak").exists() and host.reloads == []


async def test_unknown_camera_other_content_type_and_no_file(
    config_file: Path, http: aiohttp.ClientSession
) -> None:
    host = FileConfigHost(config_file)
    async with _site(host) as base:
        status, body = await put(http, base + "/api/cameras/nope/lines", {"lines": []})
        assert status == 404 and "unknown camera 'nope'" in body["error"]
        async with http.put(base + "/api/cameras/gate/lines", data="lines=") as resp:
            assert resp.status == 415
    coded = FileConfigHost(None, config=load_config(config_file))
    async with _site(coded) as base:
        status, body = await put(http, base + "/api/cameras/gate/lines", {"lines": []})
        assert status == 409 and "not a file" in body["error"]
    assert config_file.read_text() == CONFIG and host.reloads == coded.reloads == []


async def test_a_file_that_does_not_validate_is_left_as_it_is(
    config_file: Path, http: aiohttp.ClientSession
) -> None:
    host = FileConfigHost(config_file)
    broken = CONFIG.replace("    fps: 10", "    fsp: 10")  # someone's edit in progress
    config_file.write_text(broken)
    async with _site(host) as base:
        status, body = await put(http, base + "/api/cameras/gate/lines", {"lines": NEW_LINES})
    assert status == 409 and "cameras[0](gate).fsp: unknown key" in body["error"], body
    assert config_file.read_text() == broken and host.reloads == []


async def test_refused_beyond_loopback_without_a_token(config_file: Path) -> None:
    host = FileConfigHost(config_file)
    open_server = ServerConfig(host="0.0.0.0", auth="none")
    async with aiohttp.ClientSession() as http:
        async with _site(host, open_server) as base:
            async with http.get(base + "/api/config") as resp:
                assert resp.status == 403
                assert "server.auth_token" in (await resp.json())["error"]
            status, body = await put(http, base + "/api/cameras/gate/lines", {"lines": []})
            assert status == 403 and "config API is off" in body["error"]
        async with _site(None, ServerConfig()) as base:  # no ConfigHost: no config routes
            async with http.get(base + "/api/config") as resp:
                assert resp.status == 404
    assert config_file.read_text() == CONFIG


OTHER_WRITER = """
import sys
from pathlib import Path
from edge.config import LineConfig
from edge.config.writer import edit_lines
for i in range(int(sys.argv[2])):
    line = LineConfig(name=f"other{i}", points=((i, 1), (i + 10, 50)))
    edit_lines(Path(sys.argv[1]), "yard", [line])
print("done")
"""


async def test_concurrent_writers_never_leave_half_a_file(
    config_file: Path, http: aiohttp.ClientSession
) -> None:
    """Twelve PUTs at once while another process rewrites the same file and a reader parses it
    without pause: every read is a whole valid config; the last writer's lines win."""
    host = FileConfigHost(config_file)
    reads: list[int] = [0]
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            text = config_file.read_text()
            try:
                config: EdgeConfig = parse_config(yaml.safe_load(text))
                assert [c.id for c in config.cameras] == ["gate", "yard"]
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                bad.append(f"{exc!r}: {text!r}")
            reads[0] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_WRITER, str(config_file), "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        async with _site(host) as base:
            url = base + "/api/cameras/gate/lines"
            bodies = [
                {"lines": [{"name": f"put{i}", "points": [[i, 10], [i + 100, 10]]}]}
                for i in range(12)
            ]
            answers = await asyncio.gather(*(put(http, url, b) for b in bodies))
        out, _ = await asyncio.to_thread(other.communicate, timeout=60)
    finally:
        stop.set()
        thread.join(10)
        if other.poll() is None:
            other.kill()
    assert out.strip() == "done" and other.returncode == 0
    assert all(status == 200 for status, _ in answers), answers
    assert not bad, bad[:3]
    assert reads[0] > 10
    last = max(answers, key=lambda a: a[1]["reload"]["at"])[1]
    final = load_config(config_file)
    assert [line.name for line in final.cameras[0].lines] == [last["lines"][0]["name"]]
    assert [line.name for line in final.cameras[1].lines] == ["other29"]
    assert host.config.cameras[0].lines == final.cameras[0].lines
    assert "# the gate camera" in config_file.read_text()
    leftovers = [p.name for p in config_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
