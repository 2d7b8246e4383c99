"""Shared fixtures: the real assets beside the checkout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import redact
from edge.assets import assets_dir


@pytest.fixture(scope="session", autouse=True)
def _model_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prepared model copies go to a cache of this test session (every `edge` process the tests
    start inherits it), never into the user's own cache or the checkout."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def _secrets_stay_in_their_test() -> Iterator[None]:
    """A secret registered for redaction masks that string for the rest of the process; a test's
    camera user or password must not blank out words in the tests that run after it."""
    with redact._lock:
        saved = (set(redact._SECRETS), redact._secret_pattern)
    yield
    with redact._lock:
        redact._SECRETS.clear()
        redact._SECRETS.update(saved[0])
        redact._secret_pattern = saved[1]


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
