"""A model file that cannot serve as the detector, at every entry point: one line that names the
file and the reason, a non-zero exit, no traceback, and nothing written (no prepared copy, no
"edge serving"). The bad files are made here: random bytes, half of the real model, small graphs
built with onnx.helper that are no detector or not one edge can feed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edge.assets import asset
from edge.config import COCO_VEHICLES, DetectorConfig
from edge.infer.detector import Detector
from edge.infer.model_check import ModelError, check_model
from edge.infer.prepare import SOURCE_KEY, ensure_dynamic
from edge.metrics import EdgeMetrics
from edge.testing import run_edge

YOLOX = asset("models", "yolox_nano.onnx")
CLIP = asset("video", "car-detection.mp4")


def tiny_yolo(
    path: Path, *, channels: int = 3, names: tuple[str, ...] = ("boat", "plane"), op: str = "Conv"
) -> Path:
    """A YOLOv8-layout head, 1×C×64×64 → stride-8 Conv → 1×(4+k)×64, with Ultralytics' `names`
    metadata. `op` other than Conv puts an operator from an unknown domain in the Conv's place."""
    out = 4 + len(names)
    weights = np.random.default_rng(0).normal(size=(out, channels, 8, 8)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weights * 0.01, "w"),
        numpy_helper.from_array(np.array([1, out, -1], dtype=np.int64), "shape"),
    ]
    first = (
        helper.make_node("Conv", ["images", "w"], ["conv"], strides=[8, 8])
        if op == "Conv"
        else helper.make_node(op, ["images", "w"], ["conv"], domain="example.custom")
    )
    graph = helper.make_graph(
        [first, helper.make_node("Reshape", ["conv", "shape"], ["output0"], name="head")],
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, out, 64])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", 13)]
    if op != "Conv":
        opsets.append(helper.make_opsetid("example.custom", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    helper.set_model_props(model, {"names": repr(dict(enumerate(names)))})
    onnx.save(model, str(path))
    return path


def classifier(path: Path) -> Path:
    """A valid ONNX graph that is no detector: 1×3×64×64 → 1×10 scores. Its batch is frozen at
    1, so a cache that trusted it would write a 'prepared' copy of it."""
    w = numpy_helper.from_array(np.full((10, 3, 1, 1), 0.1, np.float32), "w")
    flat = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("GlobalAveragePool", ["c"], ["p"]),
            helper.make_node("Reshape", ["p", "flat"], ["scores"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])],
        initializer=[w, flat],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


FAULTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda p: p, "file not found"),
    "empty": (lambda p: _write(p, b""), "empty file, not an ONNX model"),
    "directory": (_directory, "is a directory, not an ONNX file"),
    "corrupt": (
        lambda p: _write(p, np.random.default_rng(0).bytes(4096)),
        "not an ONNX model, or a truncated one",
    ),
    "truncated": (
        lambda p: _write(p, YOLOX.read_bytes()[: YOLOX.stat().st_size // 2]),
        "not an ONNX model, or a truncated one",
    ),
    "not_a_detector": (
        classifier,
        "not a YOLO detector that edge can run: output 'scores' is 1×10; a YOLO output is",
    ),
    "one_channel": (
        lambda p: tiny_yolo(p, channels=1),
        "not a YOLO detector that edge can run: input 'images' takes 1 channel(s)",
    ),
    "unknown_operator": (
        lambda p: tiny_yolo(p, op="Blur"),
        "ONNX Runtime cannot load it: ",
    ),
    "lacks_classes": (
        tiny_yolo,
        "has no class 'car', 'motorcycle', 'bus', 'truck' (its 2 classes: boat, plane)",
    ),
}
OPENABLE = [k for k in FAULTS if k not in ("missing", "directory")]
"""The faults that pass the config's own check (the file exists) and reach the model check."""


def make_fault(kind: str, folder: Path) -> tuple[Path, str]:
    make, reason = FAULTS[kind]
    return make(folder / f"{kind}.onnx"), reason


def config_file(folder: Path, model: Path) -> Path:
    path = folder / "cameras.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"id": "a", "url": "rtsp://127.0.0.1:1/x"}],
                "server": {"port": 0},
                "events": {"jsonl": None},
                "detector": {"model": str(model), "prepared_dir": str(folder / "prepared")},
            }
        )
    )
    return path


def _without_root_file_access() -> None:
    """In the child before exec: root without the capabilities that bypass file permissions,
    so that a mode-000 file is unreadable to it as to anyone (CI may run as root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def edge_unprivileged(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`run_edge`, but where file permissions apply even to root."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_without_root_file_access if os.geteuid() == 0 else None,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], line: str, code: int) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    assert line in result.stderr.splitlines(), out


# -- the check itself, in process ------------------------------------------------------------


def test_the_hand_built_detector_is_accepted(tmp_path: Path) -> None:
    """The control for the faults built from it: with its own classes it is a valid detector."""
    layout = check_model(tiny_yolo(tmp_path / "ok.onnx"), classes=["plane"])
    assert (layout.family, layout.input_size) == ("yolov8", 64)
    assert layout.class_names == ("boat", "plane")


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_check_model_names_the_file_and_the_reason(kind: str, tmp_path: Path) -> None:
    path, reason = make_fault(kind, tmp_path)
    with pytest.raises(ModelError) as caught:
        check_model(path, classes=COCO_VEHICLES)
    assert str(caught.value).startswith(f"{path}: {reason}"), caught.value
    assert "\n" not in str(caught.value)
    assert caught.value.field == ("classes" if kind == "lacks_classes" else "model")


@pytest.mark.parametrize("kind", OPENABLE)
def test_fault_detector_load_raises_the_same_one_line(kind: str, tmp_path: Path) -> None:
    """What `edge detect`, `edge analyze` and the service's own load see."""
    path, reason = make_fault(kind, tmp_path)
    with pytest.raises(ModelError) as caught:
        Detector(DetectorConfig(model=path, letterbox="square", providers=["cpu"]), EdgeMetrics())
    assert str(caught.value).startswith(f"{path}: {reason}"), caught.value


def test_fault_unreadable_model_is_reported_by_check(tmp_path: Path) -> None:
    model = tmp_path / "unreadable.onnx"
    model.write_bytes(YOLOX.read_bytes())
    model.chmod(0)
    os.chmod(tmp_path, 0o755)  # the folder may be entered, only the file not read
    result = edge_unprivileged("check", config_file(tmp_path, model))
    assert_one_line(result, f"detector.model: {model}: cannot read it (Permission denied)", 2)


# -- the commands, as a user runs them -------------------------------------------------------


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_edge_check_exits_2_with_one_line(kind: str, tmp_path: Path) -> None:
    path, reason = make_fault(kind, tmp_path)
    config = config_file(tmp_path, path)
    result = run_edge("check", config)
    field = "classes" if kind == "lacks_classes" else "model"
    if kind == "missing":  # the config's own check says it, as for any other field
        reason_line = f"detector.model: file not found: {path}"
    else:
        reason_line = next(
            line for line in result.stderr.splitlines() if line.startswith(f"detector.{field}:")
        )
        assert reason_line.startswith(f"detector.{field}: {path}: {reason}"), result.stderr
    assert_one_line(result, reason_line, 2)
    assert f"{config}: 1 problem(s)" in result.stderr
    assert "OK" not in result.stdout


@pytest.mark.parametrize("kind", ["not_a_detector", "truncated", "unknown_operator"])
def test_fault_edge_run_refuses_before_serving(kind: str, tmp_path: Path) -> None:
    path, reason = make_fault(kind, tmp_path)
    result = run_edge("run", "--config", config_file(tmp_path, path))
    line = next((x for x in result.stderr.splitlines() if x.startswith("edge: ")), "")
    assert line.startswith(f"edge: detector.model: {path}: {reason}"), result.stderr
    assert_one_line(result, line, 1)
    assert "edge serving" not in result.stderr
    assert not (tmp_path / "prepared").exists()  # nothing cached from a file that is no model


@pytest.mark.parametrize("kind", ["truncated", "not_a_detector"])
def test_fault_detect_analyze_and_prepare_say_one_line(kind: str, tmp_path: Path) -> None:
    path, reason = make_fault(kind, tmp_path)
    detect = run_edge("detect", CLIP, "--model", path, "--max-frames", "1")
    assert detect.returncode == 2 and "Traceback" not in detect.stderr, detect.stderr
    assert detect.stderr.splitlines()[-1].startswith(f"edge detect: {path}: {reason}")
    analyze = run_edge("analyze", CLIP, "--config", config_file(tmp_path, path), "--out",
                   tmp_path / "study", "--max-frames", "1")  # fmt: skip
    assert analyze.returncode == 1 and "Traceback" not in analyze.stderr, analyze.stderr
    assert analyze.stderr.splitlines()[-1].startswith(f"edge analyze: {path}: {reason}")
    out = tmp_path / "out.onnx"
    prepare = run_edge("model", "prepare", path, out)
    assert prepare.returncode == 2 and "Traceback" not in prepare.stderr, prepare.stderr
    assert prepare.stderr.splitlines()[-1].startswith(f"edge model prepare: {path}: {reason}")
    assert not out.exists()


# -- the prepared-model cache ----------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch-dynamic copy of the shared model, made once by `ensure_dynamic`."""
    path = ensure_dynamic(YOLOX, tmp_path_factory.mktemp("cache"))
    assert path != YOLOX and not check_model(path).frozen_batch
    return path


def test_prepared_copy_is_reused_without_rewriting(
    prepared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = prepared.stat()
    with caplog.at_level(logging.INFO, logger="edge.infer.prepare"):
        again = ensure_dynamic(YOLOX, prepared.parent)
    after = again.stat()
    assert again == prepared
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in prepared.parent.iterdir()] == [prepared.name]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"using {prepared}") for m in messages), messages
    assert not any("wrote" in m or "made" in m for m in messages), messages


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _foreign(path: Path) -> None:
    """A valid dynamic model, but one whose metadata says it was made from another file."""
    model = onnx.load(str(path))
    helper.set_model_props(model, {SOURCE_KEY: "0" * 64})
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_truncate, "not an ONNX model, or a truncated one"),
        (_foreign, "not made from this model"),
        (lambda p: p.write_bytes(YOLOX.read_bytes()), "its batch is still frozen"),
    ],
    ids=["truncated", "foreign", "frozen"],
)
def test_fault_spoilt_prepared_copy_is_made_again(
    spoil: Callable[[Path], None],
    reason: str,
    prepared: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cached = tmp_path / prepared.name
    cached.write_bytes(prepared.read_bytes())
    spoil(cached)
    with caplog.at_level(logging.INFO, logger="edge.infer.prepare"):
        again = ensure_dynamic(YOLOX, tmp_path)
    assert again == cached
    warning = f"prepared model {cached} is unusable ({reason}"
    assert any(r.getMessage().startswith(warning) for r in caplog.records), caplog.text
    assert not check_model(cached).frozen_batch
    meta = {p.key: p.value for p in onnx.load(str(cached)).metadata_props}
    assert meta[SOURCE_KEY] != "0" * 64 and len(meta[SOURCE_KEY]) == 64
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary file left


def test_fault_unwritable_cache_names_the_copy_and_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError) as caught:
        ensure_dynamic(YOLOX, blocker / "prepared")
    assert str(caught.value).startswith(f"{blocker / 'prepared'}/yolox_nano.dynamic-")
    assert str(caught.value).endswith(": cannot write its batch-dynamic copy (Not a directory)")
    assert caught.value.field == "prepared_dir"


def test_fault_batch_repair_failure_is_one_line_with_the_way_out(tmp_path: Path) -> None:
    """A frozen detector whose Reshape takes a literal 0 (`allowzero`) cannot be made dynamic."""
    model = onnx.load(str(tiny_yolo(tmp_path / "allowzero.onnx")))
    model.opset_import[0].version = 14
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    reshape.attribute.append(helper.make_attribute("allowzero", 1))
    onnx.save(model, str(tmp_path / "allowzero.onnx"))
    assert check_model(tmp_path / "allowzero.onnx").frozen_batch  # a valid detector otherwise
    with pytest.raises(ModelError) as caught:
        ensure_dynamic(tmp_path / "allowzero.onnx", tmp_path / "prepared")
    assert str(caught.value) == (
        f"{tmp_path / 'allowzero.onnx'}: automatic batch repair failed: Reshape 'head' has "
        "allowzero=1: a 0 would not copy the batch; set detector.max_batch: 1 to run it one "
        "frame at a time"
    )
    assert not (tmp_path / "prepared").exists()
