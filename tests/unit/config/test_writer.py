"""Writing a camera's lines back into cameras.yaml: only its `lines:` node changes, whatever the
file's layout; the write is atomic with a backup; a document that would not validate is not
written."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from edge.assets import REPO_ROOT
from edge.config import ConfigError, LineConfig, load_config
from edge.config.writer import (
    UnknownCamera,
    UnsupportedLayout,
    edit_lines,
    replace_lines,
    write_atomic,
)

DRAWN = LineConfig(name="drawn", points=((1, 2), (3.5, 4)), directions=("east", "west"))
ODD = LineConfig(name="no: #1", points=((0, 0), (10, 0)), directions=("on", "1e3"))


def changed_rows(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
    return [d for d in diff if d[:1] in "+-" and d[:3] not in ("+++", "---")]


def test_repository_config_changes_only_in_the_cameras_lines() -> None:
    text = (REPO_ROOT / "configs" / "cameras.yaml").read_text()
    out = replace_lines(text, "highway", [DRAWN])
    out = replace_lines(out, "overpass", [])
    out = replace_lines(out, "parking", [ODD])
    assert changed_rows(text, out) == [
        "-      - name: north",
        "-        points: [[120, 140], [300, 140]]",
        "-        directions: [toward, away]",
        "-      - name: west",
        "-        points: [[100, 40], [100, 150]]",
        "-        directions: [toward, away]",
        "+      - name: drawn",
        "+        points: [[1, 2], [3.5, 4]]",
        "+        directions: [east, west]",
        "-    lines:",
        "-      - name: all-lanes",
        "-        points: [[150, 300], [820, 300]]",
        "-        directions: [toward, away]",
        "+    lines: []",
        "+    lines:",
        '+      - name: "no: #1"',
        "+        points: [[0, 0], [10, 0]]",
        "+        directions: [\"on\", '1e3']",  # quoted for a YAML 1.1 reader and a 1.2 one
    ]
    assert "    lines:  # hand-checked on the clip" in out  # the key's comment stays


def test_other_layouts_and_comments(tmp_path: Path) -> None:
    text = (
        "cameras:\n"
        "- id: a   # first\n"
        "  url: rtsp://u:${PW}@h/a\n"
        "  lines: [{name: x, points: [[1, 1], [2, 2]]}]  # flow\n"
        "  # a comment for the next key\n"
        "  fps: 5\n"
        "- id: b\n"
        "  url: rtsp://h/b"  # no newline at the end of the file
    )
    out = replace_lines(text, "a", [DRAWN])
    assert out.splitlines()[3:8] == [
        "  lines:  # flow",
        "  - name: drawn",
        "    points: [[1, 2], [3.5, 4]]",
        "    directions: [east, west]",
        "  # a comment for the next key",
    ]
    out = replace_lines(out, "b", [DRAWN])
    tail = "  lines:\n  - name: drawn\n    points: [[1, 2], [3.5, 4]]\n    directions: [east, west]"
    assert out.endswith("  url: rtsp://h/b\n" + tail + "\n")
    assert "${PW}" in out
    path = tmp_path / "c.yaml"
    path.write_text(out)
    os.environ["PW"] = "pw-for-test"
    try:
        config = load_config(path)
    finally:
        del os.environ["PW"]
    assert [c.lines for c in config.cameras] == [[DRAWN], [DRAWN]]


def test_refusals() -> None:
    with pytest.raises(UnknownCamera):
        replace_lines("cameras:\n  - id: a\n    url: x\n", "b", [])
    with pytest.raises(UnsupportedLayout, match="flow style"):
        replace_lines("cameras:\n  - {id: a, url: x}\n", "a", [DRAWN])
    with pytest.raises(ConfigError, match=r"invalid YAML \(line 3"):
        replace_lines("cameras:\n  - id: [a\n", "a", [])
    with pytest.raises(ConfigError, match="'cameras' list"):
        replace_lines("server: {}\n", "a", [])


def test_edit_lines_is_atomic_keeps_a_backup_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    original = "# mine\ncameras:\n  - id: a\n    url: rtsp://h/a\n"
    path.write_text(original)
    path.chmod(0o640)
    config = edit_lines(path, "a", [DRAWN])
    assert config.cameras[0].lines == [DRAWN]
    assert path.read_text().startswith(original) and "name: drawn" in path.read_text()
    assert (tmp_path / "cameras.yaml.bak").read_text() == original
    assert path.stat().st_mode & 0o777 == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_edit_lines_follows_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("cameras:\n  - id: a\n    url: rtsp://h/a\n")
    link = tmp_path / "cameras.yaml"
    link.symlink_to(real)
    edit_lines(link, "a", [DRAWN])
    assert link.is_symlink() and "drawn" in real.read_text()


def test_nothing_written_when_the_file_would_not_validate(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    broken = "cameras:\n  - id: a\n    url: rtsp://h/a\n    colour: red\n"
    path.write_text(broken)
    with pytest.raises(ConfigError, match="colour: unknown key"):
        edit_lines(path, "a", [DRAWN])
    assert path.read_text() == broken and not (tmp_path / "cameras.yaml.bak").exists()


def test_write_atomic_creates_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.yaml"
    write_atomic(path, "cameras: []\n")
    assert path.read_text() == "cameras: []\n" and not (tmp_path / "new.yaml.bak").exists()


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_bytes(b"cameras:\n  - id: a\n    url: rtsp://h/\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        edit_lines(path, "a", [DRAWN])


def test_empty_lines_key_and_commented_out_lines() -> None:
    text = (
        "cameras:\n  - id: a\n    url: x\n    lines:\n    # old ones:\n    #   - name: z\n"
        "  - id: b\n    url: y\n    lines:\n      - name: q\n        points: [[1, 1], [2, 2]]\n"
        "      # - name: commented out\n# end\n"
    )
    line = LineConfig(name="d", points=((1, 2), (3, 4)))
    out = replace_lines(text, "a", [line])
    assert changed_rows(text, out) == [
        "+      - name: d", "+        points: [[1, 2], [3, 4]]", "+        directions: [in, out]",
    ]  # fmt: skip
    out = replace_lines(text, "b", [line])
    assert changed_rows(text, out) == [
        "-      - name: q", "-        points: [[1, 1], [2, 2]]",
        "+      - name: d", "+        points: [[1, 2], [3, 4]]", "+        directions: [in, out]",
    ]  # fmt: skip
    assert out.endswith("      # - name: commented out\n# end\n")


def test_a_list_written_at_its_key_s_column_is_replaced_whole() -> None:
    """PyYAML (and many people) write `- name:` at the column of `lines:`; an edit replaces those
    items rather than adding the new ones before them."""
    text = (
        "cameras:\n"
        "- id: a\n"
        "  lines:\n"
        "  - name: old\n"
        "    points:\n"
        "    - - 0\n"
        "      - 150\n"
        "    - [320, 150]\n"
        "  -\n"
        "    name: older\n"
        "    points: [[0, 1], [2, 3]]\n"
        "  url: rtsp://h/a\n"
        "- id: b\n"
        "  url: rtsp://h/b\n"
    )
    out = replace_lines(text, "a", [DRAWN])
    assert out == (
        "cameras:\n"
        "- id: a\n"
        "  lines:\n"
        "  - name: drawn\n"
        "    points: [[1, 2], [3.5, 4]]\n"
        "    directions: [east, west]\n"
        "  url: rtsp://h/a\n"
        "- id: b\n"
        "  url: rtsp://h/b\n"
    )
    assert replace_lines(out, "a", [DRAWN]) == out
