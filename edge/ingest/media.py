"""Where a camera's video comes from, and how to open it with PyAV so that it never hangs.

The options are those measured in recipes.md §2: TCP for RTSP (UDP loses packets on busy
networks), no probing (a camera's SDP already says what it sends: opening drops from ~2.3 s to
~0.1 s), and both FFmpeg's socket `timeout` and PyAV's own `(open, read)` timeout, because PyAV
otherwise blocks for as long as a frozen camera keeps its socket open.

Both read timeouts get half of `read_timeout_s`: measured against a SIGSTOPped server, FFmpeg
first hands out the packet it holds when its socket timeout fires and PyAV raises only at the
next expiry, so a freeze surfaces after 2 × the value given (recipes.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import av

from edge.config import IngestConfig
from edge.redact import redact_url

_RTSP = {"rtsp", "rtsps"}


@dataclass(frozen=True, slots=True)
class MediaLocation:
    """A camera URL split into what opening it needs; `repr` never shows the password."""

    target: str
    """What FFmpeg opens: the URL, or a local path for files."""
    scheme: str
    """'file' for local files, otherwise the URL scheme in lower case."""

    @classmethod
    def parse(cls, url: str) -> MediaLocation:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return cls(url2pathname(parts.path), "file")
        if len(scheme) <= 1:  # a plain path (or a Windows drive letter)
            return cls(str(Path(url).expanduser()), "file")
        return cls(url, scheme)

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"

    @property
    def safe_url(self) -> str:
        return redact_url(self.target)

    def __repr__(self) -> str:
        return f"MediaLocation({self.safe_url!r})"


def open_options(media: MediaLocation, ingest: IngestConfig) -> dict[str, str]:
    """FFmpeg options for `media`: bounded I/O for anything that comes over a network."""
    if media.is_file:
        return {}
    options = {"timeout": str(int(ingest.read_timeout_s / 2 * 1_000_000))}
    if media.scheme in _RTSP:
        options |= {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32"}
    elif media.scheme in ("http", "https"):
        options |= {"analyzeduration": "1000000"}
    return options


def open_media(media: MediaLocation, ingest: IngestConfig) -> av.container.InputContainer:
    """Open for reading; raises on failure (PyAV's errors may contain the URL: redact them)."""
    if media.is_file:
        return av.open(media.target, mode="r")
    return av.open(
        media.target,
        mode="r",
        options=open_options(media, ingest),
        timeout=(ingest.open_timeout_s, ingest.read_timeout_s / 2),
    )


def advertised_fps(stream: av.video.stream.VideoStream) -> float | None:
    """The frame rate the container or SDP states, if it is believable."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and 0 < float(rate) <= 240:
            return float(rate)
    return None
