"""`edge plate IMAGE...`: the plate read on each picture (a whole photo or a crop), for installers
checking that a camera's angle and resolution give legible plates."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plate", help="read the licence plate on photos (exit 1 when none is read)")
    p.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="JPEG/PNG photo or crop")
    p.add_argument("--config", type=Path, help="cameras.yaml whose ocr section to use")
    p.add_argument("--backend", choices=("rapidocr", "easyocr"), help="default: the config's")
    p.add_argument("--layout", action="append", metavar="LAYOUT",
                   help="a plate layout of the region (ocr.plate_layouts: @ letter, # digit, "
                   "? either), repeatable; default: the config's")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    from pydantic import ValidationError

    from edge.config import OcrConfig, load_config
    from edge.track.plates import make_reader

    for path in args.images:  # every path checked before the models load
        if not path.is_file():
            raise SystemExit(f"edge plate: {path}: no such file")
    ocr = load_config(args.config).ocr if args.config else OcrConfig()
    if args.backend:
        ocr = ocr.model_copy(update={"backend": args.backend})
    if args.layout:
        try:
            ocr = OcrConfig.model_validate({**ocr.model_dump(), "plate_layouts": args.layout})
        except ValidationError as exc:
            raise SystemExit(f"edge plate: {exc.errors()[0]['msg']}") from None
    reader = make_reader(ocr, threads=2)
    reader.warm_up()  # the times printed are the reads' own
    images = []
    for path in args.images:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"edge plate: {path}: not an image OpenCV can read")
        images.append((path, img))
    found = 0
    for path, img in images:
        start = time.perf_counter()
        read = reader.read(img)
        ms = (time.perf_counter() - start) * 1000
        if read is None:
            print(f"{path}\t-\tno plate read\t{ms:.0f} ms", flush=True)
            continue
        found += 1
        print(f"{path}\t{read.text}\t{read.confidence:.2f}\t{ms:.0f} ms", flush=True)
    return 0 if found else 1
