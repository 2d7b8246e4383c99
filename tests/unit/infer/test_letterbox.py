from __future__ import annotations

import av
import numpy as np
import pytest

from edge.infer.letterbox import (
    Letterbox,
    LetterboxSpec,
    fit,
    letterbox_bgr,
    letterbox_frame,
    to_source,
)


@pytest.mark.parametrize(
    ("w", "h", "center", "expected"),
    [
        (320, 240, False, (1.3, 0, 0, 416, 312)),
        (960, 540, True, (416 / 960, 0, 91, 416, 234)),
        (240, 320, True, (1.3, 52, 0, 312, 416)),
        (416, 416, True, (1.0, 0, 0, 416, 416)),
        (1, 2000, True, (416 / 2000, 207, 0, 1, 416)),
    ],
)
def test_fit_geometry(w: int, h: int, center: bool, expected: tuple) -> None:
    lb = fit(w, h, 416, center)
    assert (lb.scale, lb.pad_x, lb.pad_y, lb.new_w, lb.new_h) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("w", "h", "center", "expected"),
    [
        (960, 540, False, (0, 0, 416, 256)),  # 16:9: 416×234 on 416×256
        (960, 540, True, (0, 11, 416, 256)),
        (320, 240, False, (0, 0, 416, 320)),  # 4:3: 416×312 on 416×320
        (540, 960, True, (11, 0, 256, 416)),  # portrait
        (416, 416, False, (0, 0, 416, 416)),
        (2000, 1, False, (0, 0, 416, 32)),  # never under one stride
    ],
)
def test_fit_rect_pads_to_the_next_stride(w: int, h: int, center: bool, expected: tuple) -> None:
    square, rect = fit(w, h, 416, center), fit(w, h, 416, center, rect=True)
    assert (rect.pad_x, rect.pad_y, rect.in_w, rect.in_h) == expected
    assert (rect.scale, rect.new_w, rect.new_h) == (square.scale, square.new_w, square.new_h)
    assert (square.in_w, square.in_h) == (416, 416)


def test_rect_tensor_has_the_padded_size() -> None:
    img = np.full((540, 960, 3), 200, np.uint8)
    tensor, lb = letterbox_bgr(img, LetterboxSpec(416, "bgr", rect=True))
    assert tensor.shape == (3, 256, 416) and (lb.new_w, lb.new_h) == (416, 234)
    assert (tensor[:, :234] == 200).all() and (tensor[:, 234:] == 114).all()


def test_fit_refuses_empty_picture() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit(0, 10, 416, False)


def test_to_source_inverts_and_clips() -> None:
    lb = Letterbox(scale=0.5, pad_x=10, pad_y=20, src_w=100, src_h=80)
    model = np.array([[10 + 5, 20 + 5, 10 + 25, 20 + 30], [0, 0, 300, 300]], dtype=np.float32)
    np.testing.assert_allclose(to_source(model, lb), [[10, 10, 50, 60], [0, 0, 100, 80]])
    assert to_source(np.zeros((0, 4), np.float32), lb).shape == (0, 4)


def _frame(w: int, h: int, bgr: tuple[int, int, int]) -> av.VideoFrame:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = bgr
    return av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")


def test_letterbox_frame_pads_and_orders_colours() -> None:
    frame = _frame(64, 32, (200, 100, 30))  # B, G, R
    bgr, lb = letterbox_frame(frame, LetterboxSpec(32, "bgr", pad_value=114))
    assert bgr.shape == (3, 32, 32) and bgr.dtype == np.float32
    assert (lb.new_w, lb.new_h, lb.pad_y) == (32, 16, 0)
    assert (bgr[:, 16:] == 114).all()
    np.testing.assert_allclose(bgr[:, :16].mean(axis=(1, 2)), (200, 100, 30), atol=4)
    rgb, lb = letterbox_frame(frame, LetterboxSpec(32, "rgb", True, 114, center=True))
    assert lb.pad_y == 8
    np.testing.assert_allclose(rgb[:, :8], 114 / 255, rtol=1e-6)
    np.testing.assert_allclose(
        rgb[:, 8:24].mean(axis=(1, 2)), np.array((30, 100, 200)) / 255, atol=0.02
    )


def test_letterbox_bgr_matches_frame_path_geometry() -> None:
    img = np.zeros((30, 60, 3), dtype=np.uint8)
    img[..., 2] = 255  # red
    tensor, lb = letterbox_bgr(img, LetterboxSpec(32, "rgb", unit_scale=True))
    assert (lb.new_w, lb.new_h) == (32, 16)
    assert tensor[0, :16].min() == pytest.approx(1.0) and tensor[2, :16].max() == 0
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        letterbox_bgr(np.zeros((4, 4), np.uint8), LetterboxSpec(32))
