"""Plate readers on the shared plate photos: what each backend reads and ms per picture.

For each backend (rapidocr, and easyocr where its extra is installed) and each photo in
`assets/plates` (the whole photo, and the plate's crop where the ground truth gives its box), the
read text, its confidence and the median time of `--runs` reads after a warm-up read. Reads are
shown whatever their confidence (the backends score on different scales: `ocr.min_confidence` is
set per backend). Times: wall-clock and CPU (this process's, all threads: on a shared machine the
CPU time is the one that says what a read costs), and for easyocr the CPU time of its own line
reads alone (detection and recognition of whole lines), without the second reading character by
character. Run:
`python -m bench.bench_plates [--runs N] [--backend rapidocr|easyocr ...]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import cv2

from edge.assets import asset
from edge.config import OcrConfig
from edge.track.plates import PlateReader, ReaderUnavailable, make_reader


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="per reader")
    ap.add_argument("--backend", action="append", choices=("rapidocr", "easyocr"))
    args = ap.parse_args()
    truth = json.loads(asset("plates", "plates.json").read_text())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; commit {commit()}")  # fmt: skip
    print("| backend | picture | truth | read | confidence | ms (median) | CPU ms (median) "
          "| line reads alone, CPU ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backend or ["rapidocr", "easyocr"]:
        try:
            config = OcrConfig(backend=backend, min_confidence=0.0)
            reader = make_reader(config, threads=args.threads)
            start = time.perf_counter()
            reader.warm_up()
            load_s = time.perf_counter() - start
        except ReaderUnavailable as exc:
            print(f"| {backend} | – | – | not installed: {exc} | – | – | – | – |")
            continue
        for t in truth:
            img = cv2.imread(str(asset("plates", t["file"])))
            if img is None:
                raise SystemExit(f"bench_plates: {t['file']}: not readable")
            pictures = [("whole", img)]
            if t.get("plate_bbox_xywh"):
                x, y, w, h = t["plate_bbox_xywh"]
                pictures.append(("plate crop", img[y : y + h, x : x + w]))
            for what, pic in pictures:
                reader.read(pic)  # warm-up of this size
                times, cpu, lines, read = [], [], [], None
                for _ in range(args.runs):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    read = reader.read(pic)
                    times.append((time.perf_counter() - start) * 1000)
                    cpu.append((time.process_time() - start_cpu) * 1000)
                    if type(reader) is not PlateReader:  # the engine's own line reads alone
                        start_cpu = time.process_time()
                        PlateReader.candidates(reader, pic)
                        lines.append((time.process_time() - start_cpu) * 1000)
                text = read.text if read else "–"
                conf = f"{read.confidence:.2f}" if read else "–"
                own = f"{statistics.median(lines):.0f}" if lines else "–"
                print(f"| {backend} | {t['file']} ({what}) | {t['plate']} | {text} | {conf} | "
                      f"{statistics.median(times):.0f} | {statistics.median(cpu):.0f} | {own} |",
                      flush=True)  # fmt: skip
        print(f"({backend}: models loaded in {load_s:.1f} s)")


if __name__ == "__main__":
    main()
