"""WebRTC signalling with aiortc: one peer connection per viewer and camera, offer → answer.

What bit us (recipes.md §3) and how this module handles it:
- Loopback: aioice leaves 127.0.0.1 out of its host candidates and Chromium offers only mDNS
  `.local` ones. When `StreamConfig.host_addresses` is None and the offer comes from loopback, the
  connection gathers on 127.0.0.1 only and the offer's non-loopback candidate lines are dropped;
  ICE then completes through a peer-reflexive 127.0.0.1 candidate. `host_addresses` set means
  those addresses (multi-homed boxes); neither means aioice's default (every non-loopback address).
  The addresses are chosen per connection through a context variable read by a wrapper around
  `aioice.ice.get_host_addresses` (aioice has no per-connection option).
- Codec: the first of `StreamConfig.codecs` the browser offers (H.264 normally, VP8 otherwise);
  preferences are set after `addTrack` and before `setRemoteDescription` (later they are ignored).
- Keyframes: aiortc ignores PLI/FIR for packet tracks, so the sender's keyframe hook is pointed at
  the camera's shared encoder.
- Freeing: a connection that fails, closes, or does not connect within `connect_timeout_s` is
  closed and its track detached (its encoder stops with the last viewer); the page also sends a
  close beacon, because a closed tab is otherwise noticed only after 25–35 s of ICE consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from edge.config import StreamConfig
from edge.publish.encoder import Codec
from edge.publish.fanout import EncodedVideoTrack
from edge.publish.publisher import CameraPublisher

log = logging.getLogger(__name__)

_HOST_ADDRESSES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "edge_ice_host_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _HOST_ADDRESSES.get()
    if chosen is not None:
        return list(chosen)
    return _original_get_host_addresses(use_ipv4, use_ipv6)


aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: list[str] | None) -> Iterator[None]:
    """Gather ICE host candidates on `addresses` for connections negotiated inside the block."""
    token = _HOST_ADDRESSES.set(addresses)
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


_RTPMAP = re.compile(r"^a=rtpmap:\d+ ([A-Za-z0-9-]+)/", re.MULTILINE)
_TURN_CREDENTIALS = re.compile(r"^(turns?):([^:@]+):([^@]+)@(.+)$")


class OfferError(ValueError):
    """An offer this server cannot answer (bad SDP, no common codec)."""


class TooManyViewers(RuntimeError):
    """Every viewer slot is taken; the client should retry later."""


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def keep_loopback_candidates(sdp: str) -> str:
    """Drop `a=candidate` lines whose address is not a loopback IP (mDNS names included)."""
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 6 or not is_loopback(parts[4]):
                continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def offered_codecs(sdp: str) -> set[str]:
    """Lower-case codec names the offer lists (`h264`, `vp8`, ...)."""
    return {name.lower() for name in _RTPMAP.findall(sdp)}


def choose_codec(sdp: str, preferences: list[str]) -> Codec:
    offered = offered_codecs(sdp)
    for codec in preferences:
        if codec in offered and codec in ("h264", "vp8"):
            return codec  # type: ignore[return-value]
    raise OfferError(f"no common video codec: offer has {sorted(offered)}, server {preferences}")


def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    """`stun:host:port` as is; `turn:USER:PASS@host:port` carries TURN credentials."""
    servers = []
    for url in urls:
        m = _TURN_CREDENTIALS.match(url)
        if m:
            servers.append(RTCIceServer(f"{m[1]}:{m[4]}", username=m[2], credential=m[3]))
        else:
            servers.append(RTCIceServer(url))
    return servers


def browser_ice_servers(urls: list[str]) -> list[dict[str, Any]]:
    """The same servers in the shape `new RTCPeerConnection({iceServers})` takes."""
    result: list[dict[str, Any]] = []
    for server in ice_servers(urls):
        entry: dict[str, Any] = {"urls": server.urls}
        if server.username:
            entry.update(username=server.username, credential=server.credential)
        result.append(entry)
    return result


@dataclass
class ViewerSession:
    id: str
    camera_id: str
    codec: Codec
    pc: RTCPeerConnection
    track: EncodedVideoTrack
    answer_sdp: str = ""
    created_at: float = field(default_factory=time.monotonic)
    connected_at: float | None = None


class WebRtcGateway:
    """Answers viewers' offers and owns their peer connections until they go away."""

    def __init__(
        self, stream: StreamConfig, connect_timeout_s: float = 20.0, max_sessions: int = 64
    ) -> None:
        self.stream = stream
        self.connect_timeout_s = connect_timeout_s
        self.max_sessions = max_sessions
        """Peer connections at once, all cameras together: each costs sockets and a send task."""
        self.sessions: dict[str, ViewerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def gather_policy(self, remote: str | None) -> tuple[list[str] | None, bool]:
        """(addresses to gather on, whether to keep only loopback candidates of the offer)."""
        if self.stream.host_addresses is not None:
            return list(self.stream.host_addresses), False
        if is_loopback(remote):
            return ["127.0.0.1"], True
        return None, False

    async def answer(
        self, publisher: CameraPublisher, offer_sdp: str, remote: str | None = None
    ) -> ViewerSession:
        """Build the viewer's connection and return it with the answer SDP."""
        if len(self.sessions) >= self.max_sessions:
            raise TooManyViewers(f"{len(self.sessions)} viewers already connected")
        if "m=video" not in offer_sdp:
            raise OfferError("the offer has no video section")
        codec = choose_codec(offer_sdp, list(self.stream.codecs))
        addresses, loopback_only = self.gather_policy(remote)
        if loopback_only:
            offer_sdp = keep_loopback_candidates(offer_sdp)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(self.stream.ice_servers)))
        track = publisher.attach(codec)
        session = ViewerSession(secrets.token_urlsafe(12), publisher.camera_id, codec, pc, track)
        self.sessions[session.id] = session
        try:
            sender = pc.addTrack(track)
            # aiortc's own keyframe flag is ignored for packets: route PLI/FIR to the encoder.
            sender._send_keyframe = lambda: publisher.request_keyframe(codec)  # type: ignore[method-assign]
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in caps if c.mimeType.lower() in (f"video/{codec}", "video/rtx")]
            )
            pc.on("connectionstatechange", lambda: self._state_changed(session))
            with host_addresses(addresses):
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self.close(session.id)
            if isinstance(exc, OfferError):
                raise
            raise OfferError(f"cannot answer the offer: {exc}") from exc
        session.answer_sdp = pc.localDescription.sdp
        self._spawn(self._connect_watchdog(session), f"webrtc-watchdog:{session.id}")
        log.info(
            "camera %s: viewer %s offered from %s, answered with %s",
            publisher.camera_id,
            session.id,
            remote,
            codec,
        )
        return session

    def _state_changed(self, session: ViewerSession) -> None:
        state = session.pc.connectionState
        log.info("camera %s: viewer %s %s", session.camera_id, session.id, state)
        if state == "connected" and session.connected_at is None:
            session.connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self._spawn(self.close(session.id), f"webrtc-close:{session.id}")

    async def _connect_watchdog(self, session: ViewerSession) -> None:
        await asyncio.sleep(self.connect_timeout_s)
        if session.connected_at is None and session.id in self.sessions:
            log.warning(
                "camera %s: viewer %s did not connect within %.0f s; closing",
                session.camera_id,
                session.id,
                self.connect_timeout_s,
            )
            await self.close(session.id)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, session_id: str) -> bool:
        """Close a viewer's connection and free its track; False when it was already gone."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.track.stop()
        # shielded: aiortc may be closing it too, and a cancelled waiter would cancel the future
        # both share (aiortc then fails with InvalidStateError in a task nobody awaits)
        await asyncio.shield(session.pc.close())
        log.info("camera %s: viewer %s closed", session.camera_id, session_id)
        return True

    async def close_all(self) -> None:
        for session_id in list(self.sessions):
            await self.close(session_id)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            if task.get_name().startswith("webrtc-watchdog:"):
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
