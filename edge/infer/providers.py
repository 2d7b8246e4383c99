"""ONNX Runtime session creation: the configured providers, in order, with a CPU fallback.

Exactly one INFO line says which provider ended up running the model, and why when it is not the
first one asked for, because "it silently ran on the CPU" is the classic deployment surprise.
"""

from __future__ import annotations

import logging
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
    names = [p for p in config.providers if p != "tensorrt" or config.tensorrt.enabled]
    if config.tensorrt.enabled and "tensorrt" not in names:
        names.insert(0, "tensorrt")
    if "cpu" not in names:
        names.append("cpu")
    return names


def _preload_gpu_libraries() -> None:
    """onnxruntime-gpu finds the NVIDIA pip libraries only after `preload_dlls` (1.21+)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # a missing library only means no GPU here
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def create_session(
    model: str | Path | bytes, config: DetectorConfig, label: str = "model"
) -> tuple[ort.InferenceSession, str]:
    """A session on the first usable provider; returns it and our short provider name."""
    wanted = requested_providers(config)
    if any(p in ("cuda", "tensorrt") for p in wanted):
        _preload_gpu_libraries()
    available = set(ort.get_available_providers())
    usable = [p for p in wanted if ORT_NAMES[p] in available]
    missing = [p for p in wanted if ORT_NAMES[p] not in available]
    if config.tensorrt.enabled and "tensorrt" in usable:
        Path(config.tensorrt.engine_cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if config.threads:
        options.intra_op_num_threads = config.threads
    # Spinning worker threads starve the decode threads on small boxes (seen on 2 cores: decoded
    # FPS fell from 25 to 20-30 % below the source); sleeping costs little at batch granularity.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        sess_options=options,
        providers=[(ORT_NAMES[p], provider_options(p, config)) for p in usable],
    )
    active = SHORT_NAMES.get(session.get_providers()[0], session.get_providers()[0])
    if active == wanted[0]:
        log.info("ONNX Runtime runs %s on provider %s", label, active)
    else:
        why = (
            f"{', '.join(missing)} not available in this onnxruntime build"
            if missing
            else f"{wanted[0]} failed to initialise"
        )
        log.info(
            "ONNX Runtime runs %s on provider %s (fallback: %s; install the 'gpu' extra for CUDA)",
            label,
            active,
            why,
        )
    return session, active
