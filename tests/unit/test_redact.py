from __future__ import annotations

import logging

import pytest

from edge.redact import RedactingFilter, redact, redact_url, register_secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pass@10.0.0.1:554/s", "rtsp://user:***@10.0.0.1:554/s"),
        ("rtsp://user:p%40ss@h/s", "rtsp://user:***@h/s"),
        ("rtsp://h/s", "rtsp://h/s"),
        (
            "opening rtsp://a:b@h/1 and http://c:d@h/2",
            "opening rtsp://a:***@h/1 and http://c:***@h/2",
        ),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_registered_secret_is_masked() -> None:
    register_secret("tok-abcdef123")
    assert redact("Authorization: Bearer tok-abcdef123") == "Authorization: Bearer ***"


def test_filter_masks_args_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("edge.test_redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise ConnectionError("cannot open rtsp://admin:hunter22@cam/1")
    except ConnectionError:
        log.exception("camera %s failed", "rtsp://admin:hunter22@cam/1")
    assert "hunter22" not in caplog.text
    assert "rtsp://admin:***@cam/1" in caplog.text
