"""Voting a track's plate out of several OCR reads: wrong, missing and extra characters, slogans."""

from __future__ import annotations

import pytest

from edge.track.plate_vote import DEFAULT_PLATE_PATTERN, compile_pattern, is_plate_like, vote
from edge.track.plates import PlateRead


def reads(*pairs: tuple[str, float]) -> list[PlateRead]:
    return [PlateRead(text, conf, text) for text, conf in pairs]


def test_one_wrong_character_is_outvoted() -> None:
    got = vote(reads(("4XXF538", 0.9), ("4XXF53B", 0.95), ("4XXF538", 0.8)))
    assert got is not None
    assert (got.text, got.agreed, got.reads) == ("4XXF538", 2, 3)
    assert got.confidence == pytest.approx((0.9 + 0.8) / 3, abs=1e-3)


def test_confidence_weights_the_vote() -> None:
    """Two reads disagree on one character: the surer one wins it."""
    got = vote(reads(("AB1234", 0.6), ("AB1284", 0.95)))
    assert got is not None and got.text == "AB1284" and got.agreed == 1


def test_a_missing_character_is_restored_from_the_other_reads() -> None:
    got = vote(reads(("5AU5341", 0.9), ("5A5341", 0.97), ("5AU5341", 0.85)))
    assert got is not None and (got.text, got.agreed) == ("5AU5341", 2)


def test_reads_each_wrong_somewhere_combine_into_the_right_plate() -> None:
    """No read is right on its own; aligned position by position, the majority is."""
    got = vote(reads(("5AU534", 0.9), ("5AV5341", 0.9), ("SAU5341", 0.9)))
    assert got is not None and got.text == "5AU5341" and got.agreed == 0


def test_an_extra_character_is_dropped() -> None:
    got = vote(reads(("EAZ6913", 0.9), ("EAZ69113", 0.9), ("EAZ6913", 0.9)))
    assert got is not None and got.text == "EAZ6913"


def test_slogans_and_state_names_do_not_vote() -> None:
    got = vote(reads(("CALIFORNIA", 0.99), ("DMV.CA.GOV", 0.98), ("4XXF538", 0.7)))
    assert got is not None and (got.text, got.reads, got.confidence) == ("4XXF538", 1, 0.7)
    assert vote(reads(("CALIFORNIA", 0.99), ("LANDOFLINCOLN", 0.99))) is None
    assert vote([]) is None


def test_the_pattern_is_configurable() -> None:
    digits_first = compile_pattern(r"[0-9][A-Z]{2}[0-9]{4}")
    got = vote(reads(("AB1234", 0.99), ("5AU5341", 0.8)), digits_first)
    assert got is not None and got.text == "5AU5341"
    with pytest.raises(ValueError, match="regular expression"):
        compile_pattern("[A-Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4XXF538", True), ("AB12", True), ("1234", True), ("A1B", False), ("TEXAS", False),
     ("AB1234567", False), ("AB-1234", False), ("", False)],
)  # fmt: skip
def test_default_pattern(text: str, expected: bool) -> None:
    assert is_plate_like(text, DEFAULT_PLATE_PATTERN) is expected
