"""`${VAR}` expansion while loading: errors name the field, secrets it brings are registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from edge.config import ConfigError, expand_env, load_config, parse_config
from edge.redact import redact


def cameras(*urls: str, **extra: Any) -> dict[str, Any]:
    return {"cameras": [{"id": f"cam{i}", "url": u} for i, u in enumerate(urls, 1)], **extra}


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_a_missing_variable_names_the_field_and_the_camera(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CAM1_PASSWORD", raising=False)
    found = problems_of(cameras("rtsp://admin:${CAM1_PASSWORD}@10.0.0.5/s"))
    assert found == ["cameras[0].url: environment variable CAM1_PASSWORD is not set (camera cam1)"]


def test_every_missing_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch):
    for name in ("NOPE_A", "NOPE_B", "NOPE_C"):
        monkeypatch.delenv(name, raising=False)
    data = cameras("rtsp://h/x", "rtsp://u:${NOPE_A}@h/y", server={"auth_token": "${NOPE_B}"})
    data["cameras"][0]["lines"] = [{"name": "${NOPE_C}", "points": [[0, 0], [1, 1]]}]
    assert problems_of(data) == [
        "cameras[0].lines[0].name: environment variable NOPE_C is not set (camera cam1)",
        "cameras[1].url: environment variable NOPE_A is not set (camera cam2)",
        "server.auth_token: environment variable NOPE_B is not set",
    ]


def test_a_file_with_a_missing_variable_says_where(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("EDGE_TEST_UNSET", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cameras("${EDGE_TEST_UNSET}")))
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.url: environment variable EDGE_TEST"):
        load_config(path)


def test_defaults_and_set_variables_expand(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CAM_HOST", "10.0.0.7")
    monkeypatch.delenv("CAM_PATH", raising=False)
    config = parse_config(cameras("rtsp://${CAM_HOST}/${CAM_PATH:-main}"))
    assert config.cameras[0].url == "rtsp://10.0.0.7/main"
    with pytest.raises(ConfigError, match=r"^where: environment variable CAM_PATH is not set$"):
        expand_env("${CAM_PATH}", "where")


@pytest.mark.parametrize("password", ["p@ss/w:rd#1", "Zz9%2Fslash", "only-letters"])
def test_a_password_from_the_environment_is_masked_however_odd(
    password: str, monkeypatch: pytest.MonkeyPatch
):
    """In the user:password part of a URL the value is a secret whatever the variable's name;
    raw '@' or '/' would defeat any URL pattern afterwards."""
    monkeypatch.setenv("CAM_LOGIN_VALUE", password)
    parse_config(cameras("rtsp://admin:${CAM_LOGIN_VALUE}@10.0.0.5/s"))
    leaked = f"cannot open 'rtsp://admin:{password}@10.0.0.5/s': refused; tried {password}"
    assert password not in redact(leaked)


@pytest.mark.parametrize(
    ("password", "in_url"),
    [
        ("p@ss/w:rd#1?", "p%40ss%2Fw:rd%231%3F"),
        ("already%2Fencoded", "already%2Fencoded"),
        ("plain", "plain"),
    ],
)
def test_a_password_from_the_environment_is_encoded_into_its_url(
    password: str, in_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A password may hold any character; what would end the URL's user:password part early is
    percent-encoded, so that the host stays the host."""
    monkeypatch.setenv("CAM_LOGIN_VALUE", password)
    config = parse_config(cameras("rtsp://admin:${CAM_LOGIN_VALUE}@10.0.0.5:554/s"))
    url = config.cameras[0].url
    assert url == f"rtsp://admin:{in_url}@10.0.0.5:554/s"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("10.0.0.5", 554, "/s")
    assert unquote(parts.password or "") == unquote(password)
    assert config.cameras[0].safe_url == "rtsp://admin:***@10.0.0.5:554/s"


def test_other_variables_in_a_url_are_not_encoded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CAM_PATH", "live/main?channel=1")
    config = parse_config(cameras("rtsp://10.0.0.5/${CAM_PATH}"))
    assert config.cameras[0].url == "rtsp://10.0.0.5/live/main?channel=1"


def test_secret_names_are_registered_anywhere_and_other_values_are_not(monkeypatch):
    monkeypatch.setenv("EDGE_TEST_TOKEN", "tok-Qwerty-1234")
    monkeypatch.setenv("EDGE_TEST_SITE", "north-gate-site")
    parse_config(
        cameras("rtsp://h/x", server={"auth_token": "${EDGE_TEST_TOKEN}"})
        | {"cameras": [{"id": "a", "url": "rtsp://h/x", "name": "${EDGE_TEST_SITE}"}]}
    )
    assert redact("token tok-Qwerty-1234") == "token ***"
    assert redact("camera at north-gate-site") == "camera at north-gate-site"
