"""The assets shipped in the repository are the ones their notice describes, and stay small."""

from __future__ import annotations

import hashlib
import re

from edge.assets import REPO_ROOT, asset, assets_dir

NOTICE = REPO_ROOT / "assets" / "README.md"


def test_every_shipped_file_matches_its_notice() -> None:
    listed = dict(re.findall(r"^\| `([\w/.-]+)` \|.*\| `([0-9a-f]{64})` \|$", NOTICE.read_text(),
                             re.MULTILINE))  # fmt: skip
    folders = [assets_dir() / "video", assets_dir() / "plates"]
    shipped = {
        str(p.relative_to(assets_dir())): p
        for p in sorted(f for folder in folders for f in folder.iterdir())
    }
    shipped["models/yolox_nano.onnx"] = asset("models", "yolox_nano.onnx")
    assert set(listed) == set(shipped)
    for name, path in shipped.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], name


def test_the_shipped_assets_stay_under_10_mb() -> None:
    folders = [REPO_ROOT / "assets" / "video", REPO_ROOT / "assets" / "plates"]
    total = sum(p.stat().st_size for folder in folders for p in folder.iterdir())
    total += (REPO_ROOT / "models" / "yolox_nano.onnx").stat().st_size
    assert total < 10_000_000, total
