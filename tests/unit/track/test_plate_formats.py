"""Fitting reads to a region's plate layouts (pure logic)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.config import OcrConfig
from edge.track.plate_formats import fit
from edge.track.plates import TextCandidate, pick_plate

SLOVAK = ["@@###@@"]
BRAZIL = ["@@@####", "@@@#@##"]


@pytest.mark.parametrize(
    ("text", "layouts", "expected", "changes"),
    [
        ("RK896AO", SLOVAK, "RK896AO", 0),  # fits as read
        ("RK896A0", SLOVAK, "RK896AO", 1),  # a zero where a letter belongs
        ("BA2681M", SLOVAK, "BA268IM", 1),  # a one where a letter belongs
        ("8A268IM", SLOVAK, "BA268IM", 1),  # an eight where a letter belongs
        ("RKB96AO", SLOVAK, "RK896AO", 1),  # a B where a digit belongs
        ("HRK708A1", SLOVAK, "RK708AI", 2),  # a frame's edge read before the plate, and a swap
        ("BY649AGX", SLOVAK, "BY649AG", 1),  # one stray character after
        ("NZ06276", BRAZIL, "NZO6276", 1),
        ("ABC1D23", BRAZIL, "ABC1D23", 0),  # the second layout
        ("SG47471", SLOVAK, None, None),  # 7/T and 1/I both needed, 7/T is no swap
        ("RENAULT", BRAZIL, None, None),  # a word fits only through weak look-alikes
        ("RK896", SLOVAK, None, None),  # too short
        ("XXRK896AOYY", SLOVAK, None, None),  # two stray characters at one end is too many
        ("RK896AO", [], None, None),
    ],
)
def test_fit(text: str, layouts: list[str], expected: str | None, changes: int | None) -> None:
    got = fit(text, layouts)
    assert (got.text if got else None) == expected
    assert (got.changes if got else None) == changes


def test_fit_prefers_fewest_changes() -> None:
    # 'AB1234' fits '@@####' as read and '@@@###' by one swap: the first, in either order.
    assert fit("AB1234", ["@@@###", "@@####"]).text == "AB1234"  # type: ignore[union-attr]
    assert fit("AB1234", ["@@####", "@@@###"]).text == "AB1234"  # type: ignore[union-attr]


def test_literal_characters_in_a_layout() -> None:
    assert fit("AB1234", ["AB####"]).text == "AB1234"  # type: ignore[union-attr]
    assert fit("A81234", ["AB####"]).text == "AB1234"  # type: ignore[union-attr]
    assert fit("XB1234", ["AB####"]) is None


def test_pick_plate_prefers_a_read_that_fits_a_layout() -> None:
    lines = [
        TextCandidate("RENAULT", 1.0, (0, 0, 100, 20)),
        TextCandidate("3479CH", 1.0, (0, 40, 100, 60)),  # plate-like, but not this region's
        TextCandidate("OVA-1319", 0.9, (0, 80, 100, 100)),
    ]
    assert pick_plate(lines).text == "3479CH"  # type: ignore[union-attr]
    assert pick_plate(lines, layouts=BRAZIL).text == "OVA1319"  # type: ignore[union-attr]


def test_pick_plate_fits_look_alikes_and_keeps_a_read_that_fits_nothing() -> None:
    assert pick_plate([("RK:896A0", 0.93)], layouts=SLOVAK).text == "RK896AO"  # type: ignore[union-attr]
    assert pick_plate([("SG47471", 0.93)], layouts=SLOVAK).text == "SG47471"  # type: ignore[union-attr]
    assert pick_plate([("RK:896A0", 0.93)]).text == "RK896A0"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["", "@", "ab##", "@@-###", "@" * 13])
def test_config_rejects_a_malformed_layout(bad: str) -> None:
    with pytest.raises(ValidationError, match="plate layout"):
        OcrConfig(plate_layouts=[bad])


def test_config_takes_layouts() -> None:
    assert OcrConfig(plate_layouts=BRAZIL).plate_layouts == BRAZIL
