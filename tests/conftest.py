"""Shared fixtures: the real assets beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.assets import assets_dir


@pytest.fixture(scope="session")
def assets() -> Path:
    path = assets_dir()
    assert (path / "models" / "yolox_nano.onnx").is_file(), f"shared assets missing at {path}"
    return path


@pytest.fixture(scope="session")
def model_path(assets: Path) -> Path:
    return assets / "models" / "yolox_nano.onnx"


@pytest.fixture(scope="session")
def dynamic_model(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared YOLOX model made batch-dynamic by `edge model prepare`'s code, verified."""
    from edge.infer.prepare import prepare_model

    out = tmp_path_factory.mktemp("models") / "yolox_nano_dyn.onnx"
    _, check = prepare_model(model_path, out)
    assert check.ok, check.describe()
    return out
