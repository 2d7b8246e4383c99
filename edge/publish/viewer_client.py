"""A WebRTC viewer of one camera made of aiortc instead of a browser.

Tests, benchmarks and fault drills use it where a page cannot stage the case: a viewer that
offers and never connects, one that connects and then freezes or dies, one that only speaks VP8,
one that asks for a keyframe, one whose HTTP comes from another loopback address. It speaks the
same signalling as the viewer page (`POST /api/cameras/{id}/webrtc`, JSON, optional token).

    viewer = await WebRtcViewer(base_url, "cam1").connect()
    frame = await viewer.recv()          # a decoded av.VideoFrame
    await viewer.close()

`ThreadedViewer` runs one on its own event loop and counts frames, for synchronous tests that
drive `edge run` as a subprocess.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.publish.webrtc import host_addresses


class SignallingError(Exception):
    """The server refused the offer: HTTP `status`, its JSON `error` and headers."""

    def __init__(self, status: int, error: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error
        self.headers = headers


class WebRtcViewer:
    """Offers recvonly video with only `codec` (as a browser without the others would)."""

    def __init__(
        self,
        base_url: str,
        camera: str,
        codec: str = "H264",
        token: str | None = None,
        local_address: str | None = None,
    ) -> None:
        """`local_address`: the address the HTTP request comes from (e.g. 127.0.0.2, so that the
        server sees another client); ICE always gathers on 127.0.0.1."""
        self.base_url = base_url
        self.camera = camera
        self.codec = codec
        self.token = token
        self.local_address = local_address
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track: MediaStreamTrack | None = None
        self.answer: dict[str, Any] = {}
        self.frames = 0
        self._has_track = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.track = track
        self._has_track.set()

    @property
    def session(self) -> str:
        return str(self.answer.get("session", ""))

    @property
    def is_connected(self) -> bool:
        return self.pc.connectionState == "connected"

    async def create_offer(self) -> str:
        """The offer SDP, with candidates on 127.0.0.1 (gathered once; idempotent)."""
        if self.pc.localDescription is None:
            transceiver = self.pc.addTransceiver("video", direction="recvonly")
            caps = RTCRtpReceiver.getCapabilities("video").codecs
            wanted = (f"video/{self.codec}".lower(), "video/rtx")
            transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() in wanted])
            with host_addresses(["127.0.0.1"]):
                await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def post_offer(self, sdp: str) -> dict[str, Any]:
        """POST an offer as the page does; the answer, or `SignallingError`."""
        url = f"{self.base_url}/api/cameras/{self.camera}/webrtc"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        local = (self.local_address, 0) if self.local_address else None
        connector = aiohttp.TCPConnector(local_addr=local)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.post(url, json={"sdp": sdp, "type": "offer"}, headers=headers) as resp,
        ):
            body = await resp.json(content_type=None)
            if resp.status != 200:
                error = body.get("error", "") if isinstance(body, dict) else str(body)
                raise SignallingError(resp.status, error, dict(resp.headers))
            return dict(body)

    async def connect(self) -> WebRtcViewer:
        """Offer, then apply the answer: ICE and DTLS complete in the background."""
        self.answer = await self.post_offer(await self.create_offer())
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer["sdp"], "answer"))
        return self

    async def recv(self, timeout: float = 10.0) -> av.VideoFrame:
        """The next decoded frame (waits for the track first)."""
        async with asyncio.timeout(timeout):
            await self._has_track.wait()
        assert self.track is not None
        async with asyncio.timeout(timeout):
            frame = await self.track.recv()
        self.frames += 1
        return frame  # type: ignore[return-value]

    async def receive(self, until: Callable[[], bool], timeout: float = 10.0) -> None:
        """Decode frames, counting them in `frames`, until `until()` or the track ends."""
        async with asyncio.timeout(timeout):
            await self._has_track.wait()
        while not until():
            try:
                await self.recv(0.5)
            except TimeoutError:
                continue
            except MediaStreamError:
                return

    async def send_pli(self) -> None:
        """Ask the sender for a keyframe, as a browser does after losing packets."""
        receiver = self.pc.getTransceivers()[0].receiver
        ssrc = receiver.getSynchronizationSources()[0].source
        await receiver._send_rtcp_pli(ssrc)  # noqa: SLF001 - aiortc has no public PLI call

    async def close(self) -> None:
        await self.pc.close()


class ThreadedViewer:
    """A `WebRtcViewer` on its own thread and event loop, counting frames until `stop()`."""

    def __init__(self, base_url: str, camera: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.camera = camera
        self.token = token
        self.error: BaseException | None = None
        self._viewer: WebRtcViewer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"viewer:{camera}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    @property
    def frames(self) -> int:
        return self._viewer.frames if self._viewer is not None else 0

    @property
    def running(self) -> bool:
        """False once the camera ended the viewer's track (or after `stop()`)."""
        return self._thread.is_alive()

    async def _watch(self) -> None:
        self._viewer = viewer = WebRtcViewer(self.base_url, self.camera, token=self.token)
        try:
            await viewer.connect()
            await viewer.receive(self._stop.is_set)
        finally:
            await viewer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
