"""`edge detect SOURCE`: vehicles in a recorded video (or a URL), one JSON line per frame."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from edge.cli import positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("detect", help="run the detector over a video file or URL, write JSONL")
    p.add_argument("source", metavar="SOURCE", help="video file or URL")
    p.add_argument("--config", type=Path, help="cameras.yaml whose detector section to use")
    p.add_argument("--model", type=Path, help="ONNX model (overrides the config's)")
    p.add_argument("--out", type=Path, metavar="FILE.jsonl", help="output file (default stdout)")
    p.add_argument(
        "--letterbox",
        choices=("square", "rect"),
        help="default: the config's, where auto means square here (the exported model's own "
        "input, so the output matches it exactly); rect reproduces the service's detections",
    )
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    p.set_defaults(func=run)


def detector_config(config: Path | None, model: Path | None, letterbox: str | None = None) -> Any:
    """The detector section of `config` (or the defaults), with `model` swapped in and an `auto`
    letterbox made square."""
    from edge.config import DetectorConfig, load_config
    from edge.infer.prepare import with_dynamic_batch

    data = load_config(config).detector.model_dump() if config else {}
    if model is not None:
        data["model"] = model.expanduser().resolve()
    if letterbox is not None or data.get("letterbox", "auto") == "auto":
        data["letterbox"] = letterbox or "square"
    return with_dynamic_batch(DetectorConfig.model_validate(data))


def frame_record(
    index: int, pts: float | None, dets: Any, class_names: list[str]
) -> dict[str, Any]:
    return {
        "frame": index,
        "pts": None if pts is None else round(pts, 6),
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "class": class_names[int(cid)],
                "class_id": int(cid),
                "score": round(float(score), 5),
            }
            for box, cid, score in zip(dets.xyxy, dets.class_id, dets.score, strict=True)
        ],
    }


def _write_all(detector: Any, frames: Iterable[Any], out: IO[str]) -> int:
    count = 0
    for frame, dets in detector.detect_stream(frames):
        out.write(json.dumps(frame_record(frame.seq, frame.pts, dets, detector.class_names)))
        out.write("\n")
        count += 1
    return count


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from pydantic import ValidationError

    from edge.commands.progress import frame_progress
    from edge.config import ConfigError
    from edge.infer.detector import Detector
    from edge.ingest.video_file import read_frames
    from edge.metrics import EdgeMetrics
    from edge.redact import redact

    try:
        # A registry of its own: `edge detect` serves no metrics, it prints its detections.
        detector = Detector(detector_config(args.config, args.model, args.letterbox), EdgeMetrics())
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            print(f"detector.{'.'.join(map(str, err['loc']))}: {msg}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad model file (`ModelError`: `PATH: reason`) or letterbox
        print(f"edge detect: {redact(str(exc))}", file=sys.stderr)
        return 2
    frames: Iterable[Any] = read_frames(args.source, camera_id="detect")
    if args.max_frames is not None:
        frames = islice(frames, args.max_frames)
    frames = frame_progress(frames, args.source, args.max_frames)
    try:
        if args.out is None:
            count = _write_all(detector, frames, sys.stdout)
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("w", encoding="utf-8") as out:
                count = _write_all(detector, frames, out)
    except BrokenPipeError:  # `edge detect ... | head`: the reader has all it wanted
        raise
    except (OSError, ValueError) as exc:
        print(f"edge detect: {redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"edge detect: {count} frames", file=sys.stderr)
    return 0
