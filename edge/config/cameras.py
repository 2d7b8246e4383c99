"""The `cameras:` entries of `cameras.yaml`: a camera's source URL (whose credentials are
registered as secrets the moment they are parsed) and its counting lines."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config.base import Strict
from edge.redact import redact_url, register_secret, register_url_secrets

_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_URL_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "file", "udp", "tcp", "srt"}


Point = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]


class LineConfig(Strict):
    name: str = Field(
        min_length=1, max_length=64, description="Counting line name, unique per camera."
    )
    points: tuple[Point, Point] = Field(description="Two points [x, y] in source pixels.")
    directions: tuple[str, str] = Field(
        default=("in", "out"),
        description="Names for crossing left→right of p1→p2 and the reverse.",
    )

    @model_validator(mode="after")
    def _not_degenerate(self) -> LineConfig:
        if self.points[0] == self.points[1]:
            raise ValueError("the two points of a line must differ")
        return self


def _password_cut_short(url: str, netloc: str) -> bool:
    """`rtsp://user:pa/ss@host`: an unencoded '/', '?' or '#' ends the authority inside the
    password, so the host parsed is the user's name. Told apart from `rtsp://host:554/a@b` by
    what follows the ':' (a port is digits)."""
    if "@" in netloc:
        return False
    rest = url.partition("://")[2]
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return "@" in rest and ":" in head and not head.rpartition(":")[2].isdigit()


class CameraConfig(Strict):
    id: str = Field(description="Short unique id, used in metrics, URLs and events.")
    url: str = Field(description="rtsp://, http(s):// or a file path; credentials are redacted.")
    name: str | None = Field(default=None, description="Display name; the id when absent.")
    enabled: bool = True
    fps: float | None = Field(
        default=None, gt=0, le=240, description="Cap on processed frames per second."
    )
    width: int | None = Field(
        default=None, ge=64, le=7680, description="Processing/output width cap in pixels."
    )
    lines: list[LineConfig] = Field(default_factory=list)
    realtime: bool = Field(
        default=True,
        description="Files only: play at recorded speed like a live camera (false: as taken).",
    )
    loop: bool = Field(default=False, description="Files only: start again at the end.")

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(
                "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit"
            )
        return v

    @field_validator("url")
    @classmethod
    def _url_shape(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme and len(parts.scheme) > 1:
            if parts.scheme.lower() not in _URL_SCHEMES:
                raise ValueError(f"unsupported scheme {parts.scheme!r}")
            if _password_cut_short(v, parts.netloc):
                register_url_secrets(v)  # the URL pattern finds a password cut short like this
                raise ValueError(
                    "a '/', '?' or '#' in the user:password part must be percent-encoded "
                    "(%2F, %3F, %23)"
                )
            if parts.scheme.lower() != "file" and not parts.hostname:
                raise ValueError(f"{redact_url(v)!r} has no host")
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError as exc:
                raise ValueError(f"{redact_url(v)!r}: bad port") from exc
            register_secret(parts.password)
        elif not v.strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _unique_lines(self) -> CameraConfig:
        names = [line.name for line in self.lines]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate line names: {', '.join(dupes)}")
        return self

    def lines_outside(self, width: int, height: int) -> list[str]:
        """`lines[i](name): ...` for each line with a point outside a `width`×`height` frame
        (the size the camera reports): such a line is in the wrong pixels, and may never count."""
        out = []
        for i, line in enumerate(self.lines):
            for x, y in line.points:
                if x > width or y > height:
                    out.append(f"lines[{i}]({line.name}): point ({x:g}, {y:g}) lies outside the "
                               f"{width}x{height} frame the camera reports")  # fmt: skip
        return out

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)
