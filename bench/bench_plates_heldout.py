"""Plate readers on held-out photos: how many plates each backend reads exactly.

The shared plate photos are the ones the readers were developed on; this reads photos nobody
looked at while writing them, in the layout of the openalpr benchmarks' `endtoend` sets (a folder
per region of `NAME.jpg` with `NAME.txt`: `NAME<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`). Those photos
are not in this repository (their licence is not the project's): point `--dir` at a copy. For
each photo, the whole picture and the plate's box (with a margin of half its height) are read
with the backend's default `ocr.min_confidence` (or `--min-confidence`); a read is exact when
its normalised text (A-Z, 0-9) equals the plate's. Prints per region: photos, exact reads of
the whole photo and of the plate box, no read at all, and the median CPU ms per whole photo.

Run: `python -m bench.bench_plates_heldout --dir DIR/us --dir DIR/eu [--limit 40]
[--backend rapidocr|easyocr]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from bench.bench_plates import commit
from edge.config import OcrConfig
from edge.track.plates import PlateReader, make_reader


def truths(folder: Path, limit: int) -> list[tuple[Path, tuple[int, int, int, int], str]]:
    out = []
    for txt in sorted(folder.glob("*.txt"))[:limit]:
        fields = txt.read_text().split("\t")
        if len(fields) < 6:
            continue
        x, y, w, h = (int(v) for v in fields[1:5])
        out.append((folder / fields[0], (x, y, w, h), fields[5].strip()))
    return out


def norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def plate_box(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    m = h // 2
    return img[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m]


def read(reader: PlateReader, img: np.ndarray) -> tuple[str | None, float]:
    start = time.process_time()
    got = reader.read(img)
    return (norm(got.text) if got else None), (time.process_time() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, action="append", required=True)
    ap.add_argument("--limit", type=int, default=40, help="photos per folder (sorted by name)")
    ap.add_argument("--backend", default="rapidocr", choices=("rapidocr", "easyocr"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-confidence", type=float, help="default: the backend's")
    args = ap.parse_args()
    config = OcrConfig(backend=args.backend, min_confidence=args.min_confidence)
    reader = make_reader(config, threads=args.threads)
    reader.warm_up()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; commit {commit()}; backend {args.backend}")  # fmt: skip
    print("| folder | photos | exact, whole photo | exact, plate box | no read (whole) "
          "| CPU ms per whole photo (median) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for folder in args.dir:
        cases = truths(folder, args.limit)
        whole = crop = none = 0
        cpu = []
        for path, box, plate in cases:
            img = cv2.imread(str(path))
            if img is None:
                continue
            text, ms = read(reader, img)
            cpu.append(ms)
            whole += text == norm(plate)
            none += text is None
            crop += read(reader, plate_box(img, box))[0] == norm(plate)
        n = len(cases)
        print(f"| {folder.name} | {n} | {whole} ({100 * whole / max(n, 1):.0f} %) | "
              f"{crop} ({100 * crop / max(n, 1):.0f} %) | {none} | "
              f"{statistics.median(cpu) if cpu else 0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
