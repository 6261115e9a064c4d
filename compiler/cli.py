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
    from compiler.frontend.check import check_command
    p = sub.add_parser("check", help="report every unsupported node of an ONNX model",
                       description="Import an ONNX model and list every node ConvForge "
                                   "cannot map. Exit 0 if the model is supported, 1 if not.")
    p.add_argument("model", help="ONNX model file")
    p.set_defaults(func=check_command)
    from compiler.profile import profile_command
    p = sub.add_parser("profile", help="per-layer MACs, parameters, bytes and engine class",
                       description="Import an ONNX model and print a per-layer profile.")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--json", metavar="OUT", help="also write the profile as JSON to OUT")
    p.add_argument("--act-bits", type=int, default=8, help="activation width (default 8)")
    p.add_argument("--weight-bits", type=int, default=8, help="weight width (default 8)")
    p.set_defaults(func=profile_command)
    from compiler.compile import add_compile_parser, add_simulate_parser
    add_compile_parser(sub)
    add_simulate_parser(sub)
    from compiler.quant.command import add_quantize_parser
    add_quantize_parser(sub)
    from compiler.demo import add_demo_parser
    add_demo_parser(sub)
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
