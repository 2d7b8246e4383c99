"""Detector throughput and capacity: bare ONNX Runtime vs. edge's pipeline vs. the original loop.

All on the same machine in one run, so the ratios mean something:
  (a) bare ORT: the dynamic-batch model alone at batch 1, 2, 4, 8 (img/s, img per CPU-second);
  (b) edge on 4 live simulated RTSP cameras: CameraSimulator → CameraSource → Batcher → Detector;
  (c) the original app's loop on the same 4 live cameras. (b) and (c) are supply-limited on a
      quiet machine (the 4 cameras send about 92 frames/s), so they show latency headroom, not
      capacity;
  (d) capacity: N cameras (default 8) made from the shared clips played by
      CameraSource(realtime=True, loop=True) — paced like live cameras but with no RTSP encoder
      on the same cores — sending more than either pipeline can take. Edge's pipeline (Batcher,
      dynamic model, max_batch 8) vs. the same pipeline at max_batch 1 (model-resolution
      preprocessing without batching) vs. the original loop over the same N sources.
The original loop, as the original app did it: one camera after another, its latest frame,
full-size BGR (`to_ndarray(format="bgr24")`), cv2 letterbox resize, batch-1 inference,
postprocess. It runs in one thread; decode runs in the CameraSource threads for every variant.
Live variants alternate over `--rounds` rounds so that a change in background load hits them
alike. The 1-minute load average is recorded before every window; the report is marked
unpublishable (and `--out` is not written) when it exceeds 1.5 at the start.

Run: `python -m bench.bench_detector [--seconds 7] [--rounds 2] [--cameras 8] [--out FILE]`
(under 2 min on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

if __package__ in (None, ""):  # `python bench/bench_detector.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import asset
from edge.config import CameraConfig, DetectorConfig, IngestConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.infer.prepare import prepare_model
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource, CameraState
from edge.metrics import EdgeMetrics
from edge.testing import async_wait_for

LIVE_CLIPS = {
    "cam0": "traffic_highway_cctv.mp4",  # 320×240 @ 25
    "cam1": "traffic_highway_overpass.mp4",  # 960×540 @ 29.97
    "cam2": "car-detection.mp4",  # 768×432 @ 12.5
    "cam3": "traffic_highway_cctv.mp4",  # 320×240 @ 25
}
FILE_CLIPS = ["traffic_highway_overpass.mp4", "traffic_highway_cctv.mp4", "car-detection.mp4"]
TICK = os.sysconf("SC_CLK_TCK")
MAX_QUIET_LOAD = 1.5
LABELS = {
    "b": "(b) edge, 4 live RTSP cameras: CameraSource → Batcher (max_batch 8)",
    "c": "(c) original loop, same 4 live RTSP cameras",
    "d": "(d) edge, {n} paced file cameras: CameraSource → Batcher (max_batch 8)",
    "d1": "(d1) same, Batcher max_batch 1 (model-size preprocessing, no batching)",
    "dc": "(dc) original loop over the same {n} paced file cameras",
}


@dataclass
class Window:
    name: str
    fps: float
    """Frames inferred per second, all cameras together."""
    supply_fps: float
    """Frames decoded per second, all cameras together (what the cameras offered)."""
    mean_batch: float | None
    cpu: float
    """This process's CPU over the window (decode, ORT, everything), in cores."""
    sim_cpu: float
    load: float
    """1-minute load average just before the window."""
    rss_mb: tuple[float, float]

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu / self.fps if self.fps else float("nan")


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ", ".join(ort.get_available_providers()),
    }


def load_average() -> float:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return float(f.read().split()[0])


def rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def bench_ort(
    model: Path, inputs: np.ndarray, batches: list[int], seconds: float
) -> dict[int, tuple[float, float]]:
    """(img/s, CPU cores used) of a bare session (CPU provider, or CUDA when ORT has it)."""
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the Detector
    session = ort.InferenceSession(str(model), options, providers=providers)
    name = session.get_inputs()[0].name
    out: dict[int, tuple[float, float]] = {}
    for n in batches:
        batch = np.ascontiguousarray(inputs[np.arange(n) % len(inputs)])
        for _ in range(2):
            session.run(None, {name: batch})
        runs, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            session.run(None, {name: batch})
            runs += 1
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        out[n] = (runs * n / wall, cpu / wall)
    return out


async def measure(
    name: str,
    sources: list[CameraSource],
    count: Callable[[], tuple[int, int]],
    seconds: float,
    sim_pid: int | None = None,
) -> Window:
    """Count (frames, batches) over `seconds` once every camera streams and a warm-up passed."""
    await async_wait_for(lambda: all(s.state is CameraState.STREAMING for s in sources), 30)
    await asyncio.sleep(2.0)  # warm-up: ORT arenas, first batches, pacers settle

    def decoded() -> int:
        return sum(s.stats.frames for s in sources)

    load = load_average()
    (f0, b0), d0, s0, r0 = count(), decoded(), cpu_seconds(sim_pid), rss_mb()
    p0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    (f1, b1), d1, s1, r1 = count(), decoded(), cpu_seconds(sim_pid), rss_mb()
    p1, t1 = time.process_time(), time.perf_counter()
    dt = t1 - t0
    mean_batch = (f1 - f0) / (b1 - b0) if b1 > b0 else None
    return Window(
        name, (f1 - f0) / dt, (d1 - d0) / dt, mean_batch, (p1 - p0) / dt, (s1 - s0) / dt, load,
        (r0, r1),
    )  # fmt: skip


def make_sources(urls: dict[str, str], metrics: EdgeMetrics, paced: bool) -> list[CameraSource]:
    return [
        CameraSource(CameraConfig(id=c, url=u), IngestConfig(), metrics, realtime=paced, loop=paced)
        for c, u in urls.items()
    ]


async def run_pipeline(
    name: str, urls: dict[str, str], paced: bool, model: Path, max_batch: int, seconds: float,
    sim_pid: int | None = None,
) -> Window:  # fmt: skip
    """Edge: CameraSource threads → Batcher → Detector in the Batcher's worker thread."""
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=model, max_batch=max_batch), metrics)
    sources = make_sources(urls, metrics, paced)
    async with Batcher(det, det.config, metrics) as batcher:
        for s in sources:
            await s.start()
        feeds = [asyncio.create_task(batcher.feed(s)) for s in sources]
        try:
            stats = batcher.stats
            count = lambda: (stats.frames_inferred, stats.batches)  # noqa: E731
            return await measure(name, sources, count, seconds, sim_pid)
        finally:
            for s in sources:
                await s.stop()
            await asyncio.gather(*feeds, return_exceptions=True)


def original_loop(
    det: Detector, sources: list[CameraSource], stop: threading.Event, done: list[int]
) -> None:
    """The original app: cameras in turn, batch 1, full-size BGR, cv2 letterbox, infer."""
    last: dict[str, int] = {}
    while not stop.is_set():
        fresh = 0
        for source in sources:
            frame = source.latest()
            if frame is None or last.get(source.camera_id) == frame.seq:
                continue
            last[source.camera_id] = frame.seq
            bgr = frame.image.to_ndarray(format="bgr24")
            tensor, letterbox = det.preprocess_bgr(bgr)
            raw = det.infer(tensor[None])
            det.postprocess(raw[0], letterbox)
            done[0] += 1
            fresh += 1
        if not fresh:
            time.sleep(0.001)


async def run_original(
    name: str, urls: dict[str, str], paced: bool, model: Path, seconds: float,
    sim_pid: int | None = None,
) -> Window:  # fmt: skip
    """The original loop in one thread, reading the latest frame of each CameraSource."""
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=model), metrics)
    sources = make_sources(urls, metrics, paced)
    stop, done = threading.Event(), [0]
    for s in sources:
        await s.start()
    worker = asyncio.create_task(asyncio.to_thread(original_loop, det, sources, stop, done))
    try:
        return await measure(name, sources, lambda: (done[0], 0), seconds, sim_pid)
    finally:
        stop.set()
        await worker
        for s in sources:
            await s.stop()


async def run_live(model: Path, seconds: float, rounds: int) -> dict[str, list[Window]]:
    """(b) and (c) on 4 simulated RTSP cameras, alternating."""
    streams = {c: asset("video", clip) for c, clip in LIVE_CLIPS.items()}
    out: dict[str, list[Window]] = {"b": [], "c": []}
    with CameraSimulator(streams) as sim:
        urls = {c: sim.url(c) for c in streams}
        for i in range(rounds):
            print(f"  round {i + 1}/{rounds}: (b) (c)", flush=True)
            out["b"].append(await run_pipeline("b", urls, False, model, 8, seconds, sim.pid))
            out["c"].append(await run_original("c", urls, False, model, seconds, sim.pid))
    return out


async def run_capacity(
    model: Path, cameras: int, seconds: float, rounds: int
) -> dict[str, list[Window]]:
    """(d), (d1), (dc) on `cameras` paced file sources, alternating."""
    urls = {f"f{i}": str(asset("video", FILE_CLIPS[i % len(FILE_CLIPS)])) for i in range(cameras)}
    out: dict[str, list[Window]] = {"d": [], "d1": [], "dc": []}
    for i in range(rounds):
        print(f"  round {i + 1}/{rounds}: (d) (d1) (dc), {cameras} cameras", flush=True)
        out["d"].append(await run_pipeline("d", urls, True, model, 8, seconds))
        out["d1"].append(await run_pipeline("d1", urls, True, model, 1, seconds))
        out["dc"].append(await run_original("dc", urls, True, model, seconds))
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def report(
    info: dict[str, str], bare: dict[int, tuple[float, float]], runs: dict[str, list[Window]],
    cameras: int, cmd: str,
) -> str:  # fmt: skip
    lines = [
        f"Machine: {info['cpu']}, nproc {info['nproc']}; Python {info['python']}, "
        f"onnxruntime {info['onnxruntime']} ({info['providers']})",
        f"Load average (1 min) at start / end: {info['load_start']} / {info['load_end']}",
        f"Command: `{cmd}`",
        "",
        "| (a) bare ORT, yolox-nano 416 dynamic batch | img/s | CPU (cores) | img per CPU-second |",
        "|---|---:|---:|---:|",
    ]
    for n, (v, cpu) in bare.items():
        lines.append(f"| batch {n} | {v:.1f} | {cpu:.2f} | {v / cpu:.1f} |")
    lines += [
        "",
        "| what | inferred frames/s (mean) | each round | supply frames/s | mean batch "
        "| CPU (cores) | CPU ms / frame | load before | RSS (MB) |",
        "|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for name, ws in runs.items():
        batches = [w.mean_batch for w in ws if w.mean_batch is not None]
        lines.append(
            f"| {LABELS[name].format(n=cameras)} | {mean([w.fps for w in ws]):.1f} "
            f"| {', '.join(f'{w.fps:.1f}' for w in ws)} | {mean([w.supply_fps for w in ws]):.1f} "
            f"| {f'{mean(batches):.2f}' if batches else '1'} | {mean([w.cpu for w in ws]):.2f} "
            f"| {mean([w.cpu_ms_per_frame for w in ws]):.2f} "
            f"| {', '.join(f'{w.load:.2f}' for w in ws)} "
            f"| {', '.join(f'{w.rss_mb[0]:.0f}→{w.rss_mb[1]:.0f}' for w in ws)} |"
        )
    live = "b" in runs
    sim = mean([w.sim_cpu for w in runs["b"] + runs["c"]]) if live else 0.0
    fps = {k: mean([w.fps for w in ws]) for k, ws in runs.items()}
    ms = {k: mean([w.cpu_ms_per_frame for w in ws]) for k, ws in runs.items()}
    best = max(bare, key=lambda n: bare[n][0])
    if live:
        lines += ["", f"RTSP simulator CPU during (b)/(c): {sim:.2f} cores (not in this process)."]
    lines += [
        "",
        "Ratios (means, same run):",
        f"- capacity, edge (d) / original loop (dc), {cameras} cameras: "
        f"**{fps['d'] / fps['dc']:.2f}×** (goal ≥ 2×)",
        f"- of which model-size preprocessing, no batching (d1) / (dc): "
        f"{fps['d1'] / fps['dc']:.2f}×; batching (d) / (d1): {fps['d'] / fps['d1']:.2f}×",
        f"- CPU per processed frame, (d) / (dc): {ms['d'] / ms['dc']:.2f}× "
        f"({ms['d']:.1f} vs {ms['dc']:.1f} ms)",
        f"- bare ORT best batch ({best}) / batch 1: {bare[best][0] / bare[1][0]:.2f}× img/s, "
        f"{(bare[best][0] / bare[best][1]) / (bare[1][0] / bare[1][1]):.2f}× img per CPU-second",
        f"- edge (d) / bare ORT at batch {best}: {fps['d'] / bare[best][0]:.2f}",
    ]
    if live:
        lines.append(
            f"- 4 live cameras, edge (b) / original loop (c): {fps['b'] / fps['c']:.2f}× "
            "(supply-limited, see supply column)"
        )
    return "\n".join(lines)


def sample_inputs(model: Path) -> np.ndarray:
    """Eight real letterboxed frames from the clips, as the detector prepares them."""
    import av

    det = Detector(DetectorConfig(model=model), EdgeMetrics())
    tensors = []
    for clip in LIVE_CLIPS.values():
        with av.open(str(asset("video", clip))) as container:
            for i, image in enumerate(container.decode(video=0)):
                tensors.append(det.preprocess_bgr(image.to_ndarray(format="bgr24"))[0])
                if i == 1:
                    break
    return np.stack(tensors[:8])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7.0, help="window per live measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each variant")
    parser.add_argument("--cameras", type=int, default=8, help="paced file cameras in (d)")
    parser.add_argument("--ort-seconds", type=float, default=2.0, help="per bare ORT batch size")
    parser.add_argument("--out", type=Path, help="also write the markdown report (if quiet)")
    parser.add_argument(
        "--no-rtsp", action="store_true", help="skip (b)/(c) (machines without GStreamer, e.g. GPU)"
    )
    args = parser.parse_args(argv)
    info = machine()
    load_start = load_average()
    info["load_start"] = f"{load_start:.2f}"
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "yolox_nano_dyn.onnx"
        _, check = prepare_model(asset("models", "yolox_nano.onnx"), model)
        if not check.ok:
            raise SystemExit(check.describe())
        print("(a) bare ONNX Runtime ...", flush=True)
        bare = bench_ort(model, sample_inputs(model), [1, 2, 4, 8], args.ort_seconds)
        runs: dict[str, list[Window]] = {}
        if not args.no_rtsp:
            print("(b), (c) on 4 live simulated RTSP cameras ...", flush=True)
            runs = asyncio.run(run_live(model, args.seconds, args.rounds))
        print(f"(d), (d1), (dc) on {args.cameras} paced file cameras ...", flush=True)
        runs |= asyncio.run(run_capacity(model, args.cameras, args.seconds, args.rounds))
    info["load_end"] = f"{load_average():.2f}"
    cmd = "python -m bench.bench_detector " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(info, bare, runs, args.cameras, cmd.strip())
    if load_start > MAX_QUIET_LOAD:
        text = (
            f"WARNING: load average {load_start:.2f} > {MAX_QUIET_LOAD} at start: the machine was "
            "busy, these numbers are NOT for publication.\n\n" + text
        )
    print(text)
    if args.out and load_start <= MAX_QUIET_LOAD:
        args.out.write_text(text + "\n", encoding="utf-8")
    elif args.out:
        print(f"not writing {args.out}: machine was busy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
