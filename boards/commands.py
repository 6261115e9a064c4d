"""``convforge build`` and ``convforge run``: a board build, and a compiled model on a board."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["add_board_parsers", "build_command", "run_command"]


def _error(message):
    from compiler.errors import ConvForgeError

    return ConvForgeError(message)


def build_command(args) -> int:
    """``convforge build --board NAME [--arch ARCH.json] -o BUILD``."""
    from boards.database import ResourceError, get_board

    from .build import build_board
    from .build.ecp5 import ToolchainError

    try:
        board = get_board(args.board)
    except ValueError as e:
        raise _error(f"--board {args.board}: {e}") from None
    if args.arch is not None:
        from compiler.compile import load_arch
        arch = load_arch(args.arch)
    elif board.flow == "yowasp":
        from .ulx3s import ULX3S_ARCH
        arch = ULX3S_ARCH
        print(f"note: no --arch given; building the ULX3S arch {arch.name!r} (sized for the "
              f"ECP5-85F and the bundled models' images in the on-chip RAM); compile models "
              f"with --arch {Path(args.output) / 'arch.json'}")
    else:
        arch = board.default_arch()
    try:
        summary = build_board(board, arch, args.output, ram_bytes=args.ram_kib * 1024,
                              baud=args.baud)
    except (ResourceError, ToolchainError) as e:
        raise _error(str(e)) from None
    out = Path(args.output)
    if summary["flow"] == "vivado":
        print(f"wrote {out}/ (convforge_top.v, convforge_bd.v, build.tcl, arch.json, build.json)"
              f" for {board.name} ({board.part}), core clock {arch.clock_mhz:g} MHz")
        print(f"next: cd {out} && {summary['command']}")
        return 0
    print(f"wrote {out / summary['bitstream']} in {summary['build_seconds']:.0f} s "
          f"(arch {arch.name!r}, RAM {summary['ram_bytes'] // 1024} KiB, UART "
          f"{summary['uart_baud']:,} baud)")
    print("utilization:")
    for cell, use in sorted(summary["utilization"].items()):
        print(f"  {cell:16s} {use['used']:>7,} / {use['available']:>7,} "
              f"({100 * use['used'] / max(use['available'], 1):.1f} %)")
    for clock, f in summary["fmax"].items():
        print(f"Fmax {clock}: {f['achieved']:.1f} MHz (constraint {f['constraint']:.1f} MHz)")
        if f["achieved"] < summary["clock_mhz"]:
            print(f"warning: Fmax {f['achieved']:.1f} MHz of {clock} is below the arch's clock "
                  f"{summary['clock_mhz']:g} MHz: the bitstream may not work; lower clock_mhz "
                  f"in the arch and build again")
    return 0


def run_command(args) -> int:
    """``convforge run BUILD OUT --port /dev/ttyUSB0 [--input X.npy]``."""
    import numpy as np

    from compiler.compile import load_arch

    from .driver import Accelerator, DriverError, UartTransport

    build = Path(args.build_dir)
    try:
        summary = json.loads((build / "build.json").read_text())
    except (OSError, ValueError) as e:
        raise _error(f"{build / 'build.json'} cannot be read ({e}); give the directory "
                     f"written by `convforge build`") from None
    if summary.get("flow") != "yowasp":
        raise _error(f"{build} is a {summary.get('board')} build: `convforge run` drives the "
                     f"ULX3S over its UART; on a Zynq board use boards.driver.PynqTransport")
    arch = load_arch(build / "arch.json")
    x = None
    if args.input:
        from compiler.passes.quantize import load_samples
        x = load_samples(args.input, f"--input {args.input}")
    try:
        with UartTransport(args.port, baud=summary["uart_baud"], arch=arch,
                           timeout=args.link_timeout) as link:
            acc = Accelerator(link)
            acc.load(args.out_dir)
            result = acc.run(x, timeout=args.timeout)
    except DriverError as e:
        raise _error(str(e)) from None
    print(f"board: {result.cycles:,} cycles ({result.cycles / (summary['clock_mhz'] * 1e3):.3f}"
          f" ms at {summary['clock_mhz']:g} MHz), {result.instructions} instructions")
    for name, y in result.outputs.items():
        flat = y.reshape(-1)
        print(f"output {name}: shape {list(y.shape[1:])}, argmax {int(np.argmax(flat))}, "
              f"first values {flat[:8].tolist()}")
    if args.output:
        import io

        from compiler.codegen.output import write_file
        buffer = io.BytesIO()
        np.savez(buffer, **result.outputs, **{f"{k}.real": v for k, v in result.real.items()})
        path = args.output if str(args.output).endswith(".npz") else f"{args.output}.npz"
        write_file(path, buffer.getvalue(), "-o")
        print(f"wrote {path}")
    return 0


def add_board_parsers(sub) -> None:
    p = sub.add_parser("build", help="build a board's bitstream or Vivado project",
                       description="Check the arch fits the board, then build: a bitstream "
                                   "with utilization and Fmax (ULX3S-85F, open toolchain) or "
                                   "Verilog plus a Vivado build.tcl (Zynq and Kintex boards).")
    p.add_argument("--board", required=True, metavar="NAME", help="board name")
    p.add_argument("--arch", metavar="ARCH.json", help="arch (default: the board's)")
    p.add_argument("-o", "--output", required=True, metavar="BUILD", help="output directory")
    p.add_argument("--ram-kib", type=int, default=64,
                   help="ULX3S: on-chip RAM standing in for DDR, KiB (default 64)")
    p.add_argument("--baud", type=int, default=1_000_000,
                   help="ULX3S: UART rate (default 1000000)")
    p.set_defaults(func=build_command)
    p = sub.add_parser("run", help="run a compiled model on a board (ULX3S over UART)",
                       description="Load OUT (program, weights, input) into the board built "
                                   "in BUILD, run it and print the outputs.")
    p.add_argument("build_dir", metavar="BUILD", help="directory written by `convforge build`")
    p.add_argument("out_dir", metavar="OUT", help="directory written by `convforge compile`")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--input", metavar="X.npy", help="input sample (float: quantized)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for done")
    p.add_argument("--link-timeout", type=float, default=2.0,
                   help="seconds to wait for each UART response (default 2)")
    p.add_argument("-o", "--output", metavar="Y.npz", help="write the outputs")
    p.set_defaults(func=run_command)
