"""Cutting a text line into its characters, and the views of them (pure image logic, on plates
drawn with OpenCV: every character's place is known)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.track.plate_glyphs import PADS, STRETCHES, _characters, _slant, cut_line, glyph_views

FONT = cv2.FONT_HERSHEY_SIMPLEX


def plate(text: str, extras: bool = False) -> tuple[np.ndarray, tuple[float, float, float, float],
                                                   list[tuple[int, int]]]:  # fmt: skip
    """A white plate with a dark frame, `text` in dark characters spaced apart (with `extras`: an
    EU-style band at its left and a tall dark seal between the 2nd and 3rd characters): the
    image, the text line's box, each character's columns."""
    img = np.full((90, 60 + 48 * len(text), 3), 235, np.uint8)
    cv2.rectangle(img, (4, 4), (img.shape[1] - 5, 85), (30, 30, 30), 3)
    if extras:
        cv2.rectangle(img, (7, 7), (34, 82), (140, 40, 20), -1)
        cv2.rectangle(img, (126, 16), (132, 74), (40, 40, 160), -1)
    columns = []
    x = 40
    for ch in text:
        (w, _), _ = cv2.getTextSize(ch, FONT, 1.6, 4)
        cv2.putText(img, ch, (x, 65), FONT, 1.6, (20, 20, 20), 4, cv2.LINE_AA)
        columns.append((x, x + w))
        x += 48
    return img, (36.0, 22.0, float(x), 70.0), columns


def scaled_columns(img: np.ndarray, box: tuple[float, float, float, float],
                   glyph_cols: tuple[tuple[int, int], ...]) -> list[float]:  # fmt: skip
    """Centres of the cut characters in the picture's own pixels (the cut scales the line)."""
    x1, y1, _, y2 = box
    margin = 0.2 * (y2 - y1)
    top, bottom, left = int(y1 - margin), int(np.ceil(y2 + margin)), int(x1 - margin)
    scale = 128 / (bottom - top)
    return [left + (a + b) / 2 / scale for a, b in glyph_cols]


@pytest.mark.parametrize("extras", [False, True])
def test_a_line_is_cut_into_its_characters_left_to_right(extras: bool) -> None:
    img, box, columns = plate("AB12CD", extras=extras)
    glyphs = cut_line(img, box)
    assert glyphs is not None
    assert len(glyphs.columns) == 6
    for centre, (a, b) in zip(scaled_columns(img, box, glyphs.columns), columns, strict=True):
        assert a - 2 <= centre <= b + 2
    assert glyphs.background > 200  # the plate's white, not the frame, band or seal


def test_light_characters_on_a_dark_plate() -> None:
    img, box, _ = plate("7XK42")
    glyphs = cut_line(255 - img, box)
    assert glyphs is not None and len(glyphs.columns) == 5
    assert glyphs.background < 60


def test_a_tilted_line_is_levelled_before_cutting() -> None:
    img, box, _ = plate("AB12CD")
    h, w = img.shape[:2]
    tilted = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 4, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    grey = cv2.cvtColor(tilted[10:80, 20 : w - 20], cv2.COLOR_BGR2GRAY)
    grey = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert abs(_slant(_characters(grey)[0])) > 2  # tilted as drawn
    glyphs = cut_line(tilted, (30.0, 10.0, float(w - 30), 80.0))
    assert glyphs is not None and len(glyphs.columns) == 6
    assert abs(_slant(_characters(glyphs.grey)[0])) < 1  # cut level


@pytest.mark.parametrize(
    "image",
    [np.full((60, 200, 3), 128, np.uint8), np.random.default_rng(1).integers(0, 255, (60, 200, 3),
                                                                            dtype=np.uint8)],
)  # fmt: skip
def test_no_characters_no_cut(image: np.ndarray) -> None:
    assert cut_line(image, (10.0, 10.0, 190.0, 50.0)) is None


def test_a_box_off_the_picture_or_too_small_is_no_cut() -> None:
    img, _, _ = plate("AB12")
    assert cut_line(img, (10.0, 10.0, 12.0, 12.0)) is None
    assert cut_line(img, (500.0, 500.0, 600.0, 560.0)) is None


def test_views_are_every_character_alone_on_the_background() -> None:
    img, box, _ = plate("AB12")
    glyphs = cut_line(img, box)
    assert glyphs is not None
    views = glyph_views(glyphs)
    assert len(views) == len(PADS) * len(STRETCHES)
    height = glyphs.bottom - glyphs.top
    for view in views:
        assert len(view) == 4
        for crop in view:
            assert crop.ndim == 2 and crop.shape[0] > height
            edge = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
            assert (edge == glyphs.background).all()
    # the same character is wider in a wider view
    widths = [views[i][0].shape[1] for i in range(len(STRETCHES))]
    assert widths == sorted(widths) and widths[0] < widths[-1]
