"""Helpers shared by the tests, benchmarks and the demo: waiting on conditions, free ports, metric
samples (from a registry or a scraped `/metrics` text), box overlap, processes a service left."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import EdgeMetrics
from edge.track.events import VehicleEvent

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (never a browser downloaded by a test tool)."""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], object | Awaitable[object]], timeout: float, interval: float = 0.05
) -> object:
    """`wait_for` for the event loop: the predicate may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


class ServiceProcess:
    """`edge run --config F` as a real subprocess, with small HTTP helpers for tests and benches."""

    def __init__(
        self, config_path: Path, port: int, log_path: Path, args: Sequence[str] = ()
    ) -> None:
        """`args` are added to `edge run --config F` (`--shard 1/3`)."""
        self.config_path = config_path
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config_path), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def __enter__(self) -> ServiceProcess:
        """Ready, or stopped and raising: `with ServiceProcess(...) as svc:` stops it after."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /readyz answers 200; raises with the log's tail if the process died. Ready takes
        5-12 s on a busy 2-core machine (the first start also prepares the model)."""
        wait_for(lambda: self.status("/readyz") == 200 or self.proc.poll() is not None, timeout)
        if self.proc.poll() is not None:
            raise RuntimeError(f"edge run exited {self.proc.returncode}:\n{self.log()[-3000:]}")

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=5) as resp:
            return str(resp.read().decode())

    def get_json(self, path: str) -> Any:
        return json.loads(self.text(path))

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM as a service manager sends it; SIGKILL after `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def metric_samples(
    source: str | CollectorRegistry | EdgeMetrics, name: str, **labels: str
) -> list[tuple[dict[str, str], float]]:
    """Samples called `name` (with its suffix: `_total`, `_count`, ...) whose labels include
    `labels`, from `/metrics` text, a registry or an `EdgeMetrics`."""
    if isinstance(source, str):
        families = list(text_string_to_metric_families(source))
    else:
        registry = source.registry if isinstance(source, EdgeMetrics) else source
        families = list(registry.collect())
    return [
        (dict(s.labels), float(s.value))
        for family in families
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def metric_value(source: str | CollectorRegistry | EdgeMetrics, name: str, **labels: str) -> float:
    """The sum of `metric_samples` (0.0 when there is none): one series when every label is
    given, else the total over the others (`metric_value(text, "edge_frames_dropped_total",
    camera="a")` is every drop of camera a)."""
    return sum(value for _, value in metric_samples(source, name, **labels))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0.0 when both are empty.

    Plain arithmetic, on purpose: tests compare edge's own vectorised IoU against it."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every live process below `pid` (children, grandchildren, ...): pid -> start time, so that
    `still_alive` cannot mistake a recycled pid for one of them."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    found: dict[int, int] = {}
    parents = {pid}
    while parents:
        children = {p for p, (_, ppid, _) in table.items() if ppid in parents and p not in found}
        found.update({p: table[p][2] for p in children})
        parents = children
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """The processes of a `descendants` result that still run (zombies have ended)."""
    alive = []
    for pid, started in processes.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == started and stat[0] != "Z":
            alive.append(pid)
    return alive


def run_edge(
    *args: str | Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`edge ARGS` as a user runs it: a real `python -m edge.cli` subprocess, stdout and stderr
    captured as text. `env` adds to (or overrides) this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def synthetic_traffic(
    n: int,
    every_s: float,
    start: datetime,
    camera: str = "cam1",
    first_track: int = 1,
    classes: Sequence[str] = ("car", "motorcycle", "bus", "truck"),
) -> list[VehicleEvent]:
    """`n` vehicles, one every `every_s` from `start`: each crosses `north` (away) or `west`
    (toward) in turn and its track ends a second later; every fourth has a plate. Sorted by time
    (the store's tests and bench/bench_store.py)."""
    out = []
    for i in range(n):
        when = start + timedelta(seconds=i * every_s)
        track = first_track + i
        cls = classes[i % 3 % len(classes)]
        line, direction = ("north", "away") if i % 2 else ("west", "toward")
        plate = f"AB{track:03d}CD" if i % 4 == 0 else None
        out.append(VehicleEvent(camera, track, cls, "crossing", when, line=line,
                                direction=direction, frame=round(i * every_s * 25)))  # fmt: skip
        out.append(VehicleEvent(camera, track, cls, "track_end", when + timedelta(seconds=1),
                                plate=plate, frame=round((i * every_s + 1) * 25)))  # fmt: skip
    return sorted(out, key=lambda e: e.time)


class MosquittoBroker:
    """Debian's mosquitto on 127.0.0.1:`port` with its own config in `folder` (never the system
    service), persisting sessions there across `stop()` and `start()` (the MQTT sink's tests)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nlog_dest file {folder}/mosquitto.log\n"
            f"user {getpass.getuser()}\n"  # as root it would switch to `mosquitto`: no access
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)])
        wait_for(self._listening, 10)

    def _listening(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.folder / "mosquitto.log").read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions first
            self.proc.wait(10)
        self.proc = None
