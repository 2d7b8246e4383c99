"""Keep credentials out of everything a person or a scraper can read.

Camera URLs carry `user:pass@` and users paste tokens into configs; logs, errors, API values and
reprs go through these helpers so that a password never leaves the process.

Two layers, because either alone leaks. Patterns mask the password of any `scheme://user:pass@`
URL, secret-looking query parameters and `Authorization:` values, whatever produced the text. But
a password holding '@' or '/' defeats any URL pattern, and libraries print URLs in forms no
pattern expects (PyAV's quoted repr, `pathlib` folding `rtsp://` to `rtsp:/`, percent-decoded).
So every password and token edge meets (config, command line) is also registered, and `redact`
masks it anywhere, raw, percent-encoded, percent-decoded or escaped as in a repr.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote, quote_plus, unquote, urlsplit

_MIN_SECRET_LEN = 4
"""Shorter strings are not masked as free text (they would blank out ordinary words and
numbers); the URL pattern still masks them inside a URL."""

_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/\s'\"]{0,256}):"
    r"(?P<pw>[^\s'\"]{0,512}?)@(?=[^@/\s'\"?#]*(?:[/?#\s'\"]|$))"
)
"""`scheme://user:pass@host`; the password ends at the last '@' before the host, so that an
unencoded '@' or '/' in it is masked too."""
_USERINFO_GREEDY = re.compile(
    r"[a-zA-Z][a-zA-Z0-9+.-]*:/{1,2}[^:/\s'\"]{0,256}:(?P<pw>[^\s'\"]{1,512})@[^@\s'\"]*"
)
"""Used only to find passwords to register: everything up to the last '@' of the word."""
_QUERY_SECRET = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pass|pwd|token|access_token|auth|api_?key|key|secret"
    r"|signature|sig)=)[^&#\s'\"]+"
)
_AUTH_HEADER = re.compile(r"(?i)(?P<key>authorization:\s*(?:bearer|basic|digest)\s+)[^\s'\"]+")

_lock = threading.Lock()
_SECRETS: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` → `rtsp://user:***@host/x`; registered secrets are masked too.

    Registered secrets go first: for `rtsp://u:p@ss/w@host` the pattern alone would take `p` for
    the password and leave `ss/w` in the clear."""
    pattern = _secret_pattern
    if pattern is not None:
        url = pattern.sub("***", url)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def secret_forms(secret: str) -> set[str]:
    """The ways a library may print `secret`: as given, percent-decoded, percent-encoded (strict,
    path-style and form-style) and escaped inside a Python repr."""
    forms = {secret, unquote(secret)}
    for plain in tuple(forms):
        forms |= {quote(plain, safe=""), quote(plain), quote_plus(plain), repr(plain)[1:-1]}
    return {f for f in forms if len(f) >= _MIN_SECRET_LEN}


def register_secret(secret: str | None) -> None:
    """Remember a secret (a password, an API token) so that `redact` masks it wherever it
    appears, in any form `secret_forms` lists."""
    global _secret_pattern
    if not secret or len(secret) < _MIN_SECRET_LEN:
        return
    with _lock:
        new = secret_forms(secret) - _SECRETS
        if not new:
            return
        _SECRETS.update(new)
        longest_first = sorted(_SECRETS, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(map(re.escape, longest_first)), re.IGNORECASE)


def register_url_secrets(text: str) -> None:
    """Register the password of every URL in `text`, however oddly it is written (an argument
    on the command line, a camera URL from a config)."""
    if ":" not in text or "@" not in text:
        return
    for pattern in (_USERINFO, _USERINFO_GREEDY):
        for match in pattern.finditer(text):
            register_secret(match["pw"])
    try:
        register_secret(urlsplit(text.strip()).password)
    except ValueError:  # not a URL after all
        pass


def redact(text: str) -> str:
    """Mask URL passwords, secret query parameters, authorization values and every registered
    secret in free text."""
    text = redact_url(text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m['key']}***", text)
    if ":" in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m['key']}***", text)
    return text


def leaf_exception(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, such as a TaskGroup raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe_exception(exc: BaseException) -> str:
    """One redacted line for a person: the message, or the type's name when there is none."""
    exc = leaf_exception(exc)
    text = str(exc).strip() or type(exc).__name__
    return redact(" ".join(text.split()))


def format_exception(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> str:
    """A full traceback, redacted (exception messages and source lines alike)."""
    return redact("".join(traceback.format_exception(exc_type, exc, tb)))


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record once and masks secrets in the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), idempotently."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _print_redacted(lines: Iterable[str]) -> None:
    try:
        sys.stderr.write(redact("".join(lines)))
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: nothing left to tell
        pass


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _print_redacted(traceback.format_exception(exc_type, exc, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    lines = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
    _print_redacted([f"Exception in thread {name}:\n", *lines])


def _unraisablehook(unraisable: sys.UnraisableHookArgs) -> None:
    where = unraisable.err_msg or "Exception ignored in"
    try:
        what = repr(unraisable.object)
    except Exception:
        what = object.__repr__(unraisable.object)
    lines = traceback.format_exception(
        unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
    )
    _print_redacted([f"{where}: {what}\n", *lines])


def install_exception_redaction() -> None:
    """Redact what Python itself prints for errors nobody caught: in the main thread, in other
    threads (a decode thread, an executor) and in `__del__` or finalizers."""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook
