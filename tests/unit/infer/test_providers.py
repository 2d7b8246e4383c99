from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.providers import (
    RunPlan,
    cpu_cores,
    create_session,
    provider_options,
    requested_providers,
    run_plan,
)


def test_cuda_options_are_the_original_apps() -> None:
    opts = provider_options("cuda", DetectorConfig())
    assert opts == {
        "device_id": 0,
        "arena_extend_strategy": "kNextPowerOfTwo",
        "gpu_mem_limit": 2 * 1024**3,
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "do_copy_in_default_stream": True,
        "use_tf32": 0,  # ours: TF32 moved scores by 1e-2 on an H200; off, CUDA matches the CPU
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


@pytest.mark.parametrize(
    ("provider", "cores", "settings", "expected"),
    [
        ("cpu", 2, {}, RunPlan(2, 1, 2)),  # one small single-threaded batch per core
        ("cpu", 16, {}, RunPlan(8, 2, 2)),  # at most 8 workers; the cores shared out
        ("cpu", 1, {}, RunPlan(1, 1, 2)),
        ("cuda", 16, {}, RunPlan(2, 0, 8)),  # a GPU: two big batches at once, ORT's threads
        ("tensorrt", 2, {}, RunPlan(2, 0, 8)),
        ("cpu", 2, {"workers": 1, "max_batch": 8}, RunPlan(1, 2, 8)),  # the one-worker design
        ("cpu", 4, {"threads": 3}, RunPlan(4, 3, 2)),
        ("cuda", 4, {"workers": 2, "threads": 1, "max_batch": 4}, RunPlan(2, 1, 4)),
    ],
)
def test_run_plan(provider: str, cores: int, settings: dict, expected: RunPlan) -> None:
    assert run_plan(DetectorConfig(**settings), provider, cores=cores) == expected


def test_session_is_threaded_as_planned(caplog: pytest.LogCaptureFixture) -> None:
    """The plan reaches ONNX Runtime and the one provider log line names it."""
    caplog.set_level(logging.INFO, logger="edge.infer.providers")
    model = asset("models", "yolox_nano.onnx")
    config = DetectorConfig(workers=2, providers=["cpu"])  # the CPU plan, also where a GPU is
    session, provider, plan = create_session(model, config)
    assert provider == "cpu" and plan == run_plan(config, "cpu")
    assert session.get_session_options().intra_op_num_threads == max(1, cpu_cores() // 2)
    lines = [r.getMessage() for r in caplog.records if "ONNX Runtime runs" in r.getMessage()]
    assert len(lines) == 1 and "2 batch(es) at once" in lines[0], lines
