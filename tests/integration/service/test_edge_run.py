"""The whole service on real simulated cameras: ready, streaming, counting, safe, stoppable."""

from __future__ import annotations

import json
from pathlib import Path

from edge.testing import ServiceProcess, wait_for

SECRETS = ("hunter22", "pw-dead-99")


def events_path(svc: ServiceProcess) -> Path:
    return svc.config_path.parent / "events" / "events.jsonl"


def cameras_by_id(svc: ServiceProcess) -> dict[str, dict]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def test_health_and_readiness(service: ServiceProcess) -> None:
    assert service.status("/healthz") == 200
    assert service.status("/readyz") == 200


def test_good_cameras_stream_and_are_inferred_while_a_dead_one_retries(
    service: ServiceProcess,
) -> None:
    def both_inferring() -> bool:
        cams = cameras_by_id(service)
        return all(
            cams[c]["state"] == "streaming" and cams[c]["fps"].get("inferred", 0) > 2
            for c in ("highway", "parking")
        )

    wait_for(both_inferring, 30, interval=0.5)
    cams = cameras_by_id(service)
    assert cams["dead"]["state"] in ("connecting", "backoff")
    assert cams["highway"]["width"] == 320 and cams["highway"]["height"] == 240
    metrics = service.text("/metrics")
    reconnects = [
        line for line in metrics.splitlines()
        if line.startswith('edge_camera_reconnects_total{camera="dead"}')
    ]  # fmt: skip
    assert reconnects and float(reconnects[0].split()[-1]) >= 1


def test_line_counts_reach_the_api(service: ServiceProcess) -> None:
    def counted() -> int:
        per_class = cameras_by_id(service)["highway"]["counts"].get("carriageway", {})
        return sum(sum(d.values()) for d in per_class.values())

    wait_for(lambda: counted() >= 2, 45, interval=0.5)


def test_no_secret_leaves_the_process(service: ServiceProcess) -> None:
    wait_for(lambda: cameras_by_id(service)["highway"]["state"] == "streaming", 30)
    body = json.dumps(service.get_json("/api/cameras")) + service.text("/metrics")
    body += service.log()
    for secret in SECRETS:
        assert secret not in body
    assert "admin:***@" in json.dumps(service.get_json("/api/cameras"))


def test_sigterm_flushes_events_and_exits_cleanly(service: ServiceProcess) -> None:
    wait_for(lambda: events_path(service).exists() and events_path(service).stat().st_size > 0, 60)
    code = service.stop()
    assert code == 0, service.log()[-3000:]
    events = [json.loads(line) for line in events_path(service).read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert "crossing" in kinds
    # every track still alive at shutdown ends with an event: nothing is lost silently
    assert "track_end" in kinds
    assert all(e["camera"] in ("highway", "parking") for e in events)
