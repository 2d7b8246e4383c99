"""`edge detect` and `edge model prepare` run as a user runs them, checked independently."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import random
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np
import onnxruntime as ort

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.metrics import EdgeMetrics
from edge.testing import box_iou, free_port, run_edge
from edge.types import Frame

OVERPASS = asset("video", "traffic_highway_overpass.mp4")  # used by no other test
YOLOX = asset("models", "yolox_nano.onnx")


def test_detect_writes_jsonl_that_agrees_with_reference(
    tmp_path: Path, dynamic_model: Path, reference, assert_agree
) -> None:
    out = tmp_path / "dets.jsonl"
    run = run_edge("detect", OVERPASS, "--model", dynamic_model, "--out", out, "--max-frames", "40")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(40))
    with av.open(str(OVERPASS)) as container:
        images = [im for _, im in zip(range(40), container.decode(video=0), strict=False)]
    total = 0
    for record, image in zip(lines, images, strict=True):
        assert abs(record["pts"] - float(image.time)) < 1e-6
        got = [(d["box"], d["class_id"], d["score"]) for d in record["detections"]]
        assert all(
            d["class"] in {"car", "motorcycle", "bus", "truck"} for d in record["detections"]
        )
        want = reference(Frame("x", record["frame"], None, 0.0, image))
        assert_agree(got, want, f"frame {record['frame']}")
        for box in [g[0] for g in got]:
            assert 0 <= box[0] <= box[2] <= 960 and 0 <= box[1] <= box[3] <= 540
        total += len(got)
    assert total >= 40  # sparse traffic, but vehicles on most frames


def test_detect_letterbox_rect_reproduces_the_service(
    tmp_path: Path, dynamic_model: Path, clip_frames
) -> None:
    """By default `edge detect` is square (the test above); `--letterbox rect` gives what the
    service's default `auto` gives on this model."""
    out = tmp_path / "rect.jsonl"
    run = run_edge("detect", OVERPASS, "--model", dynamic_model, "--out", out, "--max-frames", "12",
               "--letterbox", "rect")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "416 px (rect letterbox)" in run.stderr
    service = Detector(DetectorConfig(model=dynamic_model), EdgeMetrics())
    assert service.rect
    frames = clip_frames("traffic_highway_overpass.mp4", 12)
    for line, dets in zip(out.read_text().splitlines(), service.detect(frames), strict=True):
        got = json.loads(line)["detections"]
        assert len(got) == len(dets)
        for d, box in zip(got, dets.xyxy, strict=True):
            np.testing.assert_allclose(d["box"], box, atol=0.01)


def test_detect_to_stdout_and_bad_input(tmp_path: Path) -> None:
    run = run_edge("detect", OVERPASS, "--max-frames", "2")
    assert run.returncode == 0, run.stderr
    assert [json.loads(x)["frame"] for x in run.stdout.splitlines()] == [0, 1]
    assert "batch dynamic" in run.stderr  # the verified copy of the batch-1 shared model
    missing = run_edge("detect", tmp_path / "nope.mp4")
    assert missing.returncode == 1 and "cannot open" in missing.stderr
    bad_model = run_edge("detect", OVERPASS, "--model", tmp_path / "nope.onnx")
    assert bad_model.returncode == 2 and "detector.model: file not found" in bad_model.stderr


ODD_PASSWORD = "S3cr3t@x/y:z"
"""'@', '/' and ':' in a password: what URL patterns alone get wrong."""


def test_detect_on_a_refused_url_is_one_redacted_line(tmp_path: Path) -> None:
    port = free_port()
    encoded = quote(ODD_PASSWORD, safe="")
    for url in (f"rtsp://admin:{ODD_PASSWORD}@127.0.0.1:{port}/x",
                f"rtsp://admin:{encoded}@127.0.0.1:{port}/x"):  # fmt: skip
        run = run_edge("-v", "detect", url, "--max-frames", "1")
        assert run.returncode == 1, run.stderr
        last = run.stderr.splitlines()[-1]
        assert last.startswith(f"edge detect: cannot open rtsp://admin:***@127.0.0.1:{port}/x: ")
        output = run.stdout + run.stderr
        assert "Traceback" not in output
        for form in (ODD_PASSWORD, encoded, "x/y:z"):
            assert form not in output, output
    refused = run_edge("detect", f"rtsp://admin:{encoded}@127.0.0.1:{port}/x")
    assert refused.stderr.splitlines()[-1].endswith("ConnectionRefusedError: Connection refused")


def test_detect_on_random_bytes_and_prepare_on_a_url_say_what_is_wrong(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    # seeded: now and then fresh random bytes happen to probe as some format FFmpeg can read
    junk.write_bytes(random.Random(14).randbytes(100_000))
    run = run_edge("detect", junk)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"edge detect: cannot open {junk}: InvalidDataError: Invalid data found when processing "
        "input"
    )
    url = f"rtsp://admin:{ODD_PASSWORD}@127.0.0.1:9/x.onnx"
    prep = run_edge("model", "prepare", url, tmp_path / "out.onnx")
    assert prep.returncode == 2 and len(prep.stderr.splitlines()) == 1, prep.stderr
    assert prep.stderr.startswith("edge model prepare: ")
    assert ODD_PASSWORD not in prep.stderr and "Traceback" not in prep.stderr


def test_prepare_fp16_runs_and_roughly_agrees(tmp_path: Path, clip_frames) -> None:
    out = tmp_path / "fp16.onnx"
    run = run_edge("model", "prepare", YOLOX, out, "--fp16")
    assert run.returncode == 0, run.stderr
    assert "verified: batch of 4 equals 4 single runs" in run.stdout
    assert out.stat().st_size < 0.7 * YOLOX.stat().st_size  # weights really are half size
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"  # cast to float, then FP16, in graph
    assert session.get_inputs()[0].shape[0] == "batch"
    assert session.get_outputs()[0].type == "tensor(float)"
    frames: list[Frame] = clip_frames("traffic_highway_cctv.mp4", 4, step=150)
    fp16 = Detector(DetectorConfig(model=out), EdgeMetrics())
    fp32 = Detector(DetectorConfig(model=YOLOX), EdgeMetrics())
    assert fp16.is_dynamic_batch
    big_matched = 0
    for a, b in zip(fp16.detect(frames), fp32.detect(frames), strict=True):
        for box, score in zip(b.xyxy, b.score, strict=True):
            if score < 0.5 or (box[2] - box[0]) * (box[3] - box[1]) < 400:
                continue
            ious = [box_iou(box, other) for other in a.xyxy]
            assert ious and max(ious) > 0.9, f"big detection {box} lost in FP16"
            big_matched += 1
    assert big_matched >= 4


def test_prepare_refuses_same_file_and_missing(tmp_path: Path) -> None:
    assert run_edge("model", "prepare", tmp_path / "x.onnx", tmp_path / "y.onnx").returncode == 2
    copy = tmp_path / "m.onnx"
    copy.write_bytes(YOLOX.read_bytes())
    same = run_edge("model", "prepare", copy, copy)
    assert same.returncode == 1 and "different file" in same.stderr


def test_bad_outputs_and_counts_are_named_in_one_line(tmp_path: Path) -> None:
    clip = asset("video", "car-detection.mp4")
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cases = [
        (("model", "prepare", YOLOX, tmp_path), 2, f"edge model prepare: cannot write {tmp_path}: "
                                                   "Is a directory"),
        (("analyze", clip, "--out", a_file), 2, f"edge analyze: --out {a_file}: a file, not a "
                                                "folder"),
        (("analyze", clip, "--out", tmp_path / "o", "--max-frames", "-3"), 2,
         "edge analyze: error: argument --max-frames: -3 is not a positive number"),
        (("detect", clip, "--max-frames", "0"), 2,
         "edge detect: error: argument --max-frames: 0 is not a positive number"),
    ]  # fmt: skip
    for args, code, line in cases:
        run = run_edge(*args)
        assert (run.returncode, run.stderr.splitlines()[-1]) == (code, line), run.stderr


def test_progress_shows_on_a_terminal_only(tmp_path: Path) -> None:
    """Frames done, frames/s and time left on a terminal (a real pseudo-terminal here); nothing
    of it when stderr is a pipe, so logs and redirected output stay clean."""
    clip = str(asset("video", "car-detection.mp4"))
    args = [sys.executable, "-m", "edge.cli", "analyze", clip, "--out", str(tmp_path / "tty"),
            "--max-frames", "40"]  # fmt: skip
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    with subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower) as proc:
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed its end
            while chunk := os.read(leader, 4096):
                seen += chunk
        assert proc.wait(timeout=120) == 0, seen.decode(errors="replace")
    os.close(leader)
    text = seen.decode(errors="replace")
    assert re.search(r"40/40 \[[0-9:]+<[0-9:]+, +[0-9.]+ ?frame/s\]", text), text[-2000:]
    piped = run_edge("analyze", clip, "--out", tmp_path / "pipe", "--max-frames", "40")
    assert piped.returncode == 0, piped.stderr
    assert "frame/s" not in piped.stderr and "40/40" not in piped.stderr
