"""`edge check CONFIG`: validate a config and print every problem as `path.to.field: reason`."""

from __future__ import annotations

import argparse
import sys

from edge.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate a cameras.yaml (exit 0 valid, 2 invalid)")
    p.add_argument("config", help="path to the YAML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print_problems(exc)
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    exposure = config.server.exposure_problem()  # what `edge run` refuses, for the file's host
    if exposure is not None:
        print(exposure, file=sys.stderr)
        print(f"{args.config}: 1 problem(s)", file=sys.stderr)
        return 2
    cams = config.enabled_cameras
    print(f"{args.config}: OK ({len(cams)} enabled camera(s), model {config.detector.model.name})")
    return 0


def print_problems(exc: ConfigError) -> None:
    """One `path.to.field: reason` line per problem on stderr (shared by `check` and `run`)."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
