"""Where a camera's video comes from, and how to open it with PyAV so that it never hangs.

The options, each measured against a real RTSP server: TCP for RTSP (UDP loses packets on busy
networks), no probing (a camera's SDP already says what it sends: opening drops from ~2.3 s to
~0.1 s), and both FFmpeg's socket `timeout` and PyAV's own `(open, read)` timeout, because PyAV
otherwise blocks for as long as a frozen camera keeps its socket open.

Both read timeouts get half of `read_timeout_s`: measured against a SIGSTOPped server, FFmpeg
first hands out the packet it holds when its socket timeout fires and PyAV raises only at the
next expiry, so a freeze surfaces after 2 × the value given.

Opening failures become `OpenError`s that say what happened in words a person acts on. FFmpeg's
own words mislead in two cases: a camera that accepts the connection and then says nothing ends
in "Invalid data found" (its RTSP reply parser gives up when the socket timeout fires), which is
a timeout; and a refused login is an HTTP or RTSP 401/403, which must not be retried like a
network error (see `CameraState.UNAUTHORIZED`).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import av

from edge.config import IngestConfig
from edge.redact import redact, redact_url

_RTSP = {"rtsp", "rtsps"}
_UNAUTHORIZED = (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)
_TIMEOUT_LIKE = (av.error.ExitError, av.error.InvalidDataError, av.error.EOFError, TimeoutError)
"""What FFmpeg raises when a network read gives up: the PyAV timeout interrupts with ExitError,
the socket timeout surfaces as whatever the parser waiting for the data makes of nothing."""


class OpenError(Exception):
    """A source could not be opened; `str()` is one redacted line without the URL (the caller
    names the camera), `is_unauthorized` marks a refused login, `is_timeout` a silent peer."""

    def __init__(self, reason: str, *, is_unauthorized: bool = False, is_timeout: bool = False):
        super().__init__(redact(reason))
        self.is_unauthorized = is_unauthorized
        self.is_timeout = is_timeout


def error_reason(exc: BaseException) -> str:
    """`TypeName: reason`, redacted, without the URL or path PyAV appends to its messages."""
    strerror = getattr(exc, "strerror", None)  # PyAV's errors have it, OSError or not
    reason = strerror if isinstance(strerror, str) and strerror else str(exc)
    return redact(f"{type(exc).__name__}: {' '.join(reason.split()) or 'no details'}")


def classify_open_error(
    exc: BaseException, media: MediaLocation, elapsed_s: float, timeout_s: float
) -> OpenError:
    """Turn what `av.open` raised after `elapsed_s` into an `OpenError`. A network source that
    failed only once the timeout `timeout_s` had run out timed out, whatever FFmpeg called it."""
    if isinstance(exc, OpenError):
        return exc
    if isinstance(exc, _UNAUTHORIZED):
        return OpenError(
            f"{error_reason(exc)}: the camera refused the user name and password",
            is_unauthorized=True,
        )
    timed_out = isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
    if not media.is_file and (timed_out or isinstance(exc, _TIMEOUT_LIKE)):
        if timed_out or elapsed_s >= 0.9 * timeout_s:
            return OpenError(
                f"timed out after {elapsed_s:.1f} s: no answer from the camera "
                f"({type(exc).__name__})",
                is_timeout=True,
            )
    return OpenError(error_reason(exc))


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
    """Open for reading; raises `OpenError` (redacted, see `classify_open_error`) on failure."""
    started = time.monotonic()
    try:
        if media.is_file:
            return av.open(media.target, mode="r")
        return av.open(
            media.target,
            mode="r",
            options=open_options(media, ingest),
            timeout=(ingest.open_timeout_s, ingest.read_timeout_s / 2),
        )
    except Exception as exc:
        # The socket timeout (half the read timeout) is the first to fire on a silent camera.
        first_timeout_s = min(ingest.open_timeout_s, ingest.read_timeout_s / 2)
        elapsed_s = time.monotonic() - started
        raise classify_open_error(exc, media, elapsed_s, first_timeout_s) from None


def advertised_fps(stream: av.video.stream.VideoStream) -> float | None:
    """The frame rate the container or SDP states, if it is believable."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and 0 < float(rate) <= 240:
            return float(rate)
    return None


def probe_size(url: str) -> tuple[int, int] | None:
    """A video file's frame size from its header (no frame decoded), None when `url` is no local
    file or cannot be read. Network sources are not probed: opening a camera can take seconds and
    counts against accounts that lock after failed logins."""
    media = MediaLocation.parse(url)
    if not media.is_file:
        return None
    try:
        with av.open(media.target, mode="r") as container:
            ctx = container.streams.video[0].codec_context
            return (ctx.width, ctx.height) if ctx.width and ctx.height else None
    except Exception:  # unreadable or no video: `edge run` says why when it opens it
        return None
