"""`edge` command line: one subcommand per module in `edge.commands`.

Each command module has `register(subparsers)` that adds its parser and sets `func`, a callable
taking the parsed namespace and returning the exit code. Heavy imports stay inside `func` so that
`edge check` answers in well under a second.

Whatever goes wrong, a person sees one line, `edge COMMAND: reason`, and exit status 1 (`-v` adds
the traceback); every line is redacted, with the passwords of URLs given as arguments registered
before anything runs, since the libraries underneath quote those URLs back in their errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from edge.config.shard import ShardSpec, parse_shard
from edge.redact import (
    describe_exception,
    format_exception,
    install_exception_redaction,
    install_log_redaction,
    redact,
    register_url_secrets,
)

SHARD_ENV = "EDGE_SHARD"
COMMANDS = ("check", "camsim", "detect", "plate", "model", "analyze", "run", "demo")


class _Parser(argparse.ArgumentParser):
    """argparse quotes the offending value in its errors; a URL there must be masked too.
    Subcommand parsers are made of the same class, so this covers them all."""

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


def port_number(text: str) -> int:
    """argparse type of a TCP port: 0 (any free one) to 65535, refused with the usage line
    otherwise (servers given 99999 quietly listen somewhere else)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def positive_int(text: str) -> int:
    """argparse type of a count such as `--max-frames`: 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def shard_spec(text: str) -> ShardSpec:
    """argparse type of `--shard K/N` (K from 0; `NAME-K/N` takes K from a pod name)."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    """`--shard K/N`, defaulting to `$EDGE_SHARD`, so that a container sets it from its pod."""
    parser.add_argument(
        "--shard",
        type=shard_spec,
        default=os.environ.get(SHARD_ENV) or None,
        metavar="K/N",
        help=f"serve only shard K (0 to N-1) of N, by hashing camera ids; K may be a pod name "
        f"NAME-K (default ${SHARD_ENV}, else the config's shard:)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edge.commands.{name}").register(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    install_log_redaction()


def command_name(args: argparse.Namespace) -> str:
    """`detect`, or `model prepare` for commands with actions."""
    action = getattr(args, "model_command", None)
    return f"{args.command} {action}" if action else str(args.command)


def report_failure(command: str, exc: BaseException, verbose: bool) -> int:
    """The one line (and with `-v` the traceback before it) for an error no command handled."""
    if verbose:
        sys.stderr.write(format_exception(type(exc), exc, exc.__traceback__))
    reason = describe_exception(exc)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        reason = "; ".join(  # `port: Input should be ...`, not pydantic's multi-line report
            f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}" for e in exc.errors()
        )
    print(f"edge {command}: {redact(reason)}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for arg in argv:
        register_url_secrets(arg)
    install_exception_redaction()
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    command = command_name(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # `raise SystemExit("message")`: Python would print it as is
        if exc.code is None or isinstance(exc.code, int):
            raise
        print(redact(str(exc.code)), file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`edge detect URL | head`): nothing to say
        _silence_stdout()
        return 1
    except Exception as exc:
        return report_failure(command, exc, args.verbose)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
