"""`edge model prepare IN.onnx OUT.onnx [--fp16]`: make a batch-1 export batchable (and FP16)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.redact import redact


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("model", help="model tools (prepare: dynamic batch, FP16)")
    actions = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    prep = actions.add_parser(
        "prepare",
        help="rewrite a batch-1 ONNX export into a dynamic-batch model and verify it",
        description="Rewrites the frozen batch (Reshape shape constants, I/O dims, value_info), "
        "optionally converts to FP16 with float32 inputs/outputs, then checks that a batch of N "
        "pictures equals N single runs.",
    )
    prep.add_argument("input", type=Path, metavar="IN.onnx")
    prep.add_argument("output", type=Path, metavar="OUT.onnx")
    prep.add_argument("--fp16", action="store_true", help="FP16 weights, float32 I/O")
    prep.add_argument("--check", type=int, default=4, metavar="N", help="batch size to verify (4)")
    prep.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.infer.model_check import ModelError
    from edge.infer.prepare import prepare_model

    if args.check < 2:
        print("edge model prepare: --check must be at least 2", file=sys.stderr)
        return 2
    try:
        rewritten, check = prepare_model(args.input, args.output, fp16=args.fp16, check=args.check)
    except ModelError as exc:  # missing, unreadable, not ONNX, not a detector: `IN: reason`
        print(f"edge model prepare: {redact(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) != args.output:
            raise
        print(f"edge model prepare: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    except Exception as exc:  # a broken or unusual graph: say so instead of a traceback
        print(f"edge model prepare: {redact(f'{args.input}: {exc}')}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output}: batch dynamic ({rewritten} Reshape constants rewritten)"
        f"{', FP16 with float32 I/O' if args.fp16 else ''}"
    )
    print(f"verified: {check.describe()}")
    return 0 if check.ok else 1
