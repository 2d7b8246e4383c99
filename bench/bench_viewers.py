"""Server CPU per viewer: one shared encoder per camera vs. aiortc's per-viewer encoding.

One simulated RTSP camera (GStreamer, separate process) → CameraSource → PassthroughService →
web app, watched by 0, 1 and 3 headless Chromium pages (separate processes). For each case the
service process's CPU time (all its threads: decode, render, encode, WebRTC send) is measured over
a window once every viewer decodes, as % of one core. The same is repeated with a baseline that
hands every viewer raw frames and lets aiortc encode per viewer (what edge would do without the
shared encoder; the same page, gateway and codec negotiation, only the track differs).

Each case also reports offer → first frame as the page measures it (from before createOffer to
the first frame handed to the compositor: candidate gathering, signalling, ICE/DTLS, the forced
keyframe and its decode), for the viewer that starts the camera's encoder ("fresh") and for those
that join it running ("join"). Tabs open one after another, each once the previous one decodes.

Run: `python -m bench.bench_viewers [--seconds 10] [--rounds 2] [--clip FILE]` (about 2.5 min
on 2 cores). Browser FPS is reported so that a cheap-but-broken case shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiohttp import web
from aiortc import VideoStreamTrack
from playwright.async_api import Browser, Page, async_playwright

from edge.assets import asset
from edge.config import CameraConfig, IngestConfig, StreamConfig
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.publish.annotate import output_size
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app
from edge.testing import CHROMIUM, CHROMIUM_ARGS, async_wait_for, free_port


class RawFrameTrack(VideoStreamTrack):
    """Baseline: each viewer gets decoded frames and aiortc encodes them for that viewer alone."""

    def __init__(self, source: CameraSource, max_width: int) -> None:
        super().__init__()
        self._source = source
        self._max_width = max_width
        self._last_seq = -1

    async def recv(self) -> av.VideoFrame:
        while True:
            frame = self._source.latest()
            if frame is not None and frame.seq != self._last_seq:
                break
            await asyncio.sleep(0.005)
        self._last_seq = frame.seq
        w, h = output_size(frame.width, frame.height, self._max_width)
        out = await asyncio.to_thread(frame.image.reformat, w, h, "yuv420p")
        out.pts = round(frame.received_at * 90000)
        out.time_base = Fraction(1, 90000)
        return out


class PerViewerPublisher:
    """Duck-types the part of CameraPublisher the WebRTC gateway uses."""

    def __init__(
        self, camera_id: str, source: CameraSource, max_width: int, metrics: EdgeMetrics
    ) -> None:
        self.camera_id = camera_id
        self.metrics = metrics  # the gateway counts refused and never-connected viewers here
        self._source = source
        self._max_width = max_width

    def attach(self, codec: str = "h264") -> RawFrameTrack:
        return RawFrameTrack(self._source, self._max_width)

    def request_keyframe(self, codec: str | None = None) -> None:
        pass  # aiortc's own encoder handles PLI for frame tracks


class BaselineView:
    def __init__(self, inner: PassthroughService, publisher: PerViewerPublisher) -> None:
        self._inner = inner
        self._publisher = publisher
        self.registry = inner.registry

    def cameras(self) -> Any:
        return self._inner.cameras()

    def publisher(self, camera_id: str) -> Any:
        return self._publisher if camera_id == self._publisher.camera_id else None

    def is_ready(self) -> bool:
        return self._inner.is_ready()


@dataclass
class Result:
    mode: str
    viewers: int
    cpu_pct: list[float]
    browser_fps: list[float]
    fresh_ms: list[float]
    """Offer → first frame of the viewer that started the encoder."""
    join_ms: list[float]
    """Offer → first frame of the viewers that joined it running."""


async def _fps(pages: list[Page]) -> list[float]:
    js = "async () => (await window.edge.viewers.cam.stats()).framesDecoded"
    before = [await p.evaluate(js) for p in pages]
    await asyncio.sleep(2.0)
    after = [await p.evaluate(js) for p in pages]
    return [(a - b) / 2.0 for a, b in zip(after, before, strict=True)]


FIRST_FRAME_JS = "() => window.edge.ready && window.edge.viewers.cam.firstFrameMs"


async def measure(
    browser: Browser, url: str, viewers: int, seconds: float
) -> tuple[float, float, list[float]]:
    """(service CPU % of a core, lowest viewer FPS, each viewer's offer → first frame in ms)."""
    pages: list[Page] = []
    first_ms: list[float] = []
    try:
        for _ in range(viewers):
            pages.append(page := await browser.new_page())
            await page.goto(url + "/?camera=cam")
            first = await async_wait_for(lambda p=page: p.evaluate(FIRST_FRAME_JS), 20)
            first_ms.append(float(first))  # type: ignore[arg-type]
        await asyncio.sleep(2.0)  # let encoders and jitter buffers settle
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - t0) * 100
        fps = await _fps(pages) if pages else [0.0]
        return cpu, min(fps), first_ms
    finally:
        for page in pages:
            await page.close()
        await asyncio.sleep(1.0)  # beacons land, encoders stop


async def serve(view: Any, stream: StreamConfig) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(view, stream=stream))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def run(args: argparse.Namespace) -> list[Result]:
    stream = StreamConfig(max_width=args.max_width)
    with CameraSimulator({"cam": asset("video", args.clip)}) as sim:
        metrics = EdgeMetrics()
        source = CameraSource(CameraConfig(id="cam", url=sim.url("cam")), IngestConfig(), metrics)
        service = PassthroughService([source], stream, metrics)
        await source.start()
        await service.start()
        await async_wait_for(lambda: source.state == "streaming", 15)
        shared_runner, shared_url = await serve(service, stream)
        per_viewer = PerViewerPublisher("cam", source, args.max_width, metrics)
        baseline = BaselineView(service, per_viewer)
        base_runner, base_url = await serve(baseline, stream)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            cases = [("shared", shared_url, n) for n in args.viewers]
            cases += [("per-viewer", base_url, n) for n in args.viewers if n > 0]
            by_case = {(m, n): Result(m, n, [], [], [], []) for m, _, n in cases}
            for _ in range(args.rounds):  # interleaved, so background load hits every case
                for mode, url, n in cases:
                    cpu, fps, first_ms = await measure(browser, url, n, args.seconds)
                    result = by_case[(mode, n)]
                    result.cpu_pct.append(cpu)
                    result.browser_fps.append(fps)
                    result.fresh_ms += first_ms[:1]
                    result.join_ms += first_ms[1:]
                    firsts = ", ".join(f"{ms:.0f}" for ms in first_ms)
                    print(
                        f"{mode:10s} viewers={n} cpu={cpu:5.1f}% of a core  min fps={fps:.1f}  "
                        f"first frame ms: {firsts or '-'}"
                    )
            results = list(by_case.values())
            await browser.close()
        await shared_runner.cleanup()
        await base_runner.cleanup()
        await service.stop()
        await source.stop()
    return results


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"clip `{args.clip}`, output max width {args.max_width}, window {args.seconds:.0f} s, "
        f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f}",
        "",
        "| mode | viewers | service CPU, % of one core: median (rounds) | lowest viewer FPS "
        "| offer → first frame, ms: fresh median (max) | join median (max) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rounds = ", ".join(f"{c:.1f}" for c in r.cpu_pct)
        cpu = statistics.median(r.cpu_pct)
        fps = min(r.browser_fps)
        lines.append(
            f"| {r.mode} | {r.viewers} | {cpu:.1f} ({rounds}) | {fps:.1f} "
            f"| {_ms(r.fresh_ms)} | {_ms(r.join_ms)} |"
        )
    return "\n".join(lines)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({max(values):.0f})" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clip", default="traffic_highway_overpass.mp4")
    parser.add_argument("--max-width", type=int, default=1280)
    parser.add_argument("--viewers", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print()
    print(table(results, args))


if __name__ == "__main__":
    main()
