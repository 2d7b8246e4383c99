"""Fault matrix, viewers: a flood of offers that never connect, a viewer that vanishes before or
after connecting, and one that freezes. Each frees its slot by itself, and costs the viewers that
behave nothing meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

from edge.publish.viewer_client import WebRtcViewer
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import async_wait_for

from .conftest import Served, serving, start_viewer_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONSENT_EXPIRY_BOUND_S = 60.0
"""ICE consent (RFC 7675, aioice): a check every 4-6 s, given up after 6 missed in a row, so a
viewer that stopped answering is dropped 24-36 s after its last answer. A liveness bound."""


async def post_offer(base_url: str, sdp: str, address: str) -> int:
    """POST one offer from `address` and forget it, as a script hogging slots would."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"{base_url}/api/cameras/cam2/webrtc", json={"sdp": sdp, "type": "offer"}) as r,
    ):
        return r.status


async def test_fault_offer_flood_cannot_lock_out_viewers(served: Served) -> None:
    """70 POSTs of one valid offer that never connects, from one address, default caps."""
    stream = served.stream.model_copy(update={"connect_timeout_s": 2.0})
    gateway = WebRtcGateway(stream)
    faker = WebRtcViewer("http://unused", "cam2")
    sdp = await faker.create_offer()
    await faker.close()
    client_full = served.refused("client_full")
    not_connected = served.refused("not_connected")
    async with serving(create_app(served.service, stream, gateway=gateway)) as base:
        statuses = await asyncio.gather(*(post_offer(base, sdp, "127.0.0.2") for _ in range(70)))
        cap = stream.max_viewers_per_client
        assert sorted(statuses) == [200] * cap + [429] * (70 - cap)
        assert served.refused("client_full") == client_full + 70 - cap

        viewer = await WebRtcViewer(base, "cam2").connect()  # a real viewer, another address
        try:
            await viewer.recv()
            started = time.monotonic()
            await async_wait_for(lambda: len(gateway.sessions) == 1, 10 * stream.connect_timeout_s)
            print(f"{cap} stuck offers freed {time.monotonic() - started:.1f} s after the viewer")
            assert served.refused("not_connected") == not_connected + cap
            assert served.sample("edge_viewers", camera="cam2") == 1
            before = viewer.frames
            await viewer.recv()  # the real viewer never noticed
            assert viewer.frames > before
        finally:
            await viewer.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)


async def test_fault_viewer_vanished_before_connecting(served: Served) -> None:
    """Offered, got its answer, then vanished: dropped after `stream.connect_timeout_s`."""
    timeout_s = served.stream.connect_timeout_s
    not_connected = served.refused("not_connected")
    viewer = WebRtcViewer(served.base_url, "cam2")
    answer = await viewer.post_offer(await viewer.create_offer())
    await viewer.close()  # gone without a word: no ICE, no close beacon
    offered_at = time.monotonic()
    assert answer["session"] in served.gateway.sessions
    assert served.sample("edge_encoders_active", camera="cam2") == 1  # started for it
    await async_wait_for(lambda: answer["session"] not in served.gateway.sessions, 10 * timeout_s)
    held_s = time.monotonic() - offered_at
    assert held_s >= timeout_s * 0.9, held_s  # not before its time either
    assert served.refused("not_connected") == not_connected + 1
    assert served.sample("edge_viewers", camera="cam2") == 0
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)


@dataclass
class Gone:
    """A connected viewer process made to stop answering, and when."""

    proc: subprocess.Popen[str]
    session: str
    since: float


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def unresponsive(served: Served) -> AsyncIterator[dict[str, Gone]]:
    """A frozen (SIGSTOP) and a vanished (SIGKILL) viewer of cam2, both connected first.

    Started together so that their two ICE-consent expiries are waited for once."""
    gone: dict[str, Gone] = {}
    try:
        for name, sig in (("frozen", signal.SIGSTOP), ("vanished", signal.SIGKILL)):
            proc, session = await start_viewer_process(served.base_url, "cam2")
            assert served.gateway.sessions[session].connected_at is not None
            os.kill(proc.pid, sig)
            gone[name] = Gone(proc, session, time.monotonic())
        yield gone
    finally:
        for g in gone.values():
            g.proc.kill()
            g.proc.wait(5)


async def _dropped_by_consent(served: Served, gone: Gone, healthy: WebRtcViewer) -> float:
    """Wait until `gone`'s slot is freed (perhaps already) while `healthy` keeps decoding; the
    seconds from when it stopped answering."""
    watching = asyncio.ensure_future(healthy.receive(lambda: False))
    try:
        await async_wait_for(
            lambda: gone.session not in served.gateway.sessions, CONSENT_EXPIRY_BOUND_S
        )
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    return time.monotonic() - gone.since


async def test_fault_frozen_viewer(served: Served, unresponsive: dict[str, Gone]) -> None:
    """A connected viewer that freezes: the others see every frame; its slot frees by itself."""
    healthy = await WebRtcViewer(served.base_url, "cam2").connect()
    try:
        await healthy.recv()
        frames_at_start = healthy.frames
        took = await _dropped_by_consent(served, unresponsive["frozen"], healthy)
        print(f"frozen viewer dropped {took:.1f} s after it froze")
        assert healthy.frames > frames_at_start + 25  # it kept decoding the whole time
        assert served.sample("edge_encoders_active", camera="cam2") == 1
    finally:
        await healthy.close()


async def test_fault_vanished_viewer(served: Served, unresponsive: dict[str, Gone]) -> None:
    """A connected viewer killed outright (no close beacon): its slot frees by itself."""
    healthy = await WebRtcViewer(served.base_url, "cam2").connect()
    try:
        await healthy.recv()
        took = await _dropped_by_consent(served, unresponsive["vanished"], healthy)
        print(f"vanished viewer dropped {took:.1f} s after it was killed")
        assert not served.gateway.sessions.keys() - {healthy.session}
        assert served.sample("edge_viewers", camera="cam2") == 1
    finally:
        await healthy.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)
