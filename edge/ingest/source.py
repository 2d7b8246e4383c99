"""`CameraSource`: one camera (RTSP, HTTP or a file) decoded in its own thread with PyAV.

Downstream only ever wants the newest picture: a detector that falls behind must skip frames,
not queue them, so the hand-off to the event loop is a single slot and a frame that is replaced
before anyone took it is counted as dropped ("superseded"). Without timeouts PyAV waits forever
on a camera that hangs, so every network read is bounded, a watchdog marks the
camera `stalled` as soon as packets stop, and the thread reconnects with jittered backoff (the
longest at once when the camera refuses the credentials: `unauthorized`). `last_error` says why.

Files are read as fast as the consumer takes them (nothing dropped, for offline analysis) unless
`realtime=True`, which paces them like a live camera (latest-only, drops counted); `loop=True`
plays them forever, otherwise the source stops at the end of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import av

from edge.config import CameraConfig, IngestConfig
from edge.ingest.backoff import Backoff
from edge.ingest.media import MediaLocation, OpenError, advertised_fps, error_reason, open_media
from edge.ingest.pacing import FpsCap, FpsEstimator, RealtimePacer
from edge.ingest.state import CameraState, SourceCounters, SourceStats
from edge.metrics import DropReason, EdgeMetrics
from edge.redact import redact
from edge.types import Frame

__all__ = ["CameraSource", "CameraState", "SourceStats"]

log = logging.getLogger(__name__)


class _StreamStalled(Exception):
    """A read timed out: the camera is there but sends nothing."""


_MAX_CONSECUTIVE_ERRORS = 50
"""Corrupt packets in a row before the connection is considered broken and reopened."""


class CameraSource:
    """Decodes one camera in a thread named `ingest-<id>` and hands the loop the latest frame."""

    def __init__(
        self,
        camera: CameraConfig,
        ingest: IngestConfig,
        metrics: EdgeMetrics,
        *,
        realtime: bool = False,
        loop: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self.camera = camera
        self.camera_id = camera.id
        self.ingest = ingest
        self.metrics = metrics
        self.media = MediaLocation.parse(camera.url)
        self.realtime = realtime
        self.loop = loop
        self.backoff = backoff or Backoff.from_config(self.ingest)
        self.source_fps: float | None = None
        self.last_error: str | None = None
        """The last connection or decode problem, credentials redacted."""
        self.last_error_at: float | None = None
        """When `last_error` happened (`time.time()`)."""
        self.history: deque[tuple[float, CameraState]] = deque(maxlen=64)
        """(monotonic time, state) of recent transitions, oldest first."""
        self._state = CameraState.STOPPED
        self.state_since = time.monotonic()
        self._state_lock = threading.Lock()
        self._counters = SourceCounters(camera.id, metrics)
        self._stopping = threading.Event()
        self._taken = threading.Event()
        self._thread: threading.Thread | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._pending: Frame | None = None
        self._latest: Frame | None = None
        self._finished = False
        self._last_packet_at = 0.0
        self._streaming_since: float | None = None
        self._fps_cap = FpsCap(camera.fps) if camera.fps else None
        self._fps_estimator = FpsEstimator()

    # public API ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The camera URL with its password masked."""
        return self.media.safe_url

    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def stats(self) -> SourceStats:
        """The counts so far, the same numbers as the camera's `/metrics` series."""
        return self._counters.snapshot()

    @property
    def paced(self) -> bool:
        """Whether frames are released on the clock (live or realtime) rather than on demand."""
        return not self.media.is_file or self.realtime

    async def start(self) -> None:
        """Start the decode thread; returns at once (watch `state` for `streaming`)."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera_id}: source already started")
        self._aloop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._set_state(CameraState.CONNECTING)
        self._thread = threading.Thread(
            target=self._run, name=f"ingest-{self.camera_id}", daemon=True
        )
        self._thread.start()
        if not self.media.is_file:
            self._watchdog = asyncio.create_task(
                self._watch_stalls(), name=f"ingest-watchdog-{self.camera_id}"
            )

    async def stop(self) -> None:
        """Stop decoding and end `frames()`; waits for the thread up to the read timeout."""
        self._stopping.set()
        self._taken.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        thread = self._thread
        if thread is not None and thread.is_alive():
            wait_s = 2 * max(self.ingest.open_timeout_s, self.ingest.read_timeout_s) + 1
            await asyncio.to_thread(thread.join, wait_s)
            if thread.is_alive():
                log.warning("camera %s: decode thread still blocked; leaving it", self.camera_id)
        self._set_state(CameraState.STOPPED)
        if self._pending is not None:  # decoded but never taken: counted, not lost silently
            self._pending = None
            self._counters.drop(DropReason.SHUTDOWN)
        self._finish()

    async def __aenter__(self) -> CameraSource:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def frames(self) -> AsyncIterator[Frame]:
        """The newest frame each time the consumer asks; ends when the source stops."""
        if self._wakeup is None:
            raise RuntimeError(f"camera {self.camera_id}: call start() first")
        while True:
            frame = self._pending
            if frame is not None:
                self._pending = None
                self._taken.set()
                yield frame
                continue
            if self._finished:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    def latest(self) -> Frame | None:
        """The most recent frame decoded, whether or not a consumer took it."""
        return self._latest

    def __repr__(self) -> str:
        return f"CameraSource(id={self.camera_id!r}, url={self.url!r}, state={self._state.value})"

    # loop side -------------------------------------------------------------------------------

    def _deliver(self, frame: Frame) -> None:
        if self._pending is not None:
            self._counters.drop(DropReason.SUPERSEDED)
        self._pending = frame
        self._latest = frame
        if self._wakeup is not None:
            self._wakeup.set()

    def _finish(self) -> None:
        self._finished = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def _watch_stalls(self) -> None:
        timeout = self.ingest.read_timeout_s
        interval = min(0.2, timeout / 4)
        while True:
            await asyncio.sleep(interval)
            silent_for = time.monotonic() - self._last_packet_at
            if self._state is CameraState.STREAMING and silent_for > timeout:
                log.warning("camera %s: no packet for %.1f s, stalled", self.camera_id, silent_for)
                self._set_state(CameraState.STALLED, only_from=CameraState.STREAMING)

    # thread side -----------------------------------------------------------------------------

    def _set_state(self, state: CameraState, only_from: CameraState | None = None) -> None:
        with self._state_lock:
            if self._state is state or (only_from is not None and self._state is not only_from):
                return
            if self._state is CameraState.STOPPED and self._finished:
                return
            self._state = state
            self.state_since = now = time.monotonic()
            self.history.append((now, state))
        self.metrics.set_camera_state(self.camera_id, state)
        log.info("camera %s: %s", self.camera_id, state.value)

    def _call_loop(self, callback: object, *args: object) -> bool:
        try:
            assert self._aloop is not None
            self._aloop.call_soon_threadsafe(callback, *args)  # type: ignore[arg-type]
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self._stopping.set()
            return False
        return True

    def _run(self) -> None:
        first = True
        try:
            while not self._stopping.is_set():
                if not first:
                    self._counters.reconnect()
                first = False
                outcome = self._connect_and_stream()
                if self._stopping.is_set():
                    break
                if self.media.is_file:
                    if outcome == "eof" and self.loop:
                        first = True  # replaying a file is not a reconnect
                        continue
                    break
                self._wait_backoff(unauthorized=outcome == "unauthorized")
        except Exception as exc:  # never let a camera take the process down
            self._set_error(f"decode thread failed: {error_reason(exc)}")
            log.error("camera %s: %s", self.camera_id, self.last_error)
        finally:
            self._set_state(CameraState.STOPPED)
            self._call_loop(self._finish)

    def _wait_backoff(self, unauthorized: bool = False) -> None:
        healthy_for = 0.0
        if self._streaming_since is not None:
            healthy_for = self._last_packet_at - self._streaming_since
        self.backoff.connection_ended(healthy_for)
        delay = self.backoff.next_delay(at_maximum=unauthorized)
        self._set_state(CameraState.UNAUTHORIZED if unauthorized else CameraState.BACKOFF)
        if unauthorized:
            log.info(
                "camera %s: credentials refused (%d times); trying %s again in %.2f s",
                self.camera_id, self._counters.unauthorized, self.url, delay,
            )  # fmt: skip
        else:
            log.info(
                "camera %s: reconnecting to %s in %.2f s (attempt %d)",
                self.camera_id, self.url, delay, self.backoff.attempt,
            )  # fmt: skip
        self._stopping.wait(delay)

    def _connect_and_stream(self) -> str:
        """One connection: 'eof' at its end, 'failed' on an error, 'unauthorized' when the camera
        refused the credentials, 'stopped' when asked to."""
        self._set_state(CameraState.CONNECTING)
        self._streaming_since = None
        try:
            container = open_media(self.media, self.ingest)
        except OpenError as exc:
            self._warn(f"cannot open: {exc}")
            if not exc.is_unauthorized:
                return "failed"
            self._counters.refused()
            return "unauthorized"
        try:
            return self._stream(container)
        except _StreamStalled:
            self._set_state(CameraState.STALLED)
            self._warn(f"stalled: no data for {self.ingest.read_timeout_s:g} s (read timeout)")
            return "failed"
        except Exception as exc:
            self._warn(f"stream broke: {error_reason(exc)}")
            return "failed"
        finally:
            with contextlib.suppress(Exception):
                container.close()

    def _warn(self, text: str) -> None:
        self._set_error(text)
        log.warning("camera %s: %s", self.camera_id, self.last_error)

    def _set_error(self, text: str) -> None:
        self.last_error = redact(text)
        self.last_error_at = time.time()

    def _stream(self, container: av.container.InputContainer) -> str:
        stream = container.streams.video[0]
        self.source_fps = advertised_fps(stream) or self.source_fps
        self.metrics.set_source_fps(self.camera_id, self.source_fps)
        pacer = RealtimePacer() if self.realtime and self.media.is_file else None
        self._last_packet_at = time.monotonic()
        errors_in_a_row = 0
        while True:
            try:
                for packet in container.demux(stream):
                    if self._stopping.is_set():
                        return "stopped"
                    self._on_packet(packet, pacer)
                    errors_in_a_row = 0
                return "eof"
            except (av.error.ExitError, TimeoutError) as exc:
                raise _StreamStalled("no data within the read timeout") from exc
            except av.error.InvalidDataError as exc:
                errors_in_a_row += 1
                self._count_decode_error(exc)
                if errors_in_a_row >= _MAX_CONSECUTIVE_ERRORS:
                    raise

    def _on_packet(self, packet: av.Packet[Any], pacer: RealtimePacer | None) -> None:
        self._last_packet_at = time.monotonic()
        if packet.size:
            self._counters.packet()
        started = time.perf_counter()
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            self._count_decode_error(exc)
            return
        if decoded:
            per_frame = (time.perf_counter() - started) / len(decoded)
            for image in decoded:
                self._on_frame(image, per_frame, pacer)

    def _count_decode_error(self, exc: BaseException) -> None:
        self._counters.decode_error()
        self._set_error(f"corrupt data: {error_reason(exc)}")
        log.debug("camera %s: %s", self.camera_id, self.last_error)

    def _on_frame(self, image: av.VideoFrame, decode_s: float, pacer: RealtimePacer | None) -> None:
        now = time.monotonic()
        seq = self._counters.frame()
        cam = self.camera_id
        self.metrics.tick_fps(cam, "decoded", now)
        self.metrics.observe_stage(cam, "decode", decode_s)
        if self._streaming_since is None:
            self._streaming_since = now
        if self._state is not CameraState.STREAMING:
            self._set_state(CameraState.STREAMING)
        pts = float(image.time) if image.pts is not None and image.time is not None else None
        self._estimate_fps(pts)
        if self._fps_cap is not None and not self._fps_cap.admit(pts if pts is not None else now):
            self._counters.drop(DropReason.FPS_CAP)
            return
        if pacer is not None and pts is not None:
            self._stopping.wait(pacer.delay(pts, now))
            now = time.monotonic()
        frame = Frame(camera_id=cam, seq=seq, pts=pts, received_at=now, image=image)
        if self.paced:
            self._call_loop(self._deliver, frame)
            return
        self._taken.clear()  # on demand: wait until the consumer took this frame
        if self._call_loop(self._deliver, frame):
            while not self._taken.wait(0.5) and not self._stopping.is_set():
                pass

    def _estimate_fps(self, pts: float | None) -> None:
        """Cameras that advertise no rate get one measured from their timestamps."""
        if pts is None or self.source_fps is not None:
            return
        self.source_fps = self._fps_estimator.add(pts)
        self.metrics.set_source_fps(self.camera_id, self.source_fps)
