"""Plate readers on held-out photos: how many plates each backend reads exactly.

The shared plate photos are the ones the readers were developed on; this reads photos nobody
looked at while writing them, in the layout of the openalpr benchmarks' `endtoend` sets (a folder
per region of `NAME.jpg` with `NAME.txt`: `NAME<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`). Those photos
are not in this repository (their licence is not the project's): point `--dir` at a copy. For
each photo, the whole picture and the plate's box (with a margin of half its height) are read
with the backend's default `ocr.min_confidence` (or `--min-confidence`); a read is exact when
its normalised text (A-Z, 0-9) equals the plate's. Prints per region: photos, exact reads of
the whole photo and of the plate box, no read at all, and the median CPU ms per whole photo.
With `--layouts FOLDER=L1,L2` (a region's `ocr.plate_layouts`), the same text lines are also
picked with that folder's layouts: the last column, so both come from one OCR pass.

`--skip N` starts after the first N photos by name: a development split to study failures on,
apart from the photos the reported numbers come from.

Run: `python -m bench.bench_plates_heldout --dir DIR/us --dir DIR/eu [--skip 0] [--limit 40]
[--backend rapidocr|easyocr] [--layouts eu=@@###@@]`.
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
from edge.track.plates import PlateReader, make_reader, pick_plate


def truths(
    folder: Path, limit: int, skip: int = 0
) -> list[tuple[Path, tuple[int, int, int, int], str]]:
    out = []
    for txt in sorted(folder.glob("*.txt"))[skip : skip + limit]:
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


def read(
    reader: PlateReader, img: np.ndarray, layouts: list[str]
) -> tuple[str | None, str | None, float]:
    """The plate read without and with `layouts` (from the same text lines), and the CPU ms."""
    start = time.process_time()
    lines = reader.candidates(img)
    ms = (time.process_time() - start) * 1000
    texts = []
    for lay in ([], layouts):
        got = pick_plate(lines, reader.min_confidence, reader.pattern, lay)
        texts.append(norm(got.text) if got else None)
    return texts[0], texts[1], ms


def layouts_arg(value: str) -> tuple[str, list[str]]:
    folder, _, layouts = value.partition("=")
    if not folder or not layouts:
        raise argparse.ArgumentTypeError(f"expected FOLDER=LAYOUT[,LAYOUT...], got {value!r}")
    return folder, layouts.split(",")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, action="append", required=True)
    ap.add_argument("--limit", type=int, default=40, help="photos per folder (sorted by name)")
    ap.add_argument("--skip", type=int, default=0, help="start after this many photos by name")
    ap.add_argument("--layouts", type=layouts_arg, action="append", default=[],
                    help="FOLDER=L1,L2: a folder's plate layouts (ocr.plate_layouts)")  # fmt: skip
    ap.add_argument("--backend", default="rapidocr", choices=("rapidocr", "easyocr"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-confidence", type=float, help="default: the backend's")
    args = ap.parse_args()
    config = OcrConfig(backend=args.backend, min_confidence=args.min_confidence)
    reader = make_reader(config, threads=args.threads)
    reader.warm_up()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; commit {commit()}; backend {args.backend}; "
          f"photos {args.skip + 1}-{args.skip + args.limit} by name")  # fmt: skip
    print("| folder | photos | exact, whole photo | exact, plate box | no read (whole) "
          "| CPU ms per whole photo (median) | layouts | exact, whole, with layouts "
          "| exact, box, with layouts |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    region = dict(args.layouts)

    def pct(k: int, n: int) -> str:
        return f"{k} ({100 * k / max(n, 1):.0f} %)"

    for folder in args.dir:
        cases = truths(folder, args.limit, args.skip)
        layouts = region.get(folder.name, [])
        whole = crop = none = whole_l = crop_l = 0
        cpu = []
        for path, box, plate in cases:
            img = cv2.imread(str(path))
            if img is None:
                continue
            text, text_l, ms = read(reader, img, layouts)
            cpu.append(ms)
            whole += text == norm(plate)
            whole_l += text_l == norm(plate)
            none += text is None
            text, text_l, _ = read(reader, plate_box(img, box), layouts)
            crop += text == norm(plate)
            crop_l += text_l == norm(plate)
        n = len(cases)
        print(f"| {folder.name} | {n} | {pct(whole, n)} | {pct(crop, n)} | {none} | "
              f"{statistics.median(cpu) if cpu else 0:.0f} | {' '.join(layouts) or '-'} | "
              f"{pct(whole_l, n)} | {pct(crop_l, n)} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
