"""What a reload of `cameras.yaml` changes: the difference of two EdgeConfigs as the service applies
it, without touching anything that did not change.

Only the `cameras:` list changes live; every other section (detector, ingest, tracker, events,
ocr, stream, server, metrics, store, shard) is read once at start, by parts that cannot be swapped
without stopping every camera (the one ONNX Runtime session, the worker processes, the listening
socket, the event sinks), so a difference there is listed in `needs_restart` and left as it runs.

Per camera (by id, among the enabled ones):

- new id, or a disabled camera enabled: `start`;
- id gone, or the camera disabled: `stop`;
- a source setting differs (`url`, `fps`, `width`, `realtime`, `loop`): `restart`, i.e. stop and
  start again with a fresh connection, tracker and counts;
- only `lines` or the display `name` differ: `lines`, swapped in place (video, tracks and the
  counts of the lines that stay are kept);
- nothing differs: the camera is not touched at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.config.cameras import CameraConfig
from edge.config.schema import EdgeConfig

LIVE_CAMERA_FIELDS = frozenset({"lines", "name"})
"""Camera settings swapped in place; any other camera field restarts the camera."""


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    """Dotted settings that differ outside `cameras:` (`detector.model`, `server.port`)."""

    @property
    def changes_cameras(self) -> bool:
        return bool(self.start or self.stop or self.restart or self.lines)


def diff_configs(old: EdgeConfig, new: EdgeConfig) -> ConfigDiff:
    """What applying `new` over the running `old` does (see module doc). Both are the configs as
    the service runs them: shard already applied, command-line overrides already set."""
    before = {c.id: c for c in old.enabled_cameras}
    after = {c.id: c for c in new.enabled_cameras}
    start = [cid for cid in after if cid not in before]
    stop = [cid for cid in before if cid not in after]
    restart, lines = [], []
    for cid, cam in after.items():
        was = before.get(cid)
        if was is None or was == cam:
            continue
        if _source_of(was) != _source_of(cam):
            restart.append(cid)
        else:
            lines.append(cid)
    old_rest = old.model_dump(mode="json", exclude={"cameras"})
    new_rest = new.model_dump(mode="json", exclude={"cameras"})
    return ConfigDiff(
        start=tuple(start),
        stop=tuple(stop),
        restart=tuple(restart),
        lines=tuple(lines),
        needs_restart=tuple(_differences(old_rest, new_rest)),
    )


def running_config(old: EdgeConfig, new: EdgeConfig) -> EdgeConfig:
    """The config that runs once `new` is applied over `old`: the new cameras, every other
    section as it runs now (those need a restart)."""
    return old.model_copy(update={"cameras": list(new.cameras)})


def _source_of(cam: CameraConfig) -> dict[str, Any]:
    return cam.model_dump(exclude=set(LIVE_CAMERA_FIELDS))


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths of the leaves that differ (a list counts as one leaf): names only, never
    values, so that a changed password shows as `events.webhook.url` and nothing more."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            out.extend(_differences(a.get(key), b.get(key), sub))
        return out
    return [] if a == b else [path]
