"""`CameraSimulator`: real RTSP cameras made from video files, for tests, benchmarks and the demo.

It runs `rtsp_server.py` (GStreamer's RTSP server) under the system Python, where Debian's `gi`
lives, and drives it the way real cameras misbehave: `kill()` is a camera that vanished,
`pause()` (SIGSTOP) one that hangs with its TCP connections still open, `restart()` one that comes
back on the same port. With `credentials=(user, password)` every stream asks for them (RTSP Digest),
as a real camera does, so that wrong passwords can be tested too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit

from edge.redact import register_secret

log = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = os.environ.get("EDGE_GST_PYTHON", "/usr/bin/python3")
CREDENTIALS_ENV = "EDGE_CAMSIM_CREDENTIALS"
"""`user:password` for the server, passed in its environment (a command line shows in `ps`)."""


class _Readiness:
    """What one server process announced; each start gets its own, so a dying predecessor's
    reader thread cannot signal the new process's start."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.port: int | None = None


class SimulatorError(RuntimeError):
    """The RTSP server did not start; the message carries the tail of its stderr."""


class CameraSimulator:
    """Serves each `name → file` as `rtsp://host:port/name`, live and looping at real-time pace.

    `port=None` lets the server pick a free port; `restart()` then reuses the one it got, as a
    rebooted camera would.
    """

    def __init__(
        self,
        streams: Mapping[str, str | Path],
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = 10.0,
        python: str = SYSTEM_PYTHON,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        if not streams:
            raise ValueError("CameraSimulator needs at least one stream")
        if credentials is not None:
            user, password = credentials
            if not user or ":" in user or not password:
                raise ValueError("credentials: need a user without ':' and a password")
            register_secret(password)
        self.credentials = credentials
        self.streams = {name: Path(path) for name, path in streams.items()}
        for name, path in self.streams.items():
            if not path.is_file():
                raise FileNotFoundError(f"camera {name}: video file not found: {path}")
        self.host = host
        self.port: int | None = port
        self.ready_timeout = ready_timeout
        self.python = python
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._paused = False

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> CameraSimulator:
        """Start the server and block until it serves every stream (at most `ready_timeout` s)."""
        if self.running:
            return self
        cmd = [self.python, "-u", str(SERVER_SCRIPT), "--host", self.host]
        cmd += ["--port", str(self.port or 0), "--watch-stdin"]
        cmd += [f"{name}={path}" for name, path in self.streams.items()]
        self._stderr_tail.clear()
        self._paused = False
        env = {k: v for k, v in os.environ.items() if k != CREDENTIALS_ENV}
        if self.credentials is not None:
            env[CREDENTIALS_ENV] = ":".join(self.credentials)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        proc = self._proc
        ready = _Readiness()
        threading.Thread(
            target=self._read_stdout, args=(proc, ready), name="camsim-out", daemon=True
        ).start()
        threading.Thread(
            target=self._read_stderr, args=(proc,), name="camsim-err", daemon=True
        ).start()
        ready.event.wait(self.ready_timeout)  # set on READY, or when stdout closes (it failed)
        if ready.port is None or proc.poll() is not None:
            self._terminate(proc, signal.SIGKILL)
            tail = " | ".join(self._stderr_tail) or "no output"
            raise SimulatorError(f"RTSP simulator did not become ready: {tail}")
        self.port = ready.port
        log.info("camera simulator ready on %s:%s (pid %s)", self.host, self.port, proc.pid)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, as a service manager would; SIGKILL if it does not exit in `timeout`."""
        if self._proc is not None:
            if self._paused:
                self.resume()
            self._terminate(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL: the camera disappears without closing anything."""
        if self._proc is not None:
            self._terminate(self._proc, signal.SIGKILL)
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the camera hangs; connections stay open but nothing arrives."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT: a hung camera wakes up."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self) -> CameraSimulator:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start()

    # state -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def url(self, name: str, user: str | None = None, password: str | None = None) -> str:
        """The stream's RTSP URL, optionally with credentials (percent-encoded here; the server
        checks them only when it was given `credentials`)."""
        if name not in self.streams:
            raise KeyError(f"no stream named {name!r}; have {', '.join(self.streams)}")
        if self.port is None:
            raise RuntimeError("the simulator has not started yet, so it has no port")
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
        return f"rtsp://{auth}{self.host}:{self.port}/{name}"

    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.streams}

    def __enter__(self) -> CameraSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"CameraSimulator({', '.join(self.streams)}, port={self.port}, {state})"

    # internals -------------------------------------------------------------------------------

    def _signal(self, sig: signal.Signals) -> None:
        if not self.running or self._proc is None:
            raise RuntimeError("the camera simulator is not running")
        os.kill(self._proc.pid, sig)

    def _terminate(
        self, proc: subprocess.Popen[str], sig: signal.Signals, timeout: float = 5.0
    ) -> None:
        if proc.poll() is None:
            if sig != signal.SIGKILL:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("camera simulator pid %s ignored %s; killing it", proc.pid, sig.name)
                proc.kill()
                proc.wait()
        if proc.stdin is not None:  # stdout/stderr end by themselves; their readers close them
            try:
                proc.stdin.close()
            except OSError:
                pass

    def _read_stdout(self, proc: subprocess.Popen[str], ready: _Readiness) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.strip()
                if line.startswith("READY "):
                    first = line.split()[1]
                    ready.port = urlsplit(first).port
                    ready.event.set()
                elif line:
                    log.debug("camsim: %s", line)
        except (OSError, ValueError):
            pass
        finally:
            proc.stdout.close()
            ready.event.set()

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                line = line.rstrip()
                if line:
                    self._stderr_tail.append(line)
                    log.debug("camsim stderr: %s", line)
        except (OSError, ValueError):
            pass
        finally:
            proc.stderr.close()
