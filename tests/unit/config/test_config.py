from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import (
    COCO_VEHICLES,
    ConfigError,
    ServerConfig,
    expand_env,
    load_config,
    parse_config,
)
from edge.config.ocr import OcrConfig
from edge.config.schema import is_loopback_host

REPO = Path(__file__).resolve().parents[3]


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"cameras": [{"id": "cam1", "url": "rtsp://127.0.0.1:8554/a"}]}
    data.update(over)
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return err.value.problems


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "configs" / "cameras.yaml")
    assert [c.id for c in config.cameras] == ["highway", "overpass", "parking"]
    assert config.detector.model.is_file()


def test_defaults_mirror_the_original_app() -> None:
    d = parse_config(base()).detector
    assert (d.input_size, d.conf, d.iou, d.max_det) == (416, 0.25, 0.50, 30)
    assert tuple(d.classes) == COCO_VEHICLES
    assert d.cuda.arena_extend_strategy == "kNextPowerOfTwo"
    assert d.cuda.gpu_mem_limit == 2 * 1024**3
    assert d.cuda.cudnn_conv_algo_search == "EXHAUSTIVE"
    assert d.cuda.do_copy_in_default_stream is True
    assert parse_config(base()).ocr.attempts == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (base(bogus=1), "bogus: unknown key"),
        (base(detector={"conf": 1.5}), "detector.conf: Input should be less than 1"),
        (base(detector={"iou": 0}), "detector.iou: Input should be greater than 0"),
        (
            base(detector={"input_size": 400}),
            "detector.input_size: Input should be a multiple of 32",
        ),
        (
            base(detector={"model": "/no/such.onnx"}),
            "detector.model: file not found: /no/such.onnx",
        ),
        (base(detector={"cuda": {"device": 0}}), "detector.cuda.device: unknown key"),
        (
            base(detector={"workers": -1}),
            "detector.workers: Input should be greater than or equal to 0",
        ),
        (
            base(detector={"max_batch": 0}),
            "detector.max_batch: Input should be greater than or equal to 1",
        ),
        (base(server={"port": 70000}), "server.port: Input should be less than or equal to 65535"),
        ({"cameras": []}, "cameras: List should have at least 1 item"),
        ({}, "cameras: Field required"),
        (
            {"cameras": [{"id": "a", "url": "rtsp://h/x"}, {"id": "a", "url": "rtsp://h/y"}]},
            "cameras: duplicate camera ids: a",
        ),
        (
            {"cameras": [{"id": "a", "url": "ftp://h/x"}]},
            "cameras[0](a).url: unsupported scheme 'ftp'",
        ),
        (
            {"cameras": [{"id": "a", "url": "rtsp:///x"}]},
            "cameras[0](a).url: 'rtsp:///x' has no host",
        ),
        ({"cameras": [{"id": "a b", "url": "rtsp://h/x"}]}, "cameras[0](a b).id: must be 1-64"),
        (
            {"cameras": [{"id": "a", "url": "rtsp://h/x", "fps": 0}]},
            "cameras[0](a).fps: Input should",
        ),
        (
            {
                "cameras": [
                    {
                        "id": "a",
                        "url": "rtsp://h/x",
                        "lines": [{"name": "l", "points": [[1, 1], [1, 1]]}],
                    }
                ]
            },
            "cameras[0](a).lines[0]: the two points of a line must differ",
        ),
        (
            base(ingest={"backoff_initial_s": 5, "backoff_max_s": 1}),
            "ingest: backoff_max_s must be >=",
        ),
        ("just text", "config: must be a mapping"),
        (
            base(detector={"letterbox": "wide"}),
            "detector.letterbox: Input should be 'auto', 'square' or 'rect'",
        ),
        (
            base(server={"auth": "none", "auth_token": "tok-12345678"}),
            "server: auth is 'none' but auth_token is set",
        ),
        (base(server={"auth": "token"}), "server: auth is 'token' but auth_token is not set"),
        (base(server={"auth": "off"}), "server.auth: Input should be 'token' or 'none'"),
        (base(server={"auth_token": "short"}), "server.auth_token: String should have at least"),
        (
            base(stream={"connect_timeout_s": 0}),
            "stream.connect_timeout_s: Input should be greater than 0",
        ),
        (
            base(stream={"max_viewers_per_client": 0}),
            "stream.max_viewers_per_client: Input should be greater than or equal to 1",
        ),
    ],
)
def test_invalid_configs_name_the_field(data: Any, expected: str) -> None:
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "cameras": [{"id": "a", "url": "rtsp://h/x"}, {"id": "a", "url": "bad://x", "fps": -1}],
        "detector": {"conf": 2},
    }
    found = problems(data)
    assert "cameras: duplicate camera ids: a" in found
    assert any(p.startswith("cameras[1](a).url") for p in found)
    assert any(p.startswith("cameras[1](a).fps") for p in found)
    assert any(p.startswith("detector.conf") for p in found)


def test_errors_never_show_a_password() -> None:
    found = problems({"cameras": [{"id": "a", "url": "rtsp://admin:hunter22@:99999/x"}]})
    assert found and not any("hunter22" in p for p in found)


@pytest.mark.parametrize("password", ["pa/ss-42", "pa?ss-42", "pa#ss-42"])
def test_a_raw_delimiter_in_the_password_asks_for_percent_encoding(password: str) -> None:
    found = problems({"cameras": [{"id": "a", "url": f"rtsp://admin:{password}@10.0.0.5/x"}]})
    assert found == [
        "cameras[0](a).url: a '/', '?' or '#' in the user:password part must be percent-encoded "
        "(%2F, %3F, %23)"
    ]
    port_then_path = parse_config({"cameras": [{"id": "a", "url": "rtsp://10.0.0.5:554/a@b"}]})
    assert port_then_path.cameras[0].url == "rtsp://10.0.0.5:554/a@b"


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PW", "s3cret")
    assert expand_env("rtsp://u:${CAM_PW}@h/x") == "rtsp://u:s3cret@h/x"
    assert expand_env("${NOPE_NOT_SET:-fallback}") == "fallback"
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        expand_env("${NOPE_NOT_SET}")


def test_relative_model_path_resolves_against_the_config(tmp_path: Path, model_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.onnx").write_bytes(model_path.read_bytes()[:10])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base(detector={"model": "m/x.onnx"})))
    assert load_config(cfg).detector.model == tmp_path / "m" / "x.onnx"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cameras:\n  - id: a\n    url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML \(line"):
        load_config(cfg)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("camera-box.lan", False),
        ("localhost.evil.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("server", "refused", "open_beyond_loopback"),
    [
        ({}, False, False),  # 127.0.0.1, no token
        ({"host": "localhost"}, False, False),
        ({"host": "0.0.0.0"}, True, True),
        ({"host": "192.168.1.20"}, True, True),
        ({"host": "0.0.0.0", "auth_token": "tok-12345678"}, False, False),
        ({"host": "0.0.0.0", "auth": "none"}, False, True),  # allowed, warned at start
        ({"host": "::", "auth": "token", "auth_token": "tok-12345678"}, False, False),
    ],
)
def test_serving_beyond_loopback_needs_a_token_or_auth_none(
    server: dict[str, str], refused: bool, open_beyond_loopback: bool
) -> None:
    config = ServerConfig(**server)
    problem = config.exposure_problem()
    assert (problem is not None) is refused
    assert config.is_open_beyond_loopback is open_beyond_loopback
    if problem is not None:  # one line naming what to change
        assert "\n" not in problem
        assert problem.startswith(f"server.host: {server['host']!r} is reachable")
        for name in ("server.auth_token", "server.auth: none"):
            assert name in problem


def test_exposure_is_checked_on_the_overridden_host() -> None:
    config = parse_config(base(server={"host": "0.0.0.0"}))
    assert config.server.exposure_problem() is not None
    config.server.host = "127.0.0.1"  # what `edge run --host 127.0.0.1` does
    assert config.server.exposure_problem() is None
    config.server.host = "0.0.0.0"
    assert config.server.exposure_problem() is not None


def test_an_empty_token_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_TEST_TOKEN", raising=False)
    assert (
        parse_config(base(server={"auth_token": "${EDGE_TEST_TOKEN:-}"})).server.auth_token is None
    )
    monkeypatch.setenv("EDGE_TEST_TOKEN", "tok-12345678")
    token = parse_config(base(server={"auth_token": "${EDGE_TEST_TOKEN:-}"})).server.auth_token
    assert token == "tok-12345678"


def test_viewer_caps_default_to_a_shared_box() -> None:
    stream = parse_config(base()).stream
    assert stream.max_viewers_per_client < stream.max_viewers_per_camera < stream.max_viewers
    assert 0 < stream.connect_timeout_s <= 10


def test_ocr_min_confidence_defaults_per_backend_unless_set() -> None:
    """The backends score on different scales: an unset floor follows the backend."""
    assert OcrConfig().confidence_floor == 0.8
    assert OcrConfig(backend="easyocr").confidence_floor == 0.5
    assert OcrConfig(backend="easyocr", min_confidence=0.7).confidence_floor == 0.7
    assert OcrConfig(min_confidence=0.0).confidence_floor == 0.0
