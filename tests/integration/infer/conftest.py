"""Shared pieces of the detector's real-model tests.

The reference here is written independently of `edge.infer`: its own letterbox (via
`Frame.to_bgr` at the scaled size), its own ORT session on the untouched YOLOX file, its own grid
decode built with plain loops, and a textbook greedy per-class NMS loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.assets import asset
from edge.testing import box_iou
from edge.types import Frame

YOLOX = asset("models", "yolox_nano.onnx")
VEHICLES = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}
SIZE = 416


def read_clip(name: str, count: int, step: int = 1) -> list[Frame]:
    """`count` frames of a shared clip, every `step`-th one, decoded with PyAV directly."""
    out: list[Frame] = []
    with av.open(str(asset("video", name))) as container:
        for i, image in enumerate(container.decode(video=0)):
            if i % step == 0:
                out.append(Frame(name, i, float(image.time), 0.0, image))
            if len(out) == count:
                break
    return out


@functools.lru_cache(maxsize=8)
def reference_grid(height: int = SIZE, width: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    cells, strides = [], []
    for stride in (8, 16, 32):
        for y in range(height // stride):
            for x in range(width // stride):
                cells.append((x, y))
                strides.append(stride)
    return np.array(cells, dtype=np.float64), np.array(strides, dtype=np.float64)


def any_size_session(path: Path) -> ort.InferenceSession:
    """The untouched YOLOX file with its input's height and width declared free (and nothing
    else declared), so that it runs pictures of other sizes than 416²."""
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    for dim in model.graph.output[0].type.tensor_type.shape.dim:
        dim.dim_param = "d"
    del model.graph.value_info[:]
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


class Reference:
    """YOLOX decode + NMS the long way, for one frame at a time."""

    def __init__(self, conf: float = 0.25, iou: float = 0.5, max_det: int = 30) -> None:
        self.session = ort.InferenceSession(str(YOLOX), providers=["CPUExecutionProvider"])
        self.any_size = any_size_session(YOLOX)
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def __call__(
        self, frame: Frame, rgb_model: bool = False, rect: bool = False
    ) -> list[tuple[list[float], int, float]]:
        """rgb_model: the frame is converted to RGB (swscale's RGB and BGR scalers round
        differently), letterboxed centred as YOLOv5/v8 do, then flipped back for YOLOX.
        rect: the canvas is only as large as the next multiples of 32 of the resized picture."""
        w, h = frame.width, frame.height
        r = min(SIZE / w, SIZE / h)
        nw, nh = round(w * r), round(h * r)
        cw, ch = (math.ceil(nw / 32) * 32, math.ceil(nh / 32) * 32) if rect else (SIZE, SIZE)
        px, py = ((cw - nw) // 2, (ch - nh) // 2) if rgb_model else (0, 0)
        canvas = np.full((ch, cw, 3), 114, dtype=np.uint8)
        if rgb_model:
            rgb = frame.image.reformat(width=nw, height=nh, format="rgb24").to_ndarray()
            canvas[py : py + nh, px : px + nw] = rgb[:, :, ::-1]
        else:
            canvas[py : py + nh, px : px + nw] = frame.to_bgr(nw, nh)
        x = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        session = self.any_size if rect else self.session
        raw = session.run(None, {"images": x})[0][0].astype(np.float64)
        grid, strides = reference_grid(ch, cw)
        cands = []
        for k in range(raw.shape[0]):
            row = raw[k]
            cls = int(np.argmax(row[5:]))
            score = row[4] * row[5 + cls]
            if score <= self.conf or cls not in VEHICLES:
                continue
            s = strides[k]
            cx, cy = (row[0] + grid[k, 0]) * s, (row[1] + grid[k, 1]) * s
            bw, bh = math.exp(row[2]) * s, math.exp(row[3]) * s
            box = [(cx - bw / 2 - px) / r, (cy - bh / 2 - py) / r]
            box += [(cx + bw / 2 - px) / r, (cy + bh / 2 - py) / r]
            box = [min(max(v, 0.0), float(w if i % 2 == 0 else h)) for i, v in enumerate(box)]
            cands.append(
                (box, cls, float(score), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
            )
        cands.sort(key=lambda c: -c[2])
        kept: list[tuple[list[float], int, float, list[float]]] = []
        for c in cands:
            if len(kept) == self.max_det:
                break
            if all(k[1] != c[1] or box_iou(k[3], c[3]) <= self.iou for k in kept):
                kept.append(c)
        return [(box, cls, score) for box, cls, score, _ in kept]


def agree(got: object, want: object, tag: str) -> None:
    """Same number of boxes; each reference box has a partner: IoU ≥ 0.99, class, score ± 1e-3."""
    got, want = as_tuples(got), as_tuples(want)
    assert len(got) == len(want), f"{tag}: {len(got)} detections, reference has {len(want)}"
    free = list(range(len(got)))
    for box, cls, score in want:
        best = max(free, key=lambda j: box_iou(got[j][0], box), default=None)
        assert best is not None
        g = got[best]
        assert box_iou(g[0], box) >= 0.99, f"{tag}: box {g[0]} vs {box}"
        assert g[1] == cls, f"{tag}: class {g[1]} vs {cls}"
        assert abs(g[2] - score) <= 1e-3, f"{tag}: score {g[2]} vs {score}"
        free.remove(best)


def as_tuples(dets) -> list[tuple[list[float], int, float]]:
    """Detections (or an already converted list) as (box, class id, score) tuples."""
    if isinstance(dets, list):
        return dets
    return [
        (box.tolist(), int(c), float(s))
        for box, c, s in zip(dets.xyxy, dets.class_id, dets.score, strict=True)
    ]


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="session")
def clip_frames() -> Callable[..., list[Frame]]:
    return read_clip


@pytest.fixture(scope="session")
def assert_agree() -> Callable[[object, object, str], None]:
    return agree


def bake_decode(src: Path, dst: Path, layout: str) -> Path:
    """YOLOX with its grid decode (and an RGB 0-1 → BGR 0-255 input adapter) inside the graph.

    layout "yolov5": output N×A×(5+C) decoded. layout "yolov8": N×(4+C)×A, class × obj, no obj.
    """
    model = onnx.load(str(src))
    g = model.graph
    raw_name = g.output[0].name
    grid, strides = reference_grid()
    inits = [
        numpy_helper.from_array(grid.astype(np.float32), "ref_grid"),
        numpy_helper.from_array(strides.astype(np.float32)[:, None], "ref_stride"),
        numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), "ref_bgr"),
        numpy_helper.from_array(np.array(255.0, dtype=np.float32), "ref_255"),
    ]
    for name, vals in {"s0": [0], "s2": [2], "s4": [4], "s5": [5], "s85": [85], "ax": [2]}.items():
        inits.append(numpy_helper.from_array(np.array(vals, dtype=np.int64), f"ref_{name}"))
    g.initializer.extend(inits)
    # Input adapter: the new graph input is RGB 0-1; the YOLOX body still sees BGR 0-255.
    old_in = g.input[0].name
    g.input[0].name = "images_rgb"
    pre = [
        helper.make_node("Gather", ["images_rgb", "ref_bgr"], ["ref_bgr_in"], axis=1),
        helper.make_node("Mul", ["ref_bgr_in", "ref_255"], [old_in]),
    ]
    sl = lambda a, b, out: helper.make_node(  # noqa: E731
        "Slice", [raw_name, f"ref_{a}", f"ref_{b}", "ref_ax"], [out]
    )
    post = [
        sl("s0", "s2", "ref_xy"), sl("s2", "s4", "ref_wh"), sl("s4", "s85", "ref_rest"),
        helper.make_node("Add", ["ref_xy", "ref_grid"], ["ref_xy_g"]),
        helper.make_node("Mul", ["ref_xy_g", "ref_stride"], ["ref_xy_px"]),
        helper.make_node("Exp", ["ref_wh"], ["ref_wh_e"]),
        helper.make_node("Mul", ["ref_wh_e", "ref_stride"], ["ref_wh_px"]),
    ]  # fmt: skip
    if layout == "yolov5":
        post.append(
            helper.make_node("Concat", ["ref_xy_px", "ref_wh_px", "ref_rest"], ["dets"], axis=2)
        )
        out_shape = [1, 3549, 85]
    else:
        post += [
            sl("s4", "s5", "ref_obj"), sl("s5", "s85", "ref_cls"),
            helper.make_node("Mul", ["ref_cls", "ref_obj"], ["ref_cls_obj"]),
            helper.make_node(
                "Concat", ["ref_xy_px", "ref_wh_px", "ref_cls_obj"], ["ref_v8"], axis=2
            ),
            helper.make_node("Transpose", ["ref_v8"], ["dets"], perm=[0, 2, 1]),
        ]  # fmt: skip
        out_shape = [1, 84, 3549]
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("dets", TensorProto.FLOAT, out_shape))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="session")
def baked_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def make(layout: str) -> Path:
        if layout not in made:
            made[layout] = bake_decode(
                YOLOX, tmp_path_factory.mktemp(layout) / f"{layout}.onnx", layout
            )
        return made[layout]

    return make
