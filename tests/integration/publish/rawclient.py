"""A WebRTC viewer made of aiortc instead of a browser, for cases a page cannot stage."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from edge.publish.webrtc import host_addresses


class RawViewer:
    """Offers recvonly video with only `codec`, like a browser would, and exposes the track."""

    def __init__(self, base_url: str, camera: str, codec: str = "H264") -> None:
        self.base_url = base_url
        self.camera = camera
        self.codec = codec
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track: MediaStreamTrack | None = None
        self.answer: dict[str, Any] = {}
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.track = track

    async def connect(self) -> RawViewer:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video").codecs
        wanted = (f"video/{self.codec}".lower(), "video/rtx")
        transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() in wanted])
        with host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        url = f"{self.base_url}/api/cameras/{self.camera}/webrtc"
        async with aiohttp.ClientSession() as http:
            body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
            async with http.post(url, json=body) as resp:
                resp.raise_for_status()
                self.answer = await resp.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer["sdp"], "answer"))
        return self

    async def send_pli(self) -> None:
        """Ask the sender for a keyframe, as a browser does after losing packets."""
        receiver = self.pc.getTransceivers()[0].receiver
        ssrc = receiver.getSynchronizationSources()[0].source
        await receiver._send_rtcp_pli(ssrc)  # noqa: SLF001 - aiortc has no public PLI call

    async def close(self) -> None:
        await self.pc.close()
