"""Detector throughput and capacity: bare ONNX Runtime vs. edge's pipeline vs. the original loop.

All on the same machine in one run, so the ratios mean something:
  (a) bare ORT: the dynamic-batch model alone at batch 1, 2, 4, 8, one batch at a time with ORT's
      default threads, and `cores` batches at once with one thread each (edge's CPU plan);
  (b) edge on 4 live simulated RTSP cameras: CameraSimulator → CameraSource → Batcher → Detector;
  (c) the original app's loop on the same 4 live cameras. (b) and (c) are supply-limited on a
      quiet machine (the 4 cameras send about 92 frames/s), so they show latency headroom, not
      capacity;
  (d) capacity: N cameras (default 8) made from the shared clips played by
      CameraSource(realtime=True, loop=True) — paced like live cameras but with no RTSP encoder
      on the same cores — sending more than either pipeline can take. Edge's pipeline as
      configured by default (Batcher, dynamic model, `workers`, `threads`, `max_batch` chosen by
      provider) vs. the same with other settings (d1, `--alt`; by default one batch of up to 8 at
      a time on ORT's default threads, edge's previous design) vs. the original loop over the
      same N sources, with ORT's default session options as the original app created it (dc) and
      with thread spinning off as edge runs it (dc0); the faster is the baseline.
The original loop is `bench.original_loop`. Decode runs in the CameraSource threads for every
variant, so the original loop gets decode/infer overlap for free.
Live variants alternate over `--rounds` rounds so that a change in background load hits them
alike. The 1-minute load average is recorded before every window; the report is marked
unpublishable (and `--out` is not written) when it exceeds 0.75 per core at the start.

Run: `python -m bench.bench_detector [--seconds 7] [--rounds 2] [--cameras 8] [--out FILE]`
(under 2 min on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench.original_loop import original_loop, original_session
from bench.probes import cpu_seconds, load_average, machine, providers, rss_mb
from edge.assets import asset
from edge.config import CameraConfig, DetectorConfig, IngestConfig
from edge.infer.batcher import Batcher
from edge.infer.detector import Detector
from edge.infer.prepare import prepare_model
from edge.infer.providers import cpu_cores
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
MAX_QUIET_LOAD = 0.75 * cpu_cores()  # 1.5 on the 2-core box
LABELS = {
    "b": "(b) edge, 4 live RTSP cameras: CameraSource → Batcher (defaults)",
    "c": "(c) original loop, same 4 live RTSP cameras",
    "d": "(d) edge, {n} paced file cameras: CameraSource → Batcher (defaults: {plan})",
    "d1": "(d1) same, {alt}",
    "dc": "(dc) original loop over the same {n} paced file cameras, ORT defaults",
    "dc0": "(dc0) same original loop, ORT thread spinning off",
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


def bench_ort(
    model: Path, inputs: np.ndarray, batches: list[int], seconds: float, workers: int, threads: int
) -> dict[int, tuple[float, float]]:
    """(img/s, CPU cores used) of a bare session (CPU provider, or CUDA when ORT has it) with
    `workers` threads each running batches on it, `threads` intra-op threads (0: ORT's default)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the Detector
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=providers())
    name = session.get_inputs()[0].name
    out: dict[int, tuple[float, float]] = {}
    for n in batches:
        batch = np.ascontiguousarray(inputs[np.arange(n) % len(inputs)])
        for _ in range(2):
            session.run(None, {name: batch})
        runs = [0] * workers
        start, cpu = time.perf_counter(), time.process_time()

        def work(i: int, batch: np.ndarray, start: float, runs: list[int]) -> None:
            while time.perf_counter() - start < seconds:
                session.run(None, {name: batch})
                runs[i] += 1

        pool = [threading.Thread(target=work, args=(i, batch, start, runs)) for i in range(workers)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        out[n] = (sum(runs) * n / wall, cpu / wall)
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
    window = Window(
        name, (f1 - f0) / dt, (d1 - d0) / dt, mean_batch, (p1 - p0) / dt, (s1 - s0) / dt, load,
        (r0, r1),
    )  # fmt: skip
    # Printed at once: a run cut off by a time limit (GPU machines) still shows its windows.
    print(
        f"    ({name}) {window.fps:.1f} frames/s of {window.supply_fps:.1f} supplied, "
        f"{window.cpu:.2f} cores",
        flush=True,
    )
    return window


def make_sources(urls: dict[str, str], metrics: EdgeMetrics, paced: bool) -> list[CameraSource]:
    return [
        CameraSource(CameraConfig(id=c, url=u), IngestConfig(), metrics, realtime=paced, loop=paced)
        for c, u in urls.items()
    ]


async def run_pipeline(
    name: str, urls: dict[str, str], paced: bool, model: Path, seconds: float,
    sim_pid: int | None = None, **config: int | str,
) -> Window:  # fmt: skip
    """Edge: CameraSource threads → Batcher → Detector in the Batcher's worker threads."""
    metrics = EdgeMetrics()
    det = Detector(DetectorConfig(model=model, **config), metrics)
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


async def run_original(
    name: str, urls: dict[str, str], paced: bool, seconds: float, sim_pid: int | None = None,
    spinning: bool = True,
) -> Window:  # fmt: skip
    """The original loop in one thread, reading the latest frame of each CameraSource."""
    metrics = EdgeMetrics()
    original = asset("models", "yolox_nano.onnx")
    # pre/postprocess only, square as the original app letterboxed
    det = Detector(DetectorConfig(model=original, workers=1, letterbox="square"), metrics)
    session = original_session(original, spinning)
    sources = make_sources(urls, metrics, paced)
    stop, done = threading.Event(), [0]
    for s in sources:
        await s.start()
    loop = asyncio.to_thread(original_loop, det, session, sources, stop, done)
    worker = asyncio.create_task(loop)
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
            out["b"].append(await run_pipeline("b", urls, False, model, seconds, sim.pid))
            out["c"].append(await run_original("c", urls, False, seconds, sim.pid))
    return out


async def run_capacity(
    model: Path, cameras: int, seconds: float, rounds: int, alt: dict[str, int | str]
) -> dict[str, list[Window]]:
    """(d), (d1), (dc) on `cameras` paced file sources, alternating."""
    urls = {f"f{i}": str(asset("video", FILE_CLIPS[i % len(FILE_CLIPS)])) for i in range(cameras)}
    out: dict[str, list[Window]] = {"d": [], "d1": [], "dc": [], "dc0": []}
    for i in range(rounds):
        print(f"  round {i + 1}/{rounds}: (d) (d1) (dc) (dc0), {cameras} cameras", flush=True)
        out["d"].append(await run_pipeline("d", urls, True, model, seconds))
        out["d1"].append(await run_pipeline("d1", urls, True, model, seconds, **alt))
        out["dc"].append(await run_original("dc", urls, True, seconds))
        out["dc0"].append(await run_original("dc0", urls, True, seconds, spinning=False))
    return out


ALT_PLAN: dict[str, int | str] = {"workers": 1, "max_batch": 8}
"""(d1) by default: edge's previous design, one batch of up to 8 at a time."""


def plan_arg(text: str) -> dict[str, int | str]:
    """`workers=2,letterbox=rect` → detector settings of (d1); unset workers/max_batch: 0/None
    (the defaults) once any setting is given."""
    plan: dict[str, int | str] = {}
    for part in filter(None, text.split(",")):
        key, _, value = (p.strip() for p in part.partition("="))
        if key in ("workers", "threads", "max_batch") and value.isdigit():
            plan[key] = int(value)
        elif key == "letterbox" and value in ("square", "rect"):
            plan[key] = value
        else:
            raise argparse.ArgumentTypeError(
                f"expected workers|threads|max_batch=N or letterbox=square|rect, got {part!r}"
            )
    return plan


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def report(
    info: dict[str, str], bare: dict[str, dict[int, tuple[float, float]]],
    runs: dict[str, list[Window]], cameras: int, plan: str, alt: str, cmd: str,
) -> str:  # fmt: skip
    lines = [
        f"Machine: {info['cpu']}, nproc {info['nproc']}; Python {info['python']}, "
        f"onnxruntime {info['onnxruntime']} ({info['providers']})",
        f"Load average (1 min) at start / end: {info['load_start']} / {info['load_end']}",
        f"Command: `{cmd}`",
        "",
        "| (a) bare ORT, yolox-nano 416 dynamic batch | batch | img/s | CPU (cores) "
        "| img per CPU-second |",
        "|---|---:|---:|---:|---:|",
    ]
    for how, rows in bare.items():
        for n, (v, cpu) in rows.items():
            lines.append(f"| {how} | {n} | {v:.1f} | {cpu:.2f} | {v / cpu:.1f} |")
    lines += [
        "",
        "| what | inferred frames/s (mean) | each round | supply frames/s | mean batch "
        "| CPU (cores) | CPU ms / frame | load before | RSS (MB) |",
        "|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for name, ws in runs.items():
        batches = [w.mean_batch for w in ws if w.mean_batch is not None]
        label = LABELS[name].format(n=cameras, plan=plan, alt=alt)
        lines.append(
            f"| {label} | {mean([w.fps for w in ws]):.1f} "
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
    base = max(("dc", "dc0"), key=lambda k: fps[k])

    def ratio(a: float, b: float) -> str:  # a stalled variant (0 frames/s) must not end the report
        return f"{a / b:.2f}×" if b else "n/a"

    if live:
        lines += ["", f"RTSP simulator CPU during (b)/(c): {sim:.2f} cores (not in this process)."]
    lines += [
        "",
        "Ratios (means, same run):",
        f"- capacity, edge (d) / the faster original loop ({base}), {cameras} cameras: "
        f"**{ratio(fps['d'], fps[base])}** (goal ≥ 2×); against the other "
        f"{ratio(fps['d'], fps['dc' if base == 'dc0' else 'dc0'])}",
        f"- edge (d1) / ({base}): {ratio(fps['d1'], fps[base])}; "
        f"edge's default plan (d) / (d1): {ratio(fps['d'], fps['d1'])}",
        f"- CPU per processed frame, (d) / ({base}): {ratio(ms['d'], ms[base])} "
        f"({ms['d']:.1f} vs {ms[base]:.1f} ms)",
    ]
    for how, rows in bare.items():
        best = max(rows, key=lambda n: rows[n][0])
        lines.append(
            f"- bare ORT, {how}: best batch {best} {rows[best][0]:.1f} img/s = "
            f"{rows[best][0] / rows[1][0]:.2f}× its batch 1; edge (d) = "
            f"{fps['d'] / rows[best][0]:.2f} of it"
        )
    if live:
        lines.append(
            f"- 4 live cameras, edge (b) / original loop (c): {fps['b'] / fps['c']:.2f}× "
            "(supply-limited, see supply column)"
        )
    return "\n".join(lines)


def sample_inputs(model: Path) -> np.ndarray:
    """Eight real frames from the clips, letterboxed to the model's 416² as the detector does."""
    import av

    det = Detector(DetectorConfig(model=model, letterbox="square"), EdgeMetrics())
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
        "--alt", type=plan_arg, default=ALT_PLAN, help="detector settings of (d1), e.g. workers=2"
    )
    parser.add_argument(
        "--no-rtsp", action="store_true", help="skip (b)/(c) (machines without GStreamer, e.g. GPU)"
    )
    args = parser.parse_args(argv)
    info = machine()
    load_start = load_average()
    info["load_start"] = f"{load_start:.2f}"
    with tempfile.TemporaryDirectory() as tmp:
        model, secs = Path(tmp) / "yolox_nano_dyn.onnx", args.ort_seconds
        _, check = prepare_model(asset("models", "yolox_nano.onnx"), model)
        if not check.ok:
            raise SystemExit(check.describe())
        print("(a) bare ONNX Runtime ...", flush=True)
        inputs, sizes, cores = sample_inputs(model), [1, 2, 4, 8], cpu_cores()
        bare = {
            "1 batch at a time, ORT's threads": bench_ort(model, inputs, sizes, secs, 1, 0),
            f"{cores} batches at once, 1 thread each": bench_ort(
                model, inputs, sizes, secs, cores, 1
            ),
        }
        default = Detector(DetectorConfig(model=model), EdgeMetrics())
        plan = (
            f"{default.workers} workers, max_batch {default.max_batch}, "
            f"{'rect' if default.rect else 'square'} letterbox"
        )
        runs: dict[str, list[Window]] = {}
        if not args.no_rtsp:
            print("(b), (c) on 4 live simulated RTSP cameras ...", flush=True)
            runs = asyncio.run(run_live(model, args.seconds, args.rounds))
        print(f"(d), (d1), (dc) on {args.cameras} paced file cameras ...", flush=True)
        runs |= asyncio.run(run_capacity(model, args.cameras, args.seconds, args.rounds, args.alt))
    info["load_end"] = f"{load_average():.2f}"
    cmd = "python -m bench.bench_detector " + " ".join(argv if argv is not None else sys.argv[1:])
    alt = ", ".join(f"{k} {v}" for k, v in args.alt.items())
    if args.alt == ALT_PLAN:
        alt = "one batch (max 8) at a time on ORT's default threads"
    text = report(info, bare, runs, args.cameras, plan, alt, cmd.strip())
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
