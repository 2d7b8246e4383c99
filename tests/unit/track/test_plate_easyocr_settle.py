"""Settling EasyOCR's line read against its read character by character (pure logic)."""

from __future__ import annotations

import re

import pytest

from edge.config import DEFAULT_PLATE_PATTERN
from edge.track.plate_easyocr import settle
from edge.track.plates import TextCandidate

PATTERN = re.compile(DEFAULT_PLATE_PATTERN)
BOX = (0.0, 0.0, 100.0, 20.0)


@pytest.mark.parametrize(
    ("line", "alone", "expected"),
    [
        # As long as each other: look-alikes from the line read, other characters read alone.
        (("OCX 4764", 0.94), ("0CX4764", 0.98), "OCX4764"),
        (("NZV2197", 0.78), ("N2W2197", 0.39), "NZW2197"),
        (("LXXF538", 0.71), ("4XXF538", 0.64), "4XXF538"),  # the open 4 read as L in a line
        (("RK-6194S", 0.49), ("RK619AS", 0.98), "RK619AS"),  # 4/A is no look-alike pair
        # One character more in one, one less elsewhere: aligned, the cut's characters stand.
        (("RKC 819A", 0.51), ("RK819AM", 0.99), "RK819AM"),
        # Different lengths: not combined, the surer stands.
        (("6 531", 0.11), ("5AU5341", 0.71), "5AU5341"),
        (("OKK 7448", 0.83), ("0KIK7448", 0.65), "OKK 7448"),
        # The combination must be plate-like (a digit): else the surer plate-like read.
        (("HLO KTYI", 0.52), ("HL0KTY1", 0.83), "HL0KTY1"),
        # Agreement keeps the text.
        (("SG 47471", 0.76), ("SG47471", 0.61), "SG47471"),
    ],
)
def test_settle(line: tuple[str, float], alone: tuple[str, float], expected: str) -> None:
    got = settle(TextCandidate(*line, BOX), TextCandidate(*alone, BOX), PATTERN)
    assert got.text == expected
    assert got.box == BOX


def test_a_combined_read_scores_the_mean_of_the_two() -> None:
    got = settle(TextCandidate("OCX4764", 0.9, BOX), TextCandidate("0CX4764", 0.5, BOX), PATTERN)
    assert got.score == pytest.approx(0.7)


def test_text_that_is_no_plate_keeps_the_surer_read() -> None:
    got = settle(TextCandidate("CITROEN", 1.0, BOX), TextCandidate("C0", 0.83, BOX), PATTERN)
    assert (got.text, got.score) == ("CITROEN", 1.0)
