"""Three real `edge run --shard K/3` processes over one config of nine simulated RTSP cameras:
each camera is served by exactly one shard, each page links to the others, and a shard that dies
leaves the other shards' cameras streaming. The page of a shard, in headless Chromium, names it
and links to the others.

Kept light for a 2-core machine: one small clip behind nine mounts, 3 frames/s per camera."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright

from edge.config.shard import assign
from edge.ingest.camsim import CameraSimulator
from edge.testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ServiceProcess,
    free_port,
    metric_value,
    wait_for,
)

IDS = [f"cam{i}" for i in range(1, 10)]
SHARDS = 3


@pytest.fixture(scope="module")
def camsim(assets: Path) -> Iterator[CameraSimulator]:
    clip = assets / "video" / "traffic_highway_cctv.mp4"  # 320x240, the smallest clip
    with CameraSimulator({i: clip for i in IDS}) as sim:
        yield sim


@pytest.fixture
def shards(
    camsim: CameraSimulator, dynamic_model: Path, tmp_path: Path
) -> Iterator[list[ServiceProcess]]:
    ports = [free_port() for _ in range(SHARDS)]
    data = {
        "cameras": [{"id": i, "url": camsim.url(i), "fps": 3} for i in IDS],
        "detector": {"model": str(dynamic_model), "auto_prepare": False, "max_batch": 2},
        "ingest": {"read_timeout_s": 2, "open_timeout_s": 3, "backoff_max_s": 2},
        "events": {"jsonl": str(tmp_path / "events.jsonl")},
        "server": {"host": "127.0.0.1", "port": 0},
        "shard": {"count": SHARDS, "peers": [f"http://127.0.0.1:{p}" for p in ports]},
    }
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump(data))
    procs = [
        ServiceProcess(
            config,
            port,
            tmp_path / f"shard{k}.log",
            ["--shard", f"{k}/{SHARDS}", "--port", str(port)],
        )
        for k, port in enumerate(ports)
    ]
    try:
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def streaming(proc: ServiceProcess) -> dict[str, str]:
    return {c["id"]: c["state"] for c in proc.get_json("/api/cameras")["cameras"]}


def decoded(proc: ServiceProcess) -> dict[str, float]:
    text = proc.text("/metrics")
    return {
        cam: metric_value(text, "edge_frames_decoded_total", camera=cam) for cam in streaming(proc)
    }


def shard_page_links(url: str) -> tuple[str, list[str]]:
    """What a shard's page shows in headless Chromium: its shard and its links to the others."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("window.edge && window.edge.ready", timeout=30_000)
            nav = page.locator("#shards")
            text = nav.evaluate("n => n.hidden ? '' : n.firstChild.textContent")
            links = nav.locator("a").evaluate_all("as => as.map(a => a.href)")
            return text, links
        finally:
            browser.close()


def test_each_camera_served_by_exactly_one_shard_and_a_dead_shard_hurts_no_other(
    shards: list[ServiceProcess],
) -> None:
    expected = assign(IDS, SHARDS)
    served = {k: sorted(streaming(proc)) for k, proc in enumerate(shards)}
    assert served == {k: sorted(ids) for k, ids in expected.items()}
    everything = [cam for ids in served.values() for cam in ids]
    assert sorted(everything) == sorted(IDS)  # each exactly once
    for proc in shards:  # every camera of every shard streams (liveness bound: 10x typical)
        wait_for(lambda p=proc: set(streaming(p).values()) == {"streaming"}, 60, 0.5)

    for k, proc in enumerate(shards):
        info = proc.get_json("/api/shard")
        assert (info["index"], info["count"]) == (k, SHARDS)
        assert sorted(info["cameras"]) == served[k]
        assert [p["index"] for p in info["peers"]] == [j for j in range(SHARDS) if j != k]
        assert {p["url"] for p in info["peers"]} == {
            shards[j].base for j in range(SHARDS) if j != k
        }

    page_links = shard_page_links(shards[1].base + "/")
    assert page_links == ("shard 1/3", [shards[0].base + "/", shards[2].base + "/"])

    dead, alive = shards[0], shards[1:]
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait(10)
    before = [decoded(proc) for proc in alive]
    time.sleep(4)
    for proc, earlier in zip(alive, before, strict=True):
        assert set(streaming(proc).values()) == {"streaming"}, proc.log()[-2000:]
        now = decoded(proc)
        assert sorted(now) == sorted(earlier)
        assert all(now[cam] > earlier[cam] for cam in now), (earlier, now)
        assert proc.status("/readyz") == 200


def test_a_shard_without_cameras_serves_an_empty_page_and_is_ready(
    dynamic_model: Path, tmp_path: Path
) -> None:
    """More shards than cameras: the empty shard must not crash or hold a rollout."""
    ids = ["a", "b"]
    empty = next(k for k, cams in assign(ids, 5).items() if not cams)
    data = {
        "cameras": [{"id": i, "url": f"rtsp://127.0.0.1:{free_port()}/{i}"} for i in ids],
        "detector": {"model": str(dynamic_model), "auto_prepare": False},
        "events": {"jsonl": str(tmp_path / "events.jsonl")},
    }
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    proc = ServiceProcess(
        config, port, tmp_path / "edge.log", ["--shard", f"{empty}/5", "--port", str(port)]
    )
    try:
        proc.wait_ready(60)
        assert proc.get_json("/api/cameras") == {"cameras": []}
        assert proc.get_json("/api/shard")["cameras"] == []
        assert f"shard {empty}/5 serves cameras: none" in proc.log()
    finally:
        assert proc.stop() == 0
