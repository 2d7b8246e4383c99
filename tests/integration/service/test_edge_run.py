"""The whole service on real simulated cameras: ready, streaming, counting, safe, stoppable."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.app import EdgeService
from edge.config import parse_config
from edge.ingest.camsim import CameraSimulator
from edge.metrics import EdgeMetrics
from edge.testing import (
    ServiceProcess,
    async_wait_for,
    descendants,
    free_port,
    metric_value,
    still_alive,
    wait_for,
)

from .conftest import write_config

SECRETS = ("hunter22", "pw-dead-99")
LIVE = ("highway", "parking")


def events_path(svc: ServiceProcess) -> Path:
    return svc.config_path.parent / "events" / "events.jsonl"


def cameras_by_id(svc: ServiceProcess) -> dict[str, dict]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def live_cameras(camsim: CameraSimulator) -> list[dict]:
    return [
        {
            "id": "highway",
            "url": camsim.url("highway"),
            "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}],
        },
        {"id": "parking", "url": camsim.url("parking")},
    ]


def test_health_and_readiness(service: ServiceProcess) -> None:
    assert service.status("/healthz") == 200
    assert service.status("/readyz") == 200


def test_good_cameras_stream_and_are_inferred_while_a_dead_one_retries(
    service: ServiceProcess,
) -> None:
    def both_inferring() -> bool:
        cams = cameras_by_id(service)
        return all(
            cams[c]["state"] == "streaming" and cams[c]["fps"].get("inferred", 0) > 0 for c in LIVE
        )

    wait_for(both_inferring, 60, interval=0.5)
    cams = cameras_by_id(service)
    assert cams["dead"]["state"] in ("connecting", "backoff")
    assert cams["highway"]["width"] == 320 and cams["highway"]["height"] == 240
    # the dead camera's first attempt may still be under way when the live ones infer
    wait_for(
        lambda: metric_value(
            service.text("/metrics"), "edge_camera_reconnects_total", camera="dead"
        ) >= 1,
        30,
        interval=0.5,
    )


def test_line_counts_reach_the_api(service: ServiceProcess) -> None:
    def counted() -> int:
        per_class = cameras_by_id(service)["highway"]["counts"].get("carriageway", {})
        return sum(sum(d.values()) for d in per_class.values())

    wait_for(lambda: counted() >= 2, 90, interval=0.5)


def test_no_secret_leaves_the_process(service: ServiceProcess) -> None:
    wait_for(lambda: cameras_by_id(service)["highway"]["state"] == "streaming", 30)
    body = json.dumps(service.get_json("/api/cameras")) + service.text("/metrics")
    body += service.log()
    for secret in SECRETS:
        assert secret not in body
    assert "admin:***@" in json.dumps(service.get_json("/api/cameras"))


@pytest.fixture
def own_service(camsim: CameraSimulator, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service of its own, for a test that stops it (the module's one stays up for the
    others, whatever order they run in)."""
    port = free_port()
    svc = ServiceProcess(write_config(tmp_path, live_cameras(camsim), port), port, tmp_path / "log")
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()


def test_fault_sigterm_under_load(own_service: ServiceProcess) -> None:
    """SIGTERM while both cameras stream and are inferred, with tracks alive: exit 0, every
    events line whole JSON, exactly one `track_end` per confirmed track (ids are handed out on
    confirmation, 1, 2, 3, ... per camera, so the ends must be exactly those), and no process the
    service started is left running."""
    svc = own_service

    def confirmed() -> dict[str, float]:
        text = svc.text("/metrics")
        return {c: metric_value(text, "edge_tracks_confirmed_total", camera=c) for c in LIVE}

    def loaded() -> bool:  # the parking lot, seen from above, confirms few cars
        text = svc.text("/metrics")
        inferred = [metric_value(text, "edge_frames_inferred_total", camera=c) for c in LIVE]
        return min(inferred) > 0 and confirmed()["highway"] >= 3

    wait_for(loaded, 60, interval=0.5)
    children = descendants(svc.proc.pid)
    before = confirmed()  # just before SIGTERM: every one of these must end with an event
    code = svc.stop()
    assert code == 0, svc.log()[-3000:]
    assert still_alive(children) == [], f"left running after exit: {children}"

    text = events_path(svc).read_text()
    assert text.endswith("\n"), "the last events line was cut"
    events = [json.loads(line) for line in text.splitlines()]  # each line whole JSON
    ends: dict[str, list[int]] = defaultdict(list)
    for e in events:
        assert e["camera"] in LIVE, e
        if e["kind"] == "track_end":
            ends[e["camera"]].append(e["track_id"])
    for cam in LIVE:
        ids = sorted(ends[cam])
        assert ids == list(range(1, len(ids) + 1)), f"{cam}: track ends {ids}"
        assert len(ids) >= before[cam], f"{cam}: {before[cam]} confirmed, {len(ids)} ended"
    crossed = {(e["camera"], e["track_id"]) for e in events if e["kind"] == "crossing"}
    assert crossed <= {(cam, i) for cam, ids in ends.items() for i in ids}


async def test_after_stop_every_decoded_frame_was_published_or_dropped(
    camsim: CameraSimulator, tmp_path: Path
) -> None:
    """The service in this process, stopped mid-stream as SIGTERM stops it (its task
    cancelled): frames still in a source, the batcher or a result queue are counted as
    `shutdown` drops, so the README's rule holds exactly, per camera."""
    config_path = write_config(tmp_path, live_cameras(camsim), free_port())
    config = parse_config(yaml.safe_load(config_path.read_text()))
    metrics = EdgeMetrics()
    service = EdgeService(config, metrics)
    task = asyncio.create_task(service.run())

    def published(cam: str) -> float:
        assert not task.done(), task
        return metric_value(metrics, "edge_frames_published_total", camera=cam)

    try:
        await async_wait_for(lambda: all(published(c) >= 10 for c in LIVE), 90, interval=0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for cam in LIVE:
        decoded = metric_value(metrics, "edge_frames_decoded_total", camera=cam)
        dropped = metric_value(metrics, "edge_frames_dropped_total", camera=cam)
        dropped -= metric_value(
            metrics, "edge_frames_dropped_total", camera=cam, reason="viewer_slow"
        )
        done = metric_value(metrics, "edge_frames_published_total", camera=cam)
        assert decoded == done + dropped, f"{cam}: {decoded} decoded, {done} published, {dropped}"
