"""ONNX Runtime session creation: the configured providers, in order, with a CPU fallback.

Exactly one INFO line says which provider ended up running the model, and why when it is not the
first one asked for, because "it silently ran on the CPU" is the classic deployment surprise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edge.config import DetectorConfig

log = logging.getLogger(__name__)

ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {v: k for k, v in ORT_NAMES.items()}
MAX_AUTO_WORKERS = 8
GPU_WORKERS = 2
GPU_MAX_BATCH = 8
CPU_MAX_BATCH = 2


def provider_options(name: str, config: DetectorConfig) -> dict[str, Any]:
    """ONNX Runtime options for one of our provider names (CUDA: the original app's)."""
    if name == "cuda":
        c = config.cuda
        return {
            "device_id": c.device_id,
            "arena_extend_strategy": c.arena_extend_strategy,
            "gpu_mem_limit": c.gpu_mem_limit,
            "cudnn_conv_algo_search": c.cudnn_conv_algo_search,
            "do_copy_in_default_stream": c.do_copy_in_default_stream,
            "use_tf32": int(c.tf32),
        }
    if name == "tensorrt":
        t = config.tensorrt
        return {
            "device_id": config.cuda.device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(Path(t.engine_cache_dir).expanduser()),
            "trt_fp16_enable": t.fp16,
        }
    return {}


def requested_providers(config: DetectorConfig) -> list[str]:
    """Our provider names in config order; TensorRT only when enabled; CPU always last resort."""
    names: list[str] = [p for p in config.providers if p != "tensorrt" or config.tensorrt.enabled]
    if config.tensorrt.enabled and "tensorrt" not in names:
        names.insert(0, "tensorrt")
    if "cpu" not in names:
        names.append("cpu")
    return names


def usable_providers(config: DetectorConfig) -> list[str]:
    """`requested_providers` that this onnxruntime build has (a GPU may still fail to start)."""
    available = set(ort.get_available_providers())
    return [p for p in requested_providers(config) if ORT_NAMES[p] in available]


def _preload_gpu_libraries() -> None:
    """onnxruntime-gpu finds the NVIDIA pip libraries only after `preload_dlls` (1.21+)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # a missing library only means no GPU here
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How the one session is driven: batches at once, and ORT intra-op threads for each."""

    workers: int
    threads: int
    """0 leaves ONNX Runtime's own default."""
    max_batch: int


def cpu_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_plan(config: DetectorConfig, provider: str, cores: int | None = None) -> RunPlan:
    """Concurrent batches and threads per batch for `provider`, unless the config sets them.

    Why several single-threaded batches on a CPU: ONNX Runtime splits each of a small YOLO's layers
    across its threads and loses a quarter to a third of every core to keeping them in step (2-core
    box: about 130 images per CPU-second on one thread, 74-116 on two; BENCHMARKS.md).
    Independent batches side by side, one thread each, keep every core busy without that loss, on
    the same session (its `run` is thread-safe). On one thread a batch of 8 costs 20-30 % more per
    image than a batch of 1 or 2 (activations outgrow the caches), so CPU batches stay small. On a
    GPU the model takes a fraction of a batch's time and the CPU's letterbox and postprocess the
    rest, so two workers overlap one batch's CPU work with the other's inference (H200, 32
    cameras: 1.55× one worker; BENCHMARKS.md), with batches as large as the cameras fill."""
    cores = cores or cpu_cores()
    on_gpu = provider in ("cuda", "tensorrt")
    workers = config.workers or (GPU_WORKERS if on_gpu else min(cores, MAX_AUTO_WORKERS))
    threads = config.threads or (0 if on_gpu else max(1, cores // workers))
    max_batch = config.max_batch or (GPU_MAX_BATCH if on_gpu else CPU_MAX_BATCH)
    return RunPlan(workers, threads, max_batch)


def _session(
    model: str | Path | bytes, config: DetectorConfig, providers: list[str], threads: int
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # Spinning worker threads starve the decode threads on small boxes (seen on 2 cores: decoded
    # FPS fell from 25 to 20-30 % below the source); sleeping costs little at batch granularity.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        sess_options=options,
        providers=[(ORT_NAMES[p], provider_options(p, config)) for p in providers],
    )


def create_session(
    model: str | Path | bytes, config: DetectorConfig, label: str = "model"
) -> tuple[ort.InferenceSession, str, RunPlan]:
    """A session on the first usable provider, threaded per `run_plan`; returns it, our short
    provider name and the plan for the provider that really runs."""
    wanted = requested_providers(config)
    if any(p in ("cuda", "tensorrt") for p in wanted):
        _preload_gpu_libraries()
    usable = usable_providers(config)
    missing = [p for p in wanted if p not in usable]
    if config.tensorrt.enabled and "tensorrt" in usable:
        Path(config.tensorrt.engine_cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
    threads = run_plan(config, usable[0]).threads
    session = _session(model, config, usable, threads)
    active = SHORT_NAMES.get(session.get_providers()[0], session.get_providers()[0])
    plan = run_plan(config, active)
    if plan.threads != threads:  # a GPU failed: thread the CPU as planned
        session = _session(model, config, ["cpu"], plan.threads)
    how = f"{plan.workers} batch(es) at once, {plan.threads or 'ORT default'} thread(s) each"
    if active == wanted[0]:
        log.info("ONNX Runtime runs %s on provider %s (%s)", label, active, how)
    else:
        why = (
            f"{', '.join(missing)} not available in this onnxruntime build"
            if missing
            else f"{wanted[0]} failed to initialise, see ONNX Runtime's error above"
        )
        if active == "cpu" and "cuda" in missing:
            why += "; install the 'gpu' extra for CUDA"
        log.info("ONNX Runtime runs %s on provider %s (%s; fallback: %s)", label, active, how, why)
    return session, active, plan
