"""Which cap refuses a new viewer: per client address, per camera, then the whole server."""

from __future__ import annotations

import pytest

from edge.config import StreamConfig
from edge.publish.webrtc import slot_refusal

CAPS = StreamConfig(
    max_viewers=5, max_viewers_per_camera=3, max_viewers_per_client=2, connect_timeout_s=4
)
A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"
FIVE = [("cam1", A), ("cam1", B), ("cam2", C), ("cam2", D), ("cam3", A)]


@pytest.mark.parametrize(
    ("held", "camera", "remote", "reason", "status"),
    [
        ([], "cam1", A, None, None),
        ([("cam1", A)], "cam1", A, None, None),
        ([("cam1", A), ("cam2", A)], "cam3", A, "client_full", 429),  # all cameras together
        ([("cam1", A), ("cam2", A)], "cam1", B, None, None),  # another address is not held back
        ([("cam1", A), ("cam1", B), ("cam1", C)], "cam1", D, "camera_full", 503),
        ([("cam1", A), ("cam1", B), ("cam1", C)], "cam2", D, None, None),
        (FIVE, "cam3", B, "server_full", 503),
        # the client's own cap is reported first: it is the one the client can act on
        ([("cam1", A), ("cam1", A), ("cam1", B)], "cam1", A, "client_full", 429),
        ([(f"cam{i}", None) for i in range(2)], "cam9", None, "client_full", 429),
    ],
)  # fmt: skip
def test_slot_refusal(
    held: list[tuple[str, str | None]],
    camera: str,
    remote: str | None,
    reason: str | None,
    status: int | None,
) -> None:
    refusal = slot_refusal(CAPS, held, camera, remote)
    if reason is None:
        assert refusal is None
        return
    assert refusal is not None
    assert (refusal.reason, refusal.status) == (reason, status)
    assert refusal.retry_after_s == CAPS.connect_timeout_s
    setting = {
        "client_full": "max_viewers_per_client = 2",
        "camera_full": "max_viewers_per_camera = 3",
        "server_full": "max_viewers = 5",
    }[reason]
    assert f"stream.{setting}" in str(refusal)  # the message names the setting to raise
