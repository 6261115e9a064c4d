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
    _add_rtl_parsers(sub)
    from boards.commands import add_board_parsers
    add_board_parsers(sub)
    from compiler.explore.cli import add_explore_parser
    add_explore_parser(sub)
    return parser


def _elaborate_command(args) -> int:
    """``convforge elaborate (--arch ARCH.json | --compiled OUT) -o DIR``: the
    accelerator's Verilog (for a SESL compile output, its pipeline's)."""
    from pathlib import Path

    from compiler.compile import _mode, load_arch
    from hw.top import elaborate

    if (args.arch is None) == (args.compiled is None):
        raise ConvForgeError("Give exactly one of --arch ARCH.json or --compiled OUT")
    if args.compiled is not None and _mode(args.compiled) == "sesl":
        from compiler.sesl.compile import elaborate_sesl

        path, cfg = elaborate_sesl(args.compiled, args.output)
        print(f"wrote {path} (top module {path.stem}, SESL pipeline {cfg.name}, "
              f"{len(cfg.stages)} stages)")
        return 0
    if args.compiled is not None and _mode(args.compiled) == "hybrid":
        from compiler.hybrid.rtl import elaborate_hybrid

        made = elaborate_hybrid(args.compiled, args.output)
        if made is not None:
            path, cfg, arch = made
            print(f"wrote {path} (top module {path.stem}: SESL prefix {cfg.name}, "
                  f"{len(cfg.stages)} stages, and the SEML core {arch.name})")
            return 0
    arch = load_arch(args.arch if args.arch is not None else Path(args.compiled) / "arch.json")
    path = elaborate(arch, args.output)
    print(f"wrote {path} (top module {path.stem}, arch {arch.name}, "
          f"hash 0x{arch.config_hash:016x})")
    return 0


def _rtl_backend(arch, program, ddr):
    from sim.axi import rtl_backend  # imports cocotb: only when the RTL is asked for

    return rtl_backend(arch, program, ddr)


def _add_rtl_parsers(sub) -> None:
    """``elaborate``, and ``simulate --rtl`` (the SEML core under Verilator)."""
    from compiler.compile import register_backend

    p = sub.add_parser("elaborate", help="write the accelerator's Verilog for an arch",
                       description="Elaborate the accelerator for ARCH.json and write "
                                   "DIR/convforge_top.v (plus DIR/arch.json).")
    p.add_argument("--arch", metavar="ARCH.json", help="arch description")
    p.add_argument("--compiled", metavar="OUT",
                   help="a compile output directory (SEML: its arch; SESL: its pipeline; "
                        "hybrid: the hybrid top)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=_elaborate_command)
    register_backend("rtl", _rtl_backend)
    simulate = sub.choices.get("simulate")
    if simulate is not None:
        simulate.add_argument("--rtl", dest="backend", action="store_const", const="rtl",
                              help="run on the RTL of the SEML core (Verilator, cocotb) "
                                   "instead of the ISS")


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
