from __future__ import annotations

import logging
import sys
import threading
from urllib.parse import quote, quote_plus

import pytest

from edge.redact import (
    RedactingFilter,
    describe_exception,
    format_exception,
    install_exception_redaction,
    redact,
    redact_url,
    register_secret,
    register_url_secrets,
)


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


ODD_PASSWORDS = ["p@ss/w:rd", "a:b@c/d?e#f", 'it\'s "quoted"', "back\\slash%20pct", "Pässwört"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_a_registered_password_is_masked_in_every_form_a_library_prints(password: str) -> None:
    register_secret(password)
    encoded = quote(password, safe="")
    texts = [
        f"[Errno 5] Input/output error: 'rtsp://admin:{password}@10.0.0.9/x'",  # PyAV's repr
        f"cannot open rtsp://admin:{encoded}@10.0.0.9/x",
        f"rtsp:/admin:{password}@10.0.0.9/x: file not found",  # pathlib folded the //
        repr(f"rtsp://admin:{password}@h/x"),
        f"password={quote_plus(password)}",
    ]
    for text in texts:
        clean = redact(text)
        assert password not in clean and encoded not in clean, clean
        assert quote_plus(password) not in clean and repr(password)[1:-1] not in clean


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_url_passwords_are_found_however_they_are_written(password: str) -> None:
    raw = f"rtsp://user:{password}@cam.local:554/live"
    register_url_secrets(raw)
    register_url_secrets(f"rtsp://user:{quote(password, safe='')}@cam.local:554/live")
    assert password not in redact(f"PyAV: {raw!r}")
    assert "user:***@cam.local:554/live" in redact_url(raw)


def test_redact_url_takes_the_last_at_sign_before_the_host() -> None:
    assert redact_url("rtsp://u:p@ss@host/x") == "rtsp://u:***@host/x"
    assert redact_url("rtsp://u@corp:pw@host/x") == "rtsp://u@corp:***@host/x"
    assert redact_url("see rtsp://host:554/x and http://a:b@h/") == (
        "see rtsp://host:554/x and http://a:***@h/"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /api/cameras?token=abc123xyz", "GET /api/cameras?token=***"),
        ("http://h/x?user=a&password=hunter2&x=1", "http://h/x?user=a&password=***&x=1"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("no secrets here: a=b, c:d", "no secrets here: a=b, c:d"),
        ("", ""),
    ],
)
def test_secret_query_parameters_and_headers_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_short_strings_are_not_registered() -> None:
    register_secret("ab1")
    register_url_secrets("rtsp://u:ab1@h/x")
    assert redact("tab1e ab1") == "tab1e ab1"  # would blank out ordinary text
    assert redact("rtsp://u:ab1@h/x") == "rtsp://u:***@h/x"  # the URL pattern still masks it


def test_describe_exception_is_one_redacted_line_from_inside_groups() -> None:
    inner = OSError("cannot open rtsp://a:Zebra-42@h/x:\n  Connection refused")
    group = ExceptionGroup("unhandled errors in a TaskGroup", [inner])
    assert describe_exception(group) == "cannot open rtsp://a:***@h/x: Connection refused"
    assert describe_exception(RuntimeError()) == "RuntimeError"


def test_uncaught_errors_in_threads_and_main_are_printed_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("excepthook", "unraisablehook"):
        monkeypatch.setattr(sys, name, getattr(sys, name))
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_exception_redaction()

    def fail() -> None:
        raise ConnectionError("rtsp://admin:Thr3adPw@cam/1 went away")

    thread = threading.Thread(target=fail, name="ingest-cam1")
    thread.start()
    thread.join()
    try:
        fail()
    except ConnectionError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "Exception in thread ingest-cam1" in err and "Traceback" in err
    assert err.count("ConnectionError: rtsp://admin:***@cam/1 went away") == 2
    assert "Thr3adPw" not in err
    exc = ConnectionError("rtsp://u:Thr3adPw@h/")
    assert "Thr3adPw" not in format_exception(type(exc), exc, None)
