"""WebRTC signalling with aiortc: one peer connection per viewer and camera, offer → answer.

What aiortc and browsers do by default that breaks a service, and how this module handles it:
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
- Freeing: a connection that fails, closes, or does not connect (ICE and DTLS) within
  `StreamConfig.connect_timeout_s` is closed and its track detached (its encoder stops with the
  last viewer); the page also sends a close beacon, because a closed tab, a frozen or vanished
  viewer is otherwise noticed only when ICE consent expires (6 missed checks 4-6 s apart).
- Slots: a viewer holds one from its offer until it is closed; `stream.max_viewers` in all,
  `max_viewers_per_camera` per camera and `max_viewers_per_client` per client address. Offers
  that never connect (the cheap way to take slots) hold theirs for `connect_timeout_s` at most.
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
from collections import Counter
from collections.abc import Iterable, Iterator
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
    """A viewer cap is reached; the client may retry after `retry_after_s`.

    `reason` is the `edge_viewers_refused` label, `status` the HTTP status: 429 when the client's
    own address holds its share, 503 when the camera or the server is full."""

    def __init__(self, message: str, reason: str, status: int, retry_after_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


def slot_refusal(
    stream: StreamConfig,
    held: Iterable[tuple[str, str | None]],
    camera_id: str,
    remote: str | None,
) -> TooManyViewers | None:
    """Why a new viewer of `camera_id` from `remote` gets no slot, given the (camera, remote) of
    the slots held; None when it gets one. The client's own cap is checked first: it says best
    what to do (close a tab, or wait for a stuck offer to time out)."""
    held = list(held)
    by_client = Counter(r for _, r in held)[remote]
    by_camera = Counter(c for c, _ in held)[camera_id]
    retry = stream.connect_timeout_s  # by then any offer that will not connect has let go
    if by_client >= stream.max_viewers_per_client:
        return TooManyViewers(
            f"{by_client} viewers from {remote} already "
            f"(stream.max_viewers_per_client = {stream.max_viewers_per_client})",
            "client_full",
            429,
            retry,
        )
    if by_camera >= stream.max_viewers_per_camera:
        return TooManyViewers(
            f"camera {camera_id} has {by_camera} viewers already "
            f"(stream.max_viewers_per_camera = {stream.max_viewers_per_camera})",
            "camera_full",
            503,
            retry,
        )
    if len(held) >= stream.max_viewers:
        return TooManyViewers(
            f"every viewer slot is taken (stream.max_viewers = {stream.max_viewers})",
            "server_full",
            503,
            retry,
        )
    return None


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
    publisher: CameraPublisher
    remote: str | None
    codec: Codec
    pc: RTCPeerConnection
    track: EncodedVideoTrack
    answer_sdp: str = ""
    created_at: float = field(default_factory=time.monotonic)
    connected_at: float | None = None

    @property
    def camera_id(self) -> str:
        return self.publisher.camera_id


class WebRtcGateway:
    """Answers viewers' offers and owns their peer connections until they go away."""

    def __init__(self, stream: StreamConfig) -> None:
        self.stream = stream
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
        """Build the viewer's connection and return it with the answer SDP.

        The slot is taken before the first `await`, so that concurrent offers count each other."""
        held = ((v.camera_id, v.remote) for v in self.sessions.values())
        refusal = slot_refusal(self.stream, held, publisher.camera_id, remote)
        if refusal is not None:
            raise refusal
        if "m=video" not in offer_sdp:
            raise OfferError("the offer has no video section")
        codec = choose_codec(offer_sdp, list(self.stream.codecs))
        addresses, loopback_only = self.gather_policy(remote)
        if loopback_only:
            offer_sdp = keep_loopback_candidates(offer_sdp)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(self.stream.ice_servers)))
        track = publisher.attach(codec)
        session = ViewerSession(secrets.token_urlsafe(12), publisher, remote, codec, pc, track)
        self.sessions[session.id] = session
        # the camera stopped (a config reload removed it): close the connection, so that the
        # viewer sees its end (RTCP BYE) instead of a picture that froze
        track.on("ended", lambda: self._spawn(self.close(session.id), f"webrtc-end:{session.id}"))
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
        timeout_s = self.stream.connect_timeout_s
        await asyncio.sleep(timeout_s)
        if session.connected_at is None and session.id in self.sessions:
            log.warning(
                "camera %s: viewer %s from %s did not connect within %.1f s; slot freed",
                session.camera_id,
                session.id,
                session.remote,
                timeout_s,
            )
            session.publisher.metrics.count_viewer_refused("not_connected")
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
