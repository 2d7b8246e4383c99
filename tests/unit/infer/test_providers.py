from __future__ import annotations

from pathlib import Path

from edge.config import DetectorConfig
from edge.infer.providers import provider_options, requested_providers


def test_cuda_options_are_the_original_apps() -> None:
    opts = provider_options("cuda", DetectorConfig())
    assert opts == {
        "device_id": 0,
        "arena_extend_strategy": "kNextPowerOfTwo",
        "gpu_mem_limit": 2 * 1024**3,
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "do_copy_in_default_stream": True,
    }


def test_tensorrt_only_when_enabled_and_cpu_always_last(tmp_path: Path) -> None:
    assert requested_providers(DetectorConfig()) == ["cuda", "cpu"]
    assert requested_providers(DetectorConfig(providers=["tensorrt", "cuda"])) == ["cuda", "cpu"]
    cfg = DetectorConfig(
        providers=["cuda"], tensorrt={"enabled": True, "engine_cache_dir": tmp_path / "trt"}
    )
    assert requested_providers(cfg) == ["tensorrt", "cuda", "cpu"]
    trt = provider_options("tensorrt", cfg)
    assert trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt") and trt["trt_fp16_enable"] is True
