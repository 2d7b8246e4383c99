"""Writing a camera's counting lines back into `cameras.yaml` without disturbing the rest.

    config = edit_lines(Path("cameras.yaml"), "highway", [LineConfig(...), ...])

Only the camera's `lines:` node changes; every other byte of the file stays as the user wrote it
(comments, blank lines, indentation, `${VAR}` references, key order). ruamel.yaml (round-trip)
finds where the camera and its `lines:` node sit and renders the new node; the text around it is
spliced in unchanged, because re-emitting the whole document would reflow comments and indents.

The file is replaced atomically: the new text goes to a temporary file in the same folder, is
flushed to disk and renamed over the old one, so a reader (the service's file watcher, `edge
check`, an editor) sees the old or the new file, never half of one. The previous version is kept
beside it as `cameras.yaml.bak`. Writers take an exclusive `flock` on `.cameras.yaml.lock` for the
whole read-edit-write, so two writers (two API requests, two processes) never interleave. The new
document must pass `parse_config` before it replaces the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from edge.config.cameras import LineConfig
from edge.config.loading import ConfigError, expand_env, parse_config
from edge.config.schema import EdgeConfig

BACKUP_SUFFIX = ".bak"
EDIT_ATTEMPTS = 3
"""Times an edit starts over when someone else changed the file meanwhile."""


class UnknownCamera(LookupError):
    """The camera id is not among the file's `cameras:`."""


class FileBusy(RuntimeError):
    """The file changed under every attempt to edit it (someone else keeps saving it)."""


class UnsupportedLayout(ValueError):
    """The file is valid but written in a way the splice cannot edit safely (a camera in flow
    style, `{id: a, url: b}`); the message says what to change."""


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def line_to_yaml(line: LineConfig) -> dict[str, Any]:
    """A line as it is written: integral coordinates as ints (`[120, 140]`, not `[120.0, ...]`)."""

    def num(v: float) -> int | float:
        return int(v) if float(v).is_integer() else float(v)

    return {
        "name": line.name,
        "points": [[num(x), num(y)] for x, y in line.points],
        "directions": list(line.directions),
    }


def replace_lines(text: str, camera_id: str, lines: Sequence[LineConfig]) -> str:
    """`text` with camera `camera_id`'s `lines:` node replaced by `lines`; nothing else changes.

    Raises ConfigError for text that is not YAML or has no `cameras:` list, UnknownCamera, and
    UnsupportedLayout."""
    rt = YAML(typ="rt")
    try:
        doc = rt.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError([f"config: invalid YAML{where}: {problem}"]) from None
    cameras = doc.get("cameras") if isinstance(doc, CommentedMap) else None
    if not isinstance(cameras, CommentedSeq):
        raise ConfigError(["config: must be a mapping with a 'cameras' list"])
    if cameras.fa.flow_style():
        raise UnsupportedLayout("cameras: written in flow style ([...]); write it as a block list")
    index = _camera_index(cameras, camera_id)
    camera = cameras[index]
    if camera.fa.flow_style():
        raise UnsupportedLayout(
            f"cameras[{index}]({camera_id}): written in flow style ({{...}}); write it as a block "
            "mapping to edit its lines"
        )
    rows = text.splitlines(keepends=True)
    if rows and not rows[-1].endswith("\n"):
        rows[-1] += "\n"  # so that rows appended after the last one start on their own
    key_col = camera.lc.col
    indent, offset = _sequence_indent(text)
    rendered = _render(lines, indent, offset)
    pad = " " * key_col
    if "lines" in camera:
        key_line, _ = camera.lc.key("lines")
        value_line, _ = camera.lc.value("lines")
        value = camera["lines"]
        # `lines:` may hold its items at its own column (`- name:` under `lines:`, as PyYAML
        # writes lists): those rows belong to it too
        end = _block_end(rows, key_line + 1, key_col, isinstance(value, CommentedSeq))
        block_value = (
            isinstance(value, CommentedSeq)
            and value_line > key_line
            and not value.fa.flow_style()
            and lines
        )
        if block_value:  # `lines:  # comment` stays as written; only the items change
            new = [rows[key_line]] + [pad + r for r in rendered[1:]]
        else:
            head = pad + (rendered[0] if lines else "lines: []\n")
            new = [_with_comment(head, camera, key_line)] + [pad + r for r in rendered[1:]]
        rows[key_line:end] = new
    elif lines:
        last_key = list(camera)[-1]
        end = _block_end(rows, camera.lc.key(last_key)[0] + 1, key_col)
        rows[end:end] = [pad + r for r in rendered]
    return "".join(rows)


def _camera_index(cameras: CommentedSeq, camera_id: str) -> int:
    for i, cam in enumerate(cameras):
        if not isinstance(cam, CommentedMap):
            continue
        raw = cam.get("id")
        if not isinstance(raw, str):
            continue
        try:
            expanded = expand_env(raw)
        except ConfigError:
            expanded = raw
        if camera_id in (raw, expanded):
            return i
    raise UnknownCamera(f"camera {camera_id!r} is not in the file")


def _block_end(rows: list[str], start: int, key_col: int, sequence: bool = False) -> int:
    """The row after the last one of the node that begins above `start`: its content rows are
    those indented deeper than `key_col` (its key's column), and with `sequence` also the items
    of a list written at the key's own column. Comments and blank rows between the node and what
    follows stay with what follows."""
    end = start
    for i in range(start, len(rows)):
        stripped = rows[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        col = len(rows[i]) - len(rows[i].lstrip(" "))
        item_at_key = sequence and col == key_col and (stripped == "-" or stripped.startswith("- "))
        if col < key_col or (col == key_col and not item_at_key):
            break
        end = i + 1
    return end


def _sequence_indent(text: str) -> tuple[int, int]:
    """(sequence indent, dash offset) as the file writes its lists: `cameras:\\n  - id:` is
    (4, 2); `cameras:\\n- id:` is (2, 0)."""
    try:
        _, indent, offset = load_yaml_guess_indent(text)
    except YAMLError:
        return 4, 2
    indent = indent if isinstance(indent, int) and indent > 0 else 2
    offset = offset if isinstance(offset, int) and 0 <= offset < indent else 0
    if offset == 0 and indent < 2:
        indent = 2
    return max(indent, offset + 2), offset


def _render(lines: Sequence[LineConfig], indent: int, offset: int) -> list[str]:
    """`lines:` and its items in block style, points and directions in flow style, unindented."""
    out = YAML(typ="rt")
    out.indent(mapping=indent - offset, sequence=indent, offset=offset)
    out.width = 4096
    items = CommentedSeq()
    for line in lines:
        data = line_to_yaml(line)
        item = CommentedMap()
        item["name"] = _text(data["name"])
        item["points"] = _flow([_flow(p) for p in data["points"]])
        item["directions"] = _flow([_text(d) for d in data["directions"]])
        items.append(item)
    buffer = io.StringIO()
    out.dump({"lines": items}, buffer)
    return buffer.getvalue().splitlines(keepends=True)


def _text(value: str) -> str:
    """Quoted where a YAML 1.1 reader (PyYAML, which the service loads with) would read the
    plain word as something else: `yes`, `off`, `1e3`, `~`. ruamel writes YAML 1.2 and would
    leave them plain."""
    try:
        plain_ok = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain_ok = False
    return value if plain_ok else DoubleQuotedScalarString(value)


def _flow(items: list[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _with_comment(head: str, camera: CommentedMap, key_line: int) -> str:
    """Keep the end-of-line comment of a `lines: [...]  # comment` row that is rewritten."""
    tokens = camera.ca.items.get("lines") or []
    token = tokens[2] if len(tokens) > 2 else None
    value = getattr(token, "value", "")
    if token is None or getattr(token, "start_mark", None) is None:
        return head
    if token.start_mark.line != key_line or not value.lstrip().startswith("#"):
        return head
    first = value.lstrip().split("\n", 1)[0]  # the token also holds the comment rows below
    return head.rstrip("\n") + "  " + first.rstrip() + "\n"


def check_text(text: str, path: Path) -> EdgeConfig:
    """Validate a whole new document as the service will load it (ConfigError when not)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"config: the edited file is not valid YAML: {exc}"]) from None
    return parse_config(data, base_dir=path.resolve().parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive `flock` on the config's lock file, between threads and processes alike (each
    holder opens its own file description)."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the description releases the lock


def write_atomic(path: Path, text: str, keep_backup: bool = True) -> None:
    """Replace `path` by `text` with temp file + fsync + rename (same folder, same mode); the
    previous content goes to `path.bak` the same way first."""
    mode = 0o644
    if path.exists():
        mode = path.stat().st_mode & 0o7777
        if keep_backup:
            _replace(backup_path(path), path.read_bytes(), mode)
    _replace(path, text.encode("utf-8"), mode)


def _replace(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def edit_lines(path: Path, camera_id: str, lines: Sequence[LineConfig]) -> EdgeConfig:
    """Set camera `camera_id`'s lines in the file at `path` (a symlink's target is edited) and
    return the new config. Nothing is written when the new document does not validate.

    A writer that does not take the lock (a person's editor) may save while the edit is made:
    the file is read again just before it is replaced, and a change starts the edit over, so
    that a person's save is not silently undone (a window of a few syscalls remains).

    Raises ConfigError (the file or the edit does not validate), UnknownCamera,
    UnsupportedLayout, FileBusy and OSError (cannot read or write the file)."""
    path = Path(path).resolve()
    with file_lock(path):
        for _ in range(EDIT_ATTEMPTS):
            text = _read(path)
            new_text = replace_lines(text, camera_id, lines)
            config = check_text(new_text, path)
            written = next((c.lines for c in config.cameras if c.id == camera_id), None)
            if written != list(lines):  # the splice must have said what was asked, or nothing
                raise UnsupportedLayout(
                    f"camera {camera_id!r}: its lines could not be edited in place; edit the file"
                )
            if _read(path) == text:
                write_atomic(path, new_text)
                return config
    raise FileBusy(f"{path.name} kept changing while it was being edited; try again")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"config: cannot read {path}: not UTF-8 text ({exc.reason})"]) from None
