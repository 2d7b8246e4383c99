"""Plate-string picking on the text lines an OCR engine returns (pure logic)."""

from __future__ import annotations

import pytest

from edge.track.plates import PlateRead, TextCandidate, normalise_plate, pick_plate

FIVE_TO_EIGHT = r"(?=.*[0-9])[A-Z0-9]{5,8}"
"""Fragment tests: with the default 4-character minimum, `5AU5` alone is plate-like."""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("EAZ-6913", "EAZ6913"), ("5au 5341", "5AU5341"), ("AB·123·CD", "AB123CD"), ("", "")],
)
def test_normalise_plate(raw: str, expected: str) -> None:
    assert normalise_plate(raw) == expected


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], None),
        ([("California", 0.99)], None),
        ([('"California', 0.96), ("4XXF538", 0.99)], "4XXF538"),
        ([("EAZ-6913", 0.9)], "EAZ6913"),
        ([("TEXAS", 0.99), ("ABC 1234", 0.8)], "ABC1234"),
        ([("A1B", 0.99)], None),  # too short
        ([("A1B2", 0.99)], "A1B2"),
        ([("PR8101052", 0.99)], None),  # too long
        ([("17/09/07 12:06:18", 0.99)], None),  # a date overlay
        ([("12345", 0.9)], "12345"),  # digits only, as a fallback
        ([("12345", 0.99), ("AB1234", 0.7)], "AB1234"),  # mixed beats digits only
        ([("AB1234", 0.7), ("XY9876", 0.95)], "XY9876"),  # highest confidence wins
        ([("Land of Lincoln", 0.99), ("ab 12 cd", 0.8)], "AB12CD"),
    ],
)
def test_pick_plate(candidates: list[tuple[str, float]], expected: str | None) -> None:
    read = pick_plate(candidates)
    assert (read.text if read else None) == expected


def test_pick_plate_ignores_lines_below_min_confidence() -> None:
    candidates = [("08 P0D 2", 0.55), ("AB 1234", 0.85), ("XY98765", 0.6)]
    assert pick_plate(candidates, min_confidence=0.9) is None
    read = pick_plate(candidates, min_confidence=0.8)
    assert read is not None and read.text == "AB1234"


def test_pick_plate_keeps_confidence_and_raw_text() -> None:
    read = pick_plate([TextCandidate("EAZ-6913", 0.87, (1.0, 2.0, 3.0, 4.0))])
    assert read == PlateRead("EAZ6913", 0.87, "EAZ-6913", (1.0, 2.0, 3.0, 4.0))


def test_pick_plate_joins_fragments_on_one_line() -> None:
    read = pick_plate(
        [
            TextCandidate("5341", 0.99, (40.0, 10.0, 75.0, 30.0)),
            TextCandidate("5AU", 0.98, (5.0, 11.0, 33.0, 31.0)),
        ]
    )
    assert read is not None
    assert (read.text, read.confidence, read.box) == ("5AU5341", 0.98, (5.0, 10.0, 75.0, 31.0))


def test_pick_plate_does_not_join_overlapping_fragments() -> None:
    """rapidocr's real split of `5AU 5341`: both boxes hold the middle `5`."""
    left = TextCandidate("5AU5", 0.99, (17.0, 10.0, 60.0, 33.0))
    right = TextCandidate("5341", 0.99, (49.0, 12.0, 87.0, 31.0))
    assert pick_plate([left, right], pattern=FIVE_TO_EIGHT) is None


def test_pick_plate_does_not_join_separate_lines() -> None:
    above = TextCandidate("5AU5", 0.98, (5.0, 0.0, 36.0, 20.0))
    below = TextCandidate("5341", 0.99, (40.0, 40.0, 75.0, 60.0))
    assert pick_plate([above, below], pattern=FIVE_TO_EIGHT) is None


def test_pick_plate_prefers_a_whole_line_over_joined_fragments() -> None:
    read = pick_plate(
        [
            TextCandidate("AB12", 0.99, (0.0, 0.0, 30.0, 20.0)),
            TextCandidate("34", 0.99, (35.0, 0.0, 50.0, 20.0)),
            TextCandidate("XY9876", 0.6, (0.0, 50.0, 60.0, 70.0)),
        ],
        pattern=FIVE_TO_EIGHT,
    )
    assert read is not None and read.text == "XY9876"


def test_pick_plate_takes_a_configured_pattern() -> None:
    cands = [("AB1234", 0.99), ("5AU5341", 0.9)]
    read = pick_plate(cands, pattern=r"[0-9][A-Z]{2}[0-9]{4}")
    assert read is not None and read.text == "5AU5341"


def test_pick_plate_joins_three_fragments_split_by_seals() -> None:
    """A German-style plate read in three pieces (`B` | seals | `MW` | `1234`)."""
    read = pick_plate(
        [
            TextCandidate("1234", 0.97, (70.0, 10.0, 120.0, 30.0)),
            TextCandidate("B", 0.99, (0.0, 10.0, 12.0, 30.0)),
            TextCandidate("MW", 0.98, (35.0, 11.0, 62.0, 30.0)),
        ]
    )
    assert read is not None and (read.text, read.confidence) == ("BMW1234", 0.97)
    assert read.box == (0.0, 10.0, 120.0, 30.0)


def test_pick_plate_joins_the_rows_of_a_two_row_plate() -> None:
    read = pick_plate(
        [
            TextCandidate("AB", 0.95, (10.0, 0.0, 50.0, 20.0)),
            TextCandidate("12345", 0.96, (5.0, 24.0, 60.0, 46.0)),
            TextCandidate("SLOGAN", 0.99, (0.0, 80.0, 60.0, 95.0)),  # too far below
        ]
    )
    assert read is not None and read.text == "AB12345" and read.raw == "AB\n12345"


def test_pick_plate_does_not_stack_rows_that_do_not_share_their_width() -> None:
    read = pick_plate(
        [
            TextCandidate("AB", 0.95, (0.0, 0.0, 30.0, 20.0)),
            TextCandidate("1234", 0.96, (100.0, 24.0, 150.0, 46.0)),
        ]
    )
    assert read is not None and read.text == "1234"  # digits alone, no invented join
