"""The ``convforge`` command line.

Each subcommand is a thin shell over a library function; user errors
(:class:`compiler.errors.ConvForgeError`) print one clear message and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from compiler.errors import ConvForgeError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convforge",
        description="Turn a trained CNN (ONNX) into a verified FPGA accelerator.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Subcommands register themselves here: each adds a parser and sets `func`.
    return parser


def main(argv=None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except ConvForgeError as e:
        print(f"convforge {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
