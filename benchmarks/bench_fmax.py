"""Timing of the SEML core: nextpnr-ecp5 Fmax and Yosys logic depth per unit.

``--fmax BOARD`` (default ULX3S-85F) synthesizes the core for the board's default arch
with ``synth_ecp5`` and places and routes it out of context with nextpnr-ecp5 (YoWASP):
the one real timing analysis available here. ``--depth BOARD`` (default PYNQ-Z2)
synthesizes the core with ``synth_xilinx`` keeping the hierarchy and reports the longest
combinational path (cells between registers, block RAMs and registered DSP slices) of
each submodule and of the flattened core: a proxy for timing on Xilinx parts, where no
place and route runs here. Results are cached (:mod:`boards.synth`) and written to
``benchmarks/results/fmax.json``.

``--units BOARD`` synthesizes the control units of the core alone (decoder, DMA, LOAD,
STORE, ADD and POOL units and the CONV, DEPTHWISE and POINTWISE engine units with
their own fetchers, at the board's default arch) with ``synth_xilinx -family xc7``
and reports each one's logic depth: seconds per unit instead of minutes for the core.
``--unit-fmax BOARD`` places and routes the same units alone with nextpnr-ecp5 (out of
context) and reports each one's Fmax and critical path: minutes per unit.

``--seeds 1 2 3`` places and routes the core's one netlist with each placer seed, side by
side: placement alone moves the Fmax of the same design by several MHz.

Usage: ``python benchmarks/bench_fmax.py [--fmax ULX3S-85F] [--seeds 1 ...] [--depth PYNQ-Z2]
[--units ULX3S-85F] [--unit-fmax ULX3S-85F [--only NAME ...]]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from boards.database import get_board
from boards.synth import ecp5_fmax, synthesize
from hw.seml.core import SemlCore

ROOT = Path(__file__).resolve().parent.parent


def control_units(arch):
    """The core's units whose control and address logic this benchmark follows."""
    from hw.isa import Engine
    from hw.seml.compute import PoolWindowUnit
    from hw.seml.decode import InstructionDecoder, size_bits
    from hw.seml.dma import AxiDma
    from hw.seml.engine_units import EngineUnit
    from hw.seml.units import AddUnit, LoadUnit, StoreUnit

    return {
        "decoder": InstructionDecoder(arch),
        "dma": AxiDma(data_bits=arch.axi_data_bits, addr_bits=arch.axi_addr_bits,
                      size_bits=min(size_bits(arch), 32)),   # as the core builds it
        "load": LoadUnit(arch),
        "store": StoreUnit(arch),
        "add": AddUnit(arch),
        "compute_pool": PoolWindowUnit(arch),
        # each with its own pixel and weight fetchers (the core shares one set)
        "compute_conv": EngineUnit(arch, Engine.CONV),
        "compute_depthwise": EngineUnit(arch, Engine.DEPTHWISE),
        "compute_pointwise": EngineUnit(arch, Engine.POINTWISE),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", default="ULX3S-85F", help="ECP5 board ('' to skip)")
    parser.add_argument("--depth", default="PYNQ-Z2", help="Xilinx board ('' to skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fmax.json")
    parser.add_argument("--units", default="", help="board whose arch's units are "
                        "synthesized alone for xc7 ('' to skip)")
    parser.add_argument("--unit-fmax", default="", help="board whose arch's units are "
                        "placed and routed alone with nextpnr-ecp5 ('' to skip)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1],
                        help="nextpnr placer seeds for --fmax, placed and routed side by "
                        "side on one netlist (default: 1)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="units of --units / --unit-fmax to run (default: all)")
    args = parser.parse_args(argv)
    out = {"benchmark": "fmax", "python": platform.python_version()}

    def selected(units):
        if args.only is None:
            return units
        unknown = sorted(set(args.only) - set(units))
        if unknown:
            parser.error(f"unknown unit(s) {', '.join(unknown)}; the units are "
                         f"{', '.join(units)}")
        return {name: unit for name, unit in units.items() if name in args.only}
    if args.units:
        arch = get_board(args.units).default_arch()
        print(f"{args.units} default arch, units alone, Yosys xc7 logic depth:")
        out["units"] = {"board": args.units, "family": "xc7", "depth": {}}
        for name, unit in selected(control_units(arch)).items():
            start = time.perf_counter()
            res = synthesize(unit, family="xc7", name=f"unit-{name}-{arch.name}", depth=True)
            d = res.logic_depth
            print(f"  {name:14s} {d['cells']:4d} cells ({d['lut']} LUT, {d['carry']} CARRY; "
                  f"{res.lut} LUT, {res.ff} FF, {res.dsp} DSP; "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
            out["units"]["depth"][name] = {**d, "figures": res.figures()}
    if args.unit_fmax:
        arch = get_board(args.unit_fmax).default_arch()
        print(f"{args.unit_fmax} default arch, units alone, nextpnr-ecp5 (out of context):")
        out["unit_fmax"] = {"board": args.unit_fmax, "fmax": {}}
        for name, unit in selected(control_units(arch)).items():
            start = time.perf_counter()
            res = ecp5_fmax(unit, name=f"unit-{name}-{arch.name}")
            path = res.get("critical_path") or {}
            print(f"  {name:14s} {res['fmax']:6.1f} MHz  ({path.get('delay_ns')} ns, "
                  f"{path.get('logic_ns')} ns logic: {path.get('start_cell')} -> "
                  f"{path.get('end_cell')}; {time.perf_counter() - start:.0f} s)", flush=True)
            out["unit_fmax"]["fmax"][name] = {k: res[k] for k in (
                "fmax", "critical_path", "synth", "device")}
    if args.fmax:
        board = get_board(args.fmax)
        arch = board.default_arch()
        start = time.perf_counter()
        res = ecp5_fmax(SemlCore(arch), name=f"core-{arch.name}", seeds=args.seeds)
        print(f"{board.name} default arch core ({arch.conv_pi}x{arch.conv_po} conv, "
              f"{arch.dw_channels} dw, {arch.pw_pi}x{arch.pw_po} pw): nextpnr-ecp5 "
              f"{res['device']}: ({time.perf_counter() - start:.0f} s)", flush=True)
        for seed, run in (res.get("seeds") or {str(args.seeds[0]): res}).items():
            path = run.get("critical_path") or {}
            print(f"  seed {seed}: Fmax {run['fmax']:.1f} MHz; critical path "
                  f"{path.get('delay_ns')} ns ({path.get('logic_ns')} ns logic, "
                  f"{path.get('steps')} steps): {path.get('start_cell')} -> "
                  f"{path.get('end_cell')}")
        out["fmax"] = {"board": board.name, "arch": arch.to_dict(), **res}
    if args.depth:
        board = get_board(args.depth)
        arch = board.default_arch()
        start = time.perf_counter()
        res = synthesize(SemlCore(arch), family=board.synth_family,
                         name=f"core-{arch.name}-depth", flatten=False, depth=True)
        depth = res.logic_depth
        print(f"{board.name} default arch core, Yosys {board.synth_family} logic depth "
              f"(cells on the longest path; {time.perf_counter() - start:.0f} s):")
        for unit, cells in sorted(depth["submodules"].items(), key=lambda kv: -kv[1]):
            print(f"  {unit:22s} {cells:4d}")
        print(f"  {'(whole core, flat)':22s} {depth['cells']:4d}  ({depth['lut']} LUT, "
              f"{depth['carry']} CARRY; {depth['from']} -> {depth['to']})")
        out["depth"] = {"board": board.name, "family": board.synth_family,
                        "arch": arch.to_dict(), **depth, "figures": res.figures()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
