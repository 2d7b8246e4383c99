"""`edge check CONFIG`: validate a config and print every problem as `path.to.field: reason`.

A valid config's model is then opened as `edge run` would open it (`edge.infer.model_check`), so a
corrupt file or one that is no detector shows here rather than at start; likewise an OCR backend
that is not installed. A counting line outside
the frame of a file source (read from its header) is a warning: the config still passes. Network
cameras are not opened (`edge.ingest.media.probe_size`).
"""

from __future__ import annotations

import argparse
import sys

from edge.cli import add_shard_argument
from edge.config import ConfigError, load_config
from edge.config.shard import apply_shard


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate a cameras.yaml (exit 0 valid, 2 invalid)")
    p.add_argument("config", help="path to the YAML config")
    add_shard_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = apply_shard(load_config(args.config), args.shard)
    except ConfigError as exc:
        print_problems(exc)
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    exposure = config.server.exposure_problem()  # what `edge run` refuses, for the file's host
    if exposure is not None:
        print(exposure, file=sys.stderr)
        print(f"{args.config}: 1 problem(s)", file=sys.stderr)
        return 2
    from edge.infer.model_check import ModelError, check_model  # imports onnx: a valid file only
    from edge.ingest.media import probe_size

    det = config.detector
    try:  # what `edge run` would refuse at start: open the model, recognise its layout
        layout = check_model(det.model, det.family, det.classes, det.input_size)
    except ModelError as exc:
        print(f"detector.{exc.field}: {exc}", file=sys.stderr)
        print(f"{args.config}: 1 problem(s)", file=sys.stderr)
        return 2
    if config.ocr.enabled:  # an OCR backend that is not installed stops `edge run` at start
        from edge.track.plates import ReaderUnavailable, make_reader

        try:
            make_reader(config.ocr)
        except ReaderUnavailable as exc:
            print(str(exc), file=sys.stderr)
            print(f"{args.config}: 1 problem(s)", file=sys.stderr)
            return 2
    cams = config.enabled_cameras
    print(
        f"{args.config}: OK ({len(cams)} enabled camera(s), model {det.model.name}: "
        f"{layout.family}, {layout.num_classes} classes)"
    )
    for i, cam in enumerate(config.cameras):
        size = probe_size(cam.url) if cam.enabled and cam.lines else None
        for warning in cam.lines_outside(*size) if size else []:
            print(f"warning: cameras[{i}]({cam.id}).{warning}", file=sys.stderr)
    shard = config.shard
    if shard.count > 1:
        ids = ", ".join(c.id for c in cams) or "none"
        print(f"shard {shard.index}/{shard.count} serves: {ids}")
    return 0


def print_problems(exc: ConfigError) -> None:
    """One `path.to.field: reason` line per problem on stderr (shared by `check` and `run`)."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
