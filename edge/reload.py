"""Hot reload of `cameras.yaml`: re-read it on SIGHUP, on a change of the file and on the config
API's request, and apply the difference to the running service (`edge.config.diff`).

Part of the wiring, like `edge.app`, which it drives through `LiveCameras`. A file that does not
load changes nothing: every problem is logged as `edge check` prints it, and the result is kept
for `GET /api/config` and counted (`edge_config_reloads_total{result}`). Reloads run one at a
time, so a file change and an API edit never interleave their starts and stops.

The file is watched with `watchfiles` (inotify on Linux; `WATCHFILES_FORCE_POLLING=1` polls where
inotify cannot see changes, e.g. on network filesystems). Its folder is watched rather than the
file, so that an editor's save by renaming a new file over the old one, or a Kubernetes ConfigMap
update (a symlink swapped in the folder), is seen too. A burst of writes is one reload: changes
are gathered until none came for `STEP_MS`, and the file is reloaded only when its bytes differ
from what was last read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from watchfiles import Change, awatch

from edge.config import CameraConfig, ConfigError, EdgeConfig
from edge.config.diff import ConfigDiff, diff_configs, running_config
from edge.config.reload import ReloadOutcome, ReloadResult, ReloadTrigger
from edge.config.shard import ShardSpec
from edge.config.source import ConfigSource
from edge.metrics import EdgeMetrics
from edge.redact import redact

log = logging.getLogger(__name__)

STEP_MS = 300
"""Changes are gathered until none came for this long, so that a burst of writes is one reload."""
DEBOUNCE_MS = 2000
"""A stream of changes that never pauses is still reloaded at least this often."""


class LiveCameras(Protocol):
    """The service as a reload drives it (implemented by `edge.app.EdgeService`)."""

    config: EdgeConfig
    last_reload: ReloadResult | None

    async def start_camera(self, cam: CameraConfig) -> None: ...

    async def stop_camera(self, camera_id: str) -> None: ...

    def swap_lines(self, cam: CameraConfig) -> None: ...

    def cameras_changed(self) -> None: ...


class ConfigReloader:
    """Reloads the file of `source` into `host` (see module doc)."""

    def __init__(
        self, host: LiveCameras, source: ConfigSource | None, metrics: EdgeMetrics
    ) -> None:
        self.host, self.source, self.metrics = host, source, metrics
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._seen: bytes | None = None
        self._closed = False

    def start(self, tg: asyncio.TaskGroup) -> None:
        """The service runs its cameras: reloads may apply from now on; watch the file."""
        self._ready.set()
        if self.source is not None:
            self._seen = _read(self.source.path)
            tg.create_task(self.watch(self.source), name="watch:config")

    async def watch(self, source: ConfigSource) -> None:
        """Reload whenever the file's bytes change (see module doc)."""
        path = source.path.absolute()
        names = {path.name}
        if path.is_symlink():  # a ConfigMap's file: its target changes by a swap in the folder
            names.add("..data")

        def relevant(_change: Change, changed: str) -> bool:
            return Path(changed).name in names

        try:
            async for _ in awatch(
                path.parent, watch_filter=relevant, step=STEP_MS, debounce=DEBOUNCE_MS,
                recursive=False,
            ):  # fmt: skip
                await self._file_changed(source)
        except Exception as exc:  # e.g. out of inotify watches: the service itself goes on
            log.warning("cannot watch %s for changes (%s: %s); reload it with SIGHUP",
                        path, type(exc).__name__, exc)  # fmt: skip

    async def close(self) -> None:
        """The service stops: let a reload in progress finish, refuse any later one."""
        async with self._lock:
            self._closed = True

    async def reload(self, trigger: ReloadTrigger) -> ReloadResult:
        """Re-read the file and apply what changed; never raises (see `ConfigHost`)."""
        if self.source is None:
            errors = ("config: the service was not started from a file; nothing to reload",)
            return self._done(ReloadResult("invalid", trigger, time.time(), errors=errors))
        await self._ready.wait()
        async with self._lock:
            return self._done(await self._guarded(self.source, trigger))

    async def _file_changed(self, source: ConfigSource) -> None:
        """A reload for the watch, only when the file holds other bytes than those last read
        (the config API writes the file and reloads it before the watch sees the write)."""
        await self._ready.wait()
        async with self._lock:
            if _read(source.path) != self._seen:
                self._done(await self._guarded(source, "file"))

    async def _guarded(self, source: ConfigSource, trigger: ReloadTrigger) -> ReloadResult:
        if self._closed:
            errors = ("config: the service is stopping; nothing was reloaded",)
            return ReloadResult("failed", trigger, time.time(), errors=errors)
        try:
            return await self._reload(source, trigger)
        except Exception as exc:  # a bug, not a bad file: say so, keep serving
            log.exception("config reload (%s) failed", trigger)
            errors = (redact(f"config: reload failed: {type(exc).__name__}: {exc}"),)
            return ReloadResult("failed", trigger, time.time(), errors=errors)

    def _done(self, result: ReloadResult) -> ReloadResult:
        self.host.last_reload = result
        self.metrics.count_reload(result.result)
        return result

    async def _reload(self, source: ConfigSource, trigger: ReloadTrigger) -> ReloadResult:
        old = self.host.config
        self._seen = _read(source.path)
        shard = ShardSpec(old.shard.index, old.shard.count)  # the shard this process serves
        try:
            new = await asyncio.to_thread(source.load, shard)
        except ConfigError as exc:
            errors = tuple(redact(p) for p in exc.problems)
            log.error(
                "config reload (%s): %s has %d problem(s); the running config stays",
                trigger, source.path, len(errors),
            )  # fmt: skip
            for problem in errors:
                log.error("%s", problem)
            return ReloadResult("invalid", trigger, time.time(), errors=errors)
        diff = diff_configs(old, new)
        for key in diff.needs_restart:
            log.warning("config reload (%s): %s changed: needs a restart (left as it runs)",
                        trigger, key)  # fmt: skip
        self.host.config = running_config(old, new)
        errors = await self._apply(diff, {c.id: c for c in new.enabled_cameras})
        if diff.changes_cameras:
            self.host.cameras_changed()
        outcome: ReloadOutcome = (
            "failed" if errors else "applied" if diff.changes_cameras else "unchanged"
        )
        log.info(
            "config reload (%s): %s; started: %s; stopped: %s; restarted: %s; lines: %s",
            trigger, outcome, _ids(diff.start), _ids(diff.stop), _ids(diff.restart),
            _ids(diff.lines),
        )  # fmt: skip
        return ReloadResult(
            outcome, trigger, time.time(), started=diff.start, stopped=diff.stop,
            restarted=diff.restart, lines_changed=diff.lines, needs_restart=diff.needs_restart,
            errors=errors,
        )  # fmt: skip

    async def _apply(self, diff: ConfigDiff, cams: dict[str, CameraConfig]) -> tuple[str, ...]:
        """Stops first (a restarted camera's old source must let go of its connection), then
        starts, then line swaps; one camera that fails never stops the others'."""
        errors: list[str] = []

        async def step(what: str, cid: str, coro: Awaitable[None]) -> None:
            try:
                await coro
            except Exception as exc:
                log.exception("config reload: %s camera %s failed", what, cid)
                errors.append(redact(f"cameras({cid}): {what} failed: {type(exc).__name__}: {exc}"))

        for cid in diff.stop + diff.restart:
            await step("stopping", cid, self.host.stop_camera(cid))
        for cid in diff.restart + diff.start:
            await step("starting", cid, self.host.start_camera(cams[cid]))
        for cid in diff.lines:
            try:
                self.host.swap_lines(cams[cid])
            except Exception as exc:
                log.exception("config reload: new lines for camera %s failed", cid)
                errors.append(redact(f"cameras({cid}).lines: {type(exc).__name__}: {exc}"))
        return tuple(errors)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _ids(ids: tuple[str, ...]) -> str:
    return ", ".join(ids) or "-"
