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
