"""`edge plate IMAGE...` as an installer runs it, and an OCR backend that is not installed
refused when the service starts (one line with the install command, never mid-run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.assets import asset
from edge.testing import free_port, run_edge

EASYOCR_INSTALLED = all(importlib.util.find_spec(m) for m in ("easyocr", "easyocr_en_models"))


def lines(out: str) -> dict[str, list[str]]:
    return {Path(line.split("\t")[0]).name: line.split("\t")[1:] for line in out.splitlines()}


def test_reads_both_shared_photos_exactly() -> None:
    ca, cz = asset("plates", "plate_ca_4XXF538.jpg"), asset("plates", "plate_cz_5AU5341.jpg")
    r = run_edge("plate", ca, cz, timeout=180)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    assert got[ca.name][0] == "4XXF538" and float(got[ca.name][1]) > 0.9
    assert got[cz.name][0] == "5AU5341" and float(got[cz.name][1]) > 0.9


def test_no_plate_read_exits_1_and_says_so(tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, dtype=np.uint8))
    r = run_edge("plate", blank, timeout=120)
    assert r.returncode == 1
    assert lines(r.stdout)[blank.name][:2] == ["-", "no plate read"]


@pytest.mark.parametrize("bad", ["missing.jpg", "notes.txt"])
def test_a_bad_path_is_one_line(tmp_path: Path, bad: str) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    r = run_edge("plate", tmp_path / bad, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("edge plate: ") and bad in r.stderr


@pytest.mark.skipif(EASYOCR_INSTALLED, reason="the easyocr extra is installed here")
def test_easyocr_without_its_extra_is_refused_at_start(tmp_path: Path) -> None:
    """`edge run` with `ocr.backend: easyocr` stops before serving, with the install command;
    `edge plate --backend easyocr` and `edge check` say the same."""
    config = {
        "cameras": [{"id": "gate", "url": str(asset("video", "car-detection.mp4"))}],
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ocr": {"enabled": True, "backend": "easyocr"},
        "server": {"port": free_port()},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    r = run_edge("run", "--config", tmp_path / "cameras.yaml", timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "ocr.backend easyocr" in last and "pip install 'edge[easyocr]'" in last, r.stderr
    assert "Traceback" not in r.stderr
    p = run_edge("plate", "--backend", "easyocr", asset("plates", "plate_cz_5AU5341.jpg"))
    assert p.returncode == 1 and "pip install 'edge[easyocr]'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    c = run_edge("check", tmp_path / "cameras.yaml")
    assert c.returncode == 2 and "pip install 'edge[easyocr]'" in c.stderr, c.stderr
