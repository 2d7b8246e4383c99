"""Pure SDP and ICE configuration helpers of the WebRTC gateway."""

from __future__ import annotations

import aioice.ice
import pytest

from edge.config import StreamConfig
from edge.publish.webrtc import (
    OfferError,
    WebRtcGateway,
    browser_ice_servers,
    choose_codec,
    host_addresses,
    ice_servers,
    is_loopback,
    keep_loopback_candidates,
    offered_codecs,
)

OFFER = "\r\n".join(
    [
        "v=0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 102 97",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:102 H264/90000",
        "a=rtpmap:97 rtx/90000",
        "a=candidate:1 1 udp 2122260223 0c5e0f1a-3b1c.local 51234 typ host generation 0",
        "a=candidate:2 1 udp 2122260223 127.0.0.1 51235 typ host generation 0",
        "a=candidate:3 1 udp 2122260223 192.168.1.20 51236 typ host generation 0",
        "a=candidate:4 1 udp 2122260223 ::1 51237 typ host generation 0",
        "a=end-of-candidates",
    ]
)


def test_only_loopback_candidates_kept() -> None:
    out = keep_loopback_candidates(OFFER)
    assert "127.0.0.1 51235" in out and "::1 51237" in out
    assert ".local" not in out and "192.168.1.20" not in out
    assert "a=rtpmap:102 H264/90000" in out and "a=end-of-candidates" in out
    assert out.endswith("\r\n")


def test_codecs_and_choice_follow_server_preference() -> None:
    assert offered_codecs(OFFER) == {"vp8", "h264", "rtx"}
    assert choose_codec(OFFER, ["h264", "vp8"]) == "h264"
    vp8_only = OFFER.replace("a=rtpmap:102 H264/90000\r\n", "")
    assert choose_codec(vp8_only, ["h264", "vp8"]) == "vp8"
    with pytest.raises(OfferError, match="no common video codec"):
        choose_codec(vp8_only, ["h264"])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("127.3.0.1", True),
        ("10.0.0.1", False),
        ("host.local", False),
        (None, False),
        ("", False),
    ],
)
def test_is_loopback(address: str | None, expected: bool) -> None:
    assert is_loopback(address) is expected


def test_ice_servers_carry_turn_credentials() -> None:
    servers = ice_servers(["stun:stun.example.org:3478", "turn:edge:s3cret@turn.example.org:3478"])
    assert servers[0].urls == "stun:stun.example.org:3478" and servers[0].username is None
    assert servers[1].urls == "turn:turn.example.org:3478"
    assert (servers[1].username, servers[1].credential) == ("edge", "s3cret")
    assert browser_ice_servers(["turn:edge:s3cret@turn.example.org:3478"]) == [
        {"urls": "turn:turn.example.org:3478", "username": "edge", "credential": "s3cret"}
    ]


def test_gather_policy() -> None:
    default = WebRtcGateway(StreamConfig())
    assert default.gather_policy("127.0.0.1") == (["127.0.0.1"], True)
    assert default.gather_policy("192.168.1.9") == (None, False)  # aioice's own choice
    pinned = WebRtcGateway(StreamConfig(host_addresses=["10.0.0.5"]))
    assert pinned.gather_policy("127.0.0.1") == (["10.0.0.5"], False)


def test_host_addresses_apply_only_inside_the_block() -> None:
    outside = aioice.ice.get_host_addresses(True, False)
    with host_addresses(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, False) == outside
    assert "127.0.0.1" not in outside  # aioice's default leaves loopback out


def test_the_private_apis_edge_patches_are_still_there() -> None:
    """edge replaces `aioice.ice.get_host_addresses` (per-connection host addresses) and each
    sender's `_send_keyframe` (PLI/FIR reach the shared encoder). Both are private: pyproject pins
    the versions these were tested with, and this fails when an upgrade moves either."""
    import inspect

    from aiortc.rtcrtpsender import RTCRtpSender

    from edge.publish import webrtc

    original = webrtc._original_get_host_addresses
    assert original.__module__ == "aioice.ice"
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    assert callable(RTCRtpSender._send_keyframe)
    # the RTCP handler is what calls it on a picture loss or full intra request
    rtcp = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in rtcp
