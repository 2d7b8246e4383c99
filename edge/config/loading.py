"""Reading `cameras.yaml`: `${VAR}` expansion, validation, and one `path.to.field: reason` per
problem, so that `edge check` and `edge run` can say exactly what is wrong and where."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.assets import assets_dir
from edge.config.schema import EdgeConfig
from edge.redact import redact_url, register_secret


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one `path.to.field: reason` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"(?i)pass|pwd|secret|token|key|auth|cred")


def expand_env(text: str, where: str = "config") -> str:
    """Replace `${VAR}` and `${VAR:-default}`; `${EDGE_ASSETS}` defaults to the repository's assets.

    A variable that is not set is a ConfigError naming the field (`where`) and the variable."""
    missing: list[str] = []
    result = _expand(text, where, missing)
    if missing:
        raise ConfigError(missing)
    return result


def _expand(text: str, where: str, missing: list[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            value = os.environ[name]
        elif default is not None:
            value = default
        elif name == "EDGE_ASSETS":
            value = str(assets_dir())
        else:
            missing.append(f"{where}: environment variable {name} is not set")
            return m.group(0)
        in_userinfo = _in_url_userinfo(text, m.start(), m.end())
        if in_userinfo or _SECRET_NAME.search(name):
            register_secret(value)
        return _encode_userinfo(value) if in_userinfo else value

    return _VAR.sub(sub, text)


def _in_url_userinfo(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] sits in the `user:password@` part of a URL. A value there is a
    secret whatever its variable's name, registered for redaction as it is (a password with '@'
    or '/' in it is more than a URL pattern can find afterwards)."""
    before = text[:start]
    scheme_end = before.rfind("://")
    return scheme_end >= 0 and "/" not in before[scheme_end + 3 :] and "@" in text[end:]


def _encode_userinfo(value: str) -> str:
    """Percent-encode what would end the user:password part of a URL early ('/', '?', '#', '@'),
    so that a password from the environment may hold any character. '%' is left alone: a value
    already percent-encoded stays as it was."""
    return value.translate({ord(c): f"%{ord(c):02X}" for c in "/?#@"})


def _expand_tree(node: Any, path: str, missing: list[str]) -> Any:
    """Expand every string of the YAML tree; `path` (`cameras[0].url`) names it in errors."""
    if isinstance(node, str):
        return _expand(node, path or "config", missing)
    if isinstance(node, list):
        return [_expand_tree(x, f"{path}[{i}]", missing) for i, x in enumerate(node)]
    if isinstance(node, dict):
        label = node.get("id") if path.startswith("cameras[") else None
        missing_before = len(missing)
        expanded = {
            k: _expand_tree(v, f"{path}.{k}" if path else str(k), missing)
            for k, v in node.items()
        }
        if isinstance(label, str) and "${" not in label:
            missing[missing_before:] = [f"{m} (camera {label})" for m in missing[missing_before:]]
        return expanded
    return node


def _format_error(err: Any, data: Any) -> str:
    loc = list(err["loc"])
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):  # an index, also one past the end (a missing tuple item)
            elem = node[item] if isinstance(node, list) and item < len(node) else None
            label = (
                elem.get("id")
                if isinstance(elem, dict) and isinstance(elem.get("id"), str)
                else None
            )
            parts[-1:] = [f"{parts[-1]}[{item}]" if parts else f"[{item}]"]
            if label:
                parts[-1] += f"({label})"
            node = elem
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return redact_url(f"{'.'.join(parts) or 'config'}: {msg}")


def parse_config(data: Any, base_dir: Path | None = None) -> EdgeConfig:
    """Validate an already-loaded YAML tree; relative model paths resolve against `base_dir`."""
    if not isinstance(data, dict):
        raise ConfigError(["config: must be a mapping with a 'cameras' list"])
    missing: list[str] = []
    data = _expand_tree(data, "", missing)
    if missing:
        raise ConfigError(missing)
    det = data.get("detector")
    if base_dir is not None and isinstance(det, dict) and isinstance(det.get("model"), str):
        model = Path(det["model"]).expanduser()
        if not model.is_absolute():
            det["model"] = str((base_dir / model).resolve())
    problems = _duplicate_ids(data)
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        found = [_format_error(e, data) for e in exc.errors()]
        raise ConfigError(problems + [p for p in found if p not in problems]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _duplicate_ids(data: dict[str, Any]) -> list[str]:
    """Found on the raw tree so that a duplicate is reported even beside other errors."""
    cams = data.get("cameras")
    if not isinstance(cams, list):
        return []
    ids: list[str] = [c["id"] for c in cams if isinstance(c, dict) and isinstance(c.get("id"), str)]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    return [f"cameras: duplicate camera ids: {', '.join(dupes)}"] if dupes else []


def load_config(path: str | Path) -> EdgeConfig:
    """Read, expand `${VARS}` and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"config: cannot read {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
             f"offset {exc.start})"]
        ) from None  # fmt: skip
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            [f"config: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(data, base_dir=path.resolve().parent)
