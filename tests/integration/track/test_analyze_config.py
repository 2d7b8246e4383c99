"""`edge analyze --config`: lines, tracker and the webhook sink come from cameras.yaml.

The command runs as a real subprocess on the real clip and model; the webhook is a real aiohttp
server in this test that refuses the first two requests, so the retry path runs end to end.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web

from edge.assets import asset
from edge.testing import free_port

CONFIG = """
cameras:
  - id: over
    url: {clip}
    lines:
      - name: south
        points: [[150, 300], [820, 300]]
        directions: [toward, away]
tracker: {{max_age: 10, min_hits: 3, iou_threshold: 0.3}}
events:
  max_bytes: 65536
  backups: 3
  webhook: {{url: "http://127.0.0.1:{port}/events", retries: 5, queue_size: 100}}
"""


async def test_analyze_with_config_counts_and_delivers_to_the_webhook(tmp_path: Path) -> None:
    received: list[dict] = []
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return web.Response(status=503)
        received.extend(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/events", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    clip = asset("video", "traffic_highway_overpass.mp4")
    config = tmp_path / "cameras.yaml"
    config.write_text(CONFIG.format(clip=clip, port=port), encoding="utf-8")
    out = tmp_path / "out"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "analyze", str(clip), "--config", str(config),
            "--camera", "over", "--max-frames", "60", "--out", str(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    # frames 0-59 hold the first two hand-counted crossings (54, 55; see test_counting_clips)
    assert summary["frames"] == 60
    assert summary["counts"] == {"south": {"car": {"toward": 2}}}
    assert summary["events_dropped"] == 0
    lines = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e for e in lines if e["kind"] == "crossing"] == [
        e for e in received if e["kind"] == "crossing"
    ]
    assert len(received) == len(lines) > 2  # crossings and ends of tracks, nothing lost
    assert {e["camera"] for e in received} == {"over"}
    assert calls >= 3
