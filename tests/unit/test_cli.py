"""The CLI's guard for errors no command handled: one redacted line, the traceback only with -v."""

from __future__ import annotations

import pytest

from edge.cli import report_failure
from edge.redact import register_secret


def failing(password: str) -> RuntimeError:
    try:
        raise RuntimeError(f"cannot reach rtsp://admin:{password}@10.0.0.9/x: broken\nsecond line")
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unhandled_error_is_one_redacted_line(
    verbose: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret("Unh4ndled-pw")
    assert report_failure("analyze", failing("Unh4ndled-pw"), verbose) == 1
    err = capsys.readouterr().err
    last = "edge analyze: cannot reach rtsp://admin:***@10.0.0.9/x: broken second line"
    assert err.splitlines()[-1] == last
    assert "Unh4ndled-pw" not in err
    assert ("Traceback" in err) is verbose
    assert len(err.splitlines()) == 1 or verbose
