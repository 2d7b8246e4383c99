"""`edge analyze SOURCE --out DIR`: offline traffic study of a recording (or a live URL).

Runs detect + track + count over every frame and writes DIR/frames.jsonl (per frame, the
detections with the id of the confirmed track each belongs to, null otherwise), DIR/events.jsonl
(crossings and ends of tracks), DIR/summary.json (counts per line, class and direction, and the
number of confirmed tracks), and the same tables a live site keeps: DIR/edge.db (the store's
SQLite database, `store.interval_minutes` of --config or 15) and DIR/counts.csv (its interval
counts as a classified count report, as `GET /api/counts?format=csv` gives them).
Event times are the analysis start plus the frame's pts, since a recording does not say when
it was filmed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge.cli import positive_int
from edge.config import (
    ConfigError,
    DetectorConfig,
    EdgeConfig,
    LineConfig,
    StoreConfig,
    TrackerConfig,
    load_config,
)
from edge.redact import redact, redact_url

if TYPE_CHECKING:
    from edge.infer.detector import Detector
    from edge.metrics import EdgeMetrics
    from edge.track.events import VehicleEvent
    from edge.types import Frame

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="detect, track and count vehicles in a video file or URL")
    p.add_argument("source", help="video file or URL")
    p.add_argument("--config", type=Path, help="cameras.yaml (detector, tracker, events, lines)")
    p.add_argument(
        "--camera", help="take the counting lines of this camera id from --config "
        "(default: the camera whose url is SOURCE, else none)",
    )  # fmt: skip
    p.add_argument(
        "--line", action="append", default=[], metavar="NAME:x1,y1,x2,y2[:A,B]",
        help="counting line in source pixels, optional direction names for crossing left→right "
        "of p1→p2 and back (repeatable; replaces a config line of the same name)",
    )  # fmt: skip
    p.add_argument("--model", type=Path, help="ONNX model (overrides the config's)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--max-frames", type=positive_int, default=None, metavar="N",
        help="stop after N frames (for live URLs, which never end)",
    )  # fmt: skip
    p.set_defaults(func=run)


def parse_line(text: str) -> LineConfig:
    """`NAME:x1,y1,x2,y2[:DIR_A,DIR_B]` → LineConfig; ValueError says what is wrong."""
    name, _, rest = text.partition(":")
    coords, _, dirs = rest.partition(":")
    parts = coords.split(",")
    if not name or len(parts) != 4:
        raise ValueError(f"--line {text!r}: expected NAME:x1,y1,x2,y2[:DIR_A,DIR_B]")
    try:
        x1, y1, x2, y2 = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"--line {text!r}: coordinates must be numbers") from None
    fields: dict[str, Any] = {"name": name, "points": ((x1, y1), (x2, y2))}
    if dirs:
        fields["directions"] = tuple(dirs.split(","))
    try:
        return LineConfig(**fields)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"--line {text!r}: {reason}") from None


def _settings(
    args: argparse.Namespace,
) -> tuple[DetectorConfig, TrackerConfig, EdgeConfig | None, list[LineConfig]]:
    config = load_config(args.config) if args.config else None
    lines: dict[str, LineConfig] = {}
    if config is not None:
        cams = [c for c in config.cameras if c.id == args.camera or c.url == args.source]
        if args.camera and not cams:
            raise ConfigError([f"--camera: no camera {args.camera!r} in {args.config}"])
        lines = {line.name: line for line in (cams[0].lines if cams else [])}
    for text in args.line:
        line = parse_line(text)
        lines[line.name] = line
    detector = config.detector if config else DetectorConfig()
    if args.model is not None:
        detector = detector.model_copy(update={"model": args.model.expanduser().resolve()})
    tracker = config.tracker if config else TrackerConfig()
    return detector, tracker, config, list(lines.values())


def run(args: argparse.Namespace) -> int:
    try:
        detector_cfg, tracker_cfg, config, lines = _settings(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(problem), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file, not a folder" if args.out.exists() else exc.strerror
        print(f"edge analyze: --out {args.out}: {reason}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(analyze(args.source, args.out, detector_cfg, tracker_cfg, lines,
                                      config, camera_id=args.camera or "file",
                                      max_frames=args.max_frames))  # fmt: skip
    except (OSError, ValueError) as exc:
        print(f"edge analyze: {redact(str(exc))}", file=sys.stderr)
        return 1
    print(json.dumps(summary["counts"], indent=2))
    return 0


async def analyze(
    source: str,
    out: Path,
    detector_cfg: DetectorConfig,
    tracker_cfg: TrackerConfig,
    lines: list[LineConfig],
    config: EdgeConfig | None = None,
    camera_id: str = "file",
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Process every frame of `source` (in a worker thread), write the three outputs."""
    from edge.infer.detector import Detector
    from edge.infer.prepare import with_dynamic_batch
    from edge.metrics import EdgeMetrics
    from edge.store.sink import StoreSink
    from edge.track.events import EventBus, EventSink, JsonlSink, WebhookSink

    metrics = EdgeMetrics()
    store_cfg = (config.store if config else StoreConfig()).model_copy(
        update={"path": out / "edge.db"}
    )
    for suffix in ("", "-wal", "-shm"):  # a study is made afresh, like events.jsonl
        (out / f"edge.db{suffix}").unlink(missing_ok=True)
    events_cfg = config.events if config else None
    max_bytes = events_cfg.max_bytes if events_cfg else 1024**3
    backups = events_cfg.backups if events_cfg else 5
    sinks: list[EventSink] = [JsonlSink(out / "events.jsonl", max_bytes, backups, metrics)]
    if events_cfg and events_cfg.webhook:
        sinks.append(WebhookSink(events_cfg.webhook, metrics))
    (out / "events.jsonl").unlink(missing_ok=True)
    detector_cfg = await asyncio.to_thread(with_dynamic_batch, detector_cfg)
    detector = await asyncio.to_thread(Detector, detector_cfg, metrics)
    sinks.append(StoreSink(store_cfg, metrics))
    bus = EventBus(sinks, metrics)
    await bus.start()
    try:
        summary = await asyncio.to_thread(
            _process,
            source,
            out,
            detector,
            tracker_cfg,
            lines,
            camera_id,
            bus.emit,
            metrics,
            max_frames,
        )
    finally:
        await bus.stop()
    summary["events_dropped"] = sum(
        s.value for m in metrics.events_dropped.collect() for s in m.samples
        if s.name.endswith("_total")
    )  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_counts_csv(out, store_cfg, detector_cfg.classes, camera_id, lines, summary)
    return summary


def _write_counts_csv(
    out: Path,
    store_cfg: StoreConfig,
    classes: list[str],
    camera_id: str,
    lines: list[LineConfig],
    summary: dict[str, Any],
) -> None:
    """DIR/counts.csv: every interval from the first frame's to the last frame's."""
    from edge.intervals import interval_start, parse_time
    from edge.store.query import queries_for

    interval_s = store_cfg.interval_minutes * 60
    queries = queries_for(out / "edge.db", store_cfg.interval_minutes, classes,
                          {camera_id: {line.name: line.directions for line in lines}})  # fmt: skip
    start_s = interval_start(parse_time(summary["start"]), interval_s)
    end_s = interval_start(parse_time(summary["end"]), interval_s) + interval_s
    report = queries.counts(start_s, end_s, interval_s, camera=camera_id)
    (out / "counts.csv").write_text(report.to_csv(), encoding="utf-8")


def _process(
    source: str,
    out: Path,
    detector: Detector,
    tracker_cfg: TrackerConfig,
    lines: list[LineConfig],
    camera_id: str,
    emit: Callable[[VehicleEvent], None],
    metrics: EdgeMetrics,
    max_frames: int | None = None,
) -> dict[str, Any]:
    from edge.commands.progress import frame_progress
    from edge.ingest.video_file import read_frames
    from edge.track.camera import CameraTracking

    tracking = CameraTracking(
        camera_id, tracker_cfg, lines, detector.class_names, emit, metrics=metrics
    )
    names = detector.class_names
    started = datetime.now(UTC)
    frames = 0
    last_pts = 0.0
    with open(out / "frames.jsonl", "w", encoding="utf-8") as fh:
        frames_in: Iterable[Frame] = read_frames(source, camera_id)
        if max_frames is not None:
            frames_in = islice(frames_in, max_frames)
        frames_in = frame_progress(frames_in, source, max_frames)
        for frame, dets in detector.detect_stream(frames_in):
            pts = frame.pts if frame.pts is not None else last_pts
            last_pts = pts
            tracking.update(dets, started + timedelta(seconds=pts), frame.seq)
            owners = tracking.tracker.last_assignment
            record = {
                "frame": frame.seq,
                "pts": round(pts, 4),
                "detections": [
                    {"box": [round(float(v), 1) for v in box], "class": names[int(cid)],
                     "class_id": int(cid), "score": round(float(score), 4),
                     "track_id": int(tid) if tid >= 0 else None}
                    for box, cid, score, tid in zip(dets.xyxy, dets.class_id, dets.score, owners,
                                                    strict=True)
                ],
            }  # fmt: skip
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            frames += 1
    tracking.finish(started + timedelta(seconds=last_pts), frames - 1)
    return {
        "source": redact_url(source),
        "start": started.isoformat().replace("+00:00", "Z"),
        "end": (started + timedelta(seconds=last_pts)).isoformat().replace("+00:00", "Z"),
        "frames": frames,
        "confirmed_tracks": tracking.tracker.confirmed_count,
        "lines": [line.model_dump(mode="json") for line in lines],
        "counts": tracking.counts,
        "totals": {line.name: tracking.lines.total(line.name) for line in lines},
    }
