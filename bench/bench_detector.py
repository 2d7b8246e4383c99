"""Detector throughput: bare ONNX Runtime vs. the batched stage vs. the original loop.

All on the same machine in one run, so the ratios mean something:
  (a) bare ORT: the dynamic-batch model alone at batch 1, 2, 4, 8 (img/s), inputs made beforehand;
  (b) edge: 4 simulated RTSP cameras → CameraSource → Batcher → Detector (aggregate frames/s
      inferred, mean batch size);
  (b1) the same with the frozen batch-1 model (batching off), to separate the batching gain from the
      cheaper preprocessing;
  (c) the original app's loop on the same 4 live cameras: one camera after another, batch 1,
      full-size BGR (`to_ndarray(format="bgr24")`), cv2.resize letterbox, infer, postprocess.
The live runs (b), (b1), (c) are interleaved over `--rounds` rounds so that a change in background
load hits all of them alike; the table gives the mean and every round. The camera simulator
(GStreamer, x264) runs on the same cores; its CPU share and the load average are reported because
they compete with what is measured.

Run: `python -m bench.bench_detector [--seconds 8] [--rounds 2] [--out results.md]`
(about 1.5 min on 2 cores).
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

CLIPS = {
    "cam0": "traffic_highway_cctv.mp4",  # 320×240 @ 25
    "cam1": "traffic_highway_overpass.mp4",  # 960×540 @ 29.97
    "cam2": "car-detection.mp4",  # 768×432 @ 12.5
    "cam3": "traffic_highway_cctv.mp4",  # 320×240 @ 25
}
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class LiveResult:
    name: str
    fps: float
    mean_batch: float | None
    source_fps: float
    sim_cpu: float
    """Simulator CPU over the window, in cores."""
    rss_mb: tuple[float, float]
    cpu: float
    """This process's CPU over the window (decode, ORT, everything), in cores."""
    infer_ms: float
    """Mean ONNX Runtime run time of one batch."""


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
) -> dict[int, float]:
    """img/s of a bare session (CPU provider, or CUDA when this ORT build has it)."""
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(model), providers=providers)
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


def bench_ort_work(
    model: Path, inputs: np.ndarray, batches: list[int], cpu_s: float
) -> dict[int, float]:
    """Images per CPU-second on one ORT thread without spinning: the work per image, which other
    processes on the machine barely disturb (unlike wall-clock throughput)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: dict[int, float] = {}
    for n in batches:
        batch = np.ascontiguousarray(inputs[np.arange(n) % len(inputs)])
        session.run(None, {name: batch})
        runs, start = 0, time.thread_time()
        while time.thread_time() - start < cpu_s:
            session.run(None, {name: batch})
            runs += 1
        out[n] = runs * n / (time.thread_time() - start)
    return out


async def live_window(
    sim: CameraSimulator,
    sources: dict[str, CameraSource],
    metrics: EdgeMetrics,
    count: Callable[[], tuple[int, int]],
    seconds: float,
    name: str,
) -> LiveResult:
    """Measure (frames, batches) from `count` over `seconds` once every camera streams."""
    await async_wait_for(
        lambda: all(s.state is CameraState.STREAMING for s in sources.values()), timeout=30
    )
    await asyncio.sleep(2.0)  # warm-up: ORT arenas, first batches

    def decoded() -> float:
        return sum(
            metrics.registry.get_sample_value("edge_frames_decoded_total", {"camera": c}) or 0.0
            for c in sources
        )

    def runs() -> tuple[float, float]:
        get = metrics.registry.get_sample_value
        name = "edge_batch_inference_seconds"
        return get(f"{name}_sum") or 0.0, get(f"{name}_count") or 0.0

    f0, b0 = count()
    d0, c0, r0, (i0, n0) = decoded(), cpu_seconds(sim.pid), rss_mb(), runs()
    p0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    f1, b1 = count()
    d1, c1, r1, (i1, n1) = decoded(), cpu_seconds(sim.pid), rss_mb(), runs()
    p1, t1 = time.process_time(), time.perf_counter()
    dt = t1 - t0
    mean_batch = (f1 - f0) / (b1 - b0) if b1 > b0 else None
    infer_ms = 1000 * (i1 - i0) / (n1 - n0) if n1 > n0 else float("nan")
    return LiveResult(
        name, (f1 - f0) / dt, mean_batch, (d1 - d0) / dt, (c1 - c0) / dt, (r0, r1),
        (p1 - p0) / dt, infer_ms,
    )  # fmt: skip


def make_sources(sim: CameraSimulator, metrics: EdgeMetrics) -> dict[str, CameraSource]:
    return {
        c: CameraSource(CameraConfig(id=c, url=sim.url(c)), IngestConfig(), metrics) for c in CLIPS
    }


async def bench_batched(sim: CameraSimulator, model: Path, seconds: float, name: str) -> LiveResult:
    """(b): CameraSource → Batcher → Detector, as edge runs it."""
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=model), metrics)
    sources = make_sources(sim, metrics)
    async with Batcher(det, det.config, metrics) as batcher:
        for s in sources.values():
            await s.start()
        feeds = [asyncio.create_task(batcher.feed(s)) for s in sources.values()]
        try:
            stats = batcher.stats
            return await live_window(
                sim, sources, metrics, lambda: (stats.frames_inferred, stats.batches), seconds, name
            )
        finally:
            for s in sources.values():
                await s.stop()
            await asyncio.gather(*feeds, return_exceptions=True)


def original_loop(
    det: Detector, sources: dict[str, CameraSource], stop: threading.Event, done: list[int]
) -> None:
    """The original app: cameras in turn, batch 1, full-size BGR, cv2 letterbox, infer."""
    last: dict[str, int] = {}
    while not stop.is_set():
        fresh = 0
        for cam, source in sources.items():
            frame = source.latest()
            if frame is None or last.get(cam) == frame.seq:
                continue
            last[cam] = frame.seq
            bgr = frame.image.to_ndarray(format="bgr24")
            tensor, letterbox = det.preprocess_bgr(bgr)
            raw = det.infer(tensor[None])
            det.postprocess(raw[0], letterbox)
            done[0] += 1
            fresh += 1
        if not fresh:
            time.sleep(0.001)


async def bench_original(sim: CameraSimulator, seconds: float) -> LiveResult:
    """(c): the original loop in a thread, reading the latest frame of the same live cameras."""
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=asset("models", "yolox_nano.onnx")), metrics)
    sources = make_sources(sim, metrics)
    stop, done = threading.Event(), [0]
    for s in sources.values():
        await s.start()
    worker = asyncio.create_task(asyncio.to_thread(original_loop, det, sources, stop, done))
    try:
        return await live_window(sim, sources, metrics, lambda: (done[0], 0), seconds, "(c)")
    finally:
        stop.set()
        await worker
        for s in sources.values():
            await s.stop()


LABELS = {
    "(b)": "(b) edge: 4 live RTSP cameras → CameraSource → Batcher → Detector",
    "(b1)": "(b1) same, frozen batch-1 model (batching off)",
    "(c)": "(c) original loop: cameras in turn, batch 1, full-size BGR + cv2.resize",
}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def report(
    info: dict[str, str], bare: dict[int, tuple[float, float]], work: dict[int, float],
    live: dict[str, list[LiveResult]], cmd: str,
) -> str:  # fmt: skip
    lines = [
        f"Machine: {info['cpu']}, nproc {info['nproc']}; Python {info['python']}, "
        f"onnxruntime {info['onnxruntime']} ({info['providers']})",
        f"Load average (1 min) at start / end: {info['load_start']} / {info['load_end']}",
        f"Command: `{cmd}`",
        "",
        "| what | throughput (mean) | rounds | mean batch | CPU (cores) | per CPU-second |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for n, (v, cpu) in bare.items():
        lines.append(
            f"| (a) bare ORT, batch {n} (yolox-nano 416, dynamic batch) | {v:.1f} img/s | | {n} "
            f"| {cpu:.2f} | {v / cpu:.1f} img |"
        )
    for n, v in work.items():
        lines.append(
            f"| (a1) bare ORT, batch {n}, 1 thread: work per image | | | {n} | 1 | {v:.1f} img |"
        )
    for name, runs in live.items():
        batches = [r.mean_batch for r in runs if r.mean_batch is not None]
        batch = f"{mean(batches):.2f}" if batches else "1"
        each = ", ".join(f"{r.fps:.1f}" for r in runs)
        fps, cpu = mean([r.fps for r in runs]), mean([r.cpu for r in runs])
        lines.append(
            f"| {LABELS[name]} | {fps:.1f} frames/s | {each} | {batch} | {cpu:.2f} "
            f"| {fps / cpu:.1f} frames |"
        )
    lines += [
        "",
        "| live run | decoded frames/s (all cameras) | share inferred | ORT run per batch (ms) "
        "| simulator CPU (cores) | RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in live.items():
        for r in runs:
            rss = f"{r.rss_mb[0]:.0f} → {r.rss_mb[1]:.0f}"
            share = f"{100 * r.fps / r.source_fps:.0f} %" if r.source_fps else "-"
            lines.append(
                f"| {name} | {r.source_fps:.1f} | {share} | {r.infer_ms:.1f} | {r.sim_cpu:.2f} "
                f"| {rss} |"
            )
    fps = {name: mean([r.fps for r in runs]) for name, runs in live.items()}
    per_cpu = {name: mean([r.fps / r.cpu for r in runs]) for name, runs in live.items()}
    best_n = max(bare, key=lambda n: bare[n][0])
    lines += [
        "",
        "Ratios (means):",
        f"- batched edge (b) / original loop (c): **{fps['(b)'] / fps['(c)']:.2f}×** (goal ≥ 2×)",
        f"- frames per CPU-second of this process, (b) / (c): "
        f"{per_cpu['(b)'] / per_cpu['(c)']:.2f}×",
        f"- edge without batching (b1) / original loop (c): {fps['(b1)'] / fps['(c)']:.2f}×",
        f"- batching gain on live cameras (b) / (b1): {fps['(b)'] / fps['(b1)']:.2f}×",
        f"- bare ORT best batch ({best_n}) / batch 1: {bare[best_n][0] / bare[1][0]:.2f}×",
        f"- edge (b) / bare ORT at its best batch: {fps['(b)'] / bare[best_n][0]:.2f}",
        f"- work per image, 1 thread, batch {max(work)} / batch 1: "
        f"{work[max(work)] / work[1]:.2f}× images per CPU-second",
    ]
    return "\n".join(lines)


async def run_live(model: Path, seconds: float, rounds: int) -> dict[str, list[LiveResult]]:
    streams = {c: asset("video", clip) for c, clip in CLIPS.items()}
    frozen = asset("models", "yolox_nano.onnx")
    results: dict[str, list[LiveResult]] = {"(b)": [], "(b1)": [], "(c)": []}
    with CameraSimulator(streams) as sim:
        for i in range(rounds):
            print(f"  round {i + 1}/{rounds}: (b) (b1) (c)", flush=True)
            results["(b)"].append(await bench_batched(sim, model, seconds, "(b)"))
            results["(b1)"].append(await bench_batched(sim, frozen, seconds, "(b1)"))
            results["(c)"].append(await bench_original(sim, seconds))
    return results


def load_average() -> str:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return f.read().split()[0]


def sample_inputs(model: Path) -> np.ndarray:
    """Eight real letterboxed frames from the clips, as the detector prepares them."""
    import av

    det = Detector(DetectorConfig(model=model), EdgeMetrics())
    tensors = []
    for clip in CLIPS.values():
        with av.open(str(asset("video", clip))) as container:
            for i, image in enumerate(container.decode(video=0)):
                tensors.append(det.preprocess_bgr(image.to_ndarray(format="bgr24"))[0])
                if i == 1:
                    break
    return np.stack(tensors[:8])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="window per live measurement")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds of (b), (b1), (c)"
    )
    parser.add_argument(
        "--ort-seconds", type=float, default=3.0, help="time per bare ORT batch size"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    info = machine()
    info["load_start"] = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "yolox_nano_dyn.onnx"
        _, check = prepare_model(asset("models", "yolox_nano.onnx"), model)
        if not check.ok:
            raise SystemExit(check.describe())
        print("(a) bare ONNX Runtime ...", flush=True)
        inputs = sample_inputs(model)
        bare = bench_ort(model, inputs, [1, 2, 4, 8], args.ort_seconds)
        work = bench_ort_work(model, inputs, [1, 4, 8], args.ort_seconds / 3)
        print("(b), (b1), (c) on 4 live simulated cameras ...", flush=True)
        live = asyncio.run(run_live(model, args.seconds, args.rounds))
    info["load_end"] = load_average()
    cmd = "python -m bench.bench_detector " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(info, bare, work, live, cmd.strip())
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
