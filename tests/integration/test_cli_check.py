"""`edge check` as a newcomer runs it: a real subprocess, exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.testing import run_edge

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_passes() -> None:
    result = run_edge("check", str(REPO / "configs" / "cameras.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "model yolox_nano.onnx: yolox, 80 classes" in result.stdout


def test_invalid_config_exits_2_naming_each_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {"id": "a", "url": "rtsp://u:topsecret@h/x"},
                    {"id": "a", "url": "nope://x", "colour": "red"},
                ],
                "detector": {"model": str(tmp_path / "missing.onnx"), "max_det": 0},
            }
        )
    )
    result = run_edge("check", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    for expected in (
        "cameras: duplicate camera ids: a",
        "cameras[1](a).url: unsupported scheme 'nope'",
        "cameras[1](a).colour: unknown key",
        f"detector.model: file not found: {tmp_path / 'missing.onnx'}",
        "detector.max_det: Input should be greater than or equal to 1",
    ):
        assert expected in lines, result.stderr
    assert "topsecret" not in result.stderr + result.stdout


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_edge("check", str(tmp_path / "none.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_fault_corrupt_model_in_a_valid_config_exits_2_naming_it(tmp_path: Path) -> None:
    """The config is valid, the file it names is no model: `edge run` would refuse it, so
    `edge check` does (the whole fault matrix: tests/integration/infer/test_bad_model.py)."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07" + bytes(range(256)) * 8)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"cameras": [{"id": "a", "url": "rtsp://h/x"}], "detector": {"model": str(model)}}
        )
    )
    result = run_edge("check", str(cfg))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"detector.model: {model}: not an ONNX model, or a truncated one (Wire format was corrupt)",
        f"{cfg}: 1 problem(s)",
    ]
    assert result.stdout == ""


def test_a_line_outside_a_file_camera_s_frame_is_a_warning(tmp_path: Path, assets: Path) -> None:
    """The highway clip is 320x240 (read from the file's header): a line reaching x=400 is
    warned about, one inside is not, and an RTSP camera is not opened; the config still passes."""
    clip = str(assets / "video" / "traffic_highway_cctv.mp4")
    inside = {"name": "inside", "points": [[0, 150], [320, 150]]}
    outside = {"name": "wide", "points": [[0, 150], [400, 150]]}
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {"id": "clip", "url": clip, "lines": [inside, outside]},
                    {"id": "cam", "url": "rtsp://127.0.0.1:9/x", "lines": [outside]},
                ]
            }
        )
    )
    result = run_edge("check", str(cfg))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: cameras[0](clip).lines[1](wide): point (400, 150) lies outside the 320x240 "
        "frame the camera reports"
    ], result.stderr
