"""SEML vs SESL vs hybrid (FiBHA / SplitCNN) at the same board budget.

For MobileNetV1-1.0-224, MobileNetV2-1.0-224 and a ProxylessNAS-mobile-like network at
the ZC706, KCU105 and ZCU102 budgets (boards/database.py):

* SEML: SplitCNN's baseline, the fastest SEML core that fits the board on its own
  (exact codegen cycles; buffers shrunk while the throughput stays within 1 %);
* SESL: one dedicated stage per layer folded under the board's DSPs
  (:func:`compiler.sesl.compile.build_pipeline`); whether its block RAM fits is noted;
* hybrid: ``compile --mode hybrid --board`` (SplitCNN's answer, compiled exactly).

Figures: frames/s, latency, MAC utilization, on-chip buffer bytes, DSPs. Writes
``benchmarks/results/hybrid_comparison.json``, ``docs/hybrid_results.md`` (table) and
``docs/hybrid_comparison.png`` (plot).

Usage: ``python benchmarks/bench_hybrid.py [--models NAME ...] [--boards NAME ...]``
(one process per model in parallel, then ``--from-json`` merges their ``--json`` files).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from boards.database import get_board
from compiler import errors
from compiler.hybrid.compile import compile_hybrid, import_quantized
from compiler.hybrid.split import HybridBudget, fit_kernels
from examples.models import EXAMPLES

MODELS = {"MobileNetV1-1.0-224": "mobilenet_v1_224", "MobileNetV2-1.0-224": "mobilenet_v2_224",
          "ProxylessNAS-mobile-224": "proxylessnas_mobile_224"}
BOARDS = ("ZC706", "KCU105", "ZCU102")


def _sesl(qgraph, budget, board):
    from compiler.sesl.compile import build_pipeline, sesl_report_json
    from compiler.sesl.plan import Budget

    arch = budget.base
    try:
        cfg = build_pipeline(qgraph, arch, Budget(board.dsp, None, f"board {board.name}"),
                             name=qgraph.name)
    except errors.MappingError as e:
        return {"error": str(e)}
    r = sesl_report_json(cfg, arch.clock_mhz, qgraph.name)
    bram = board.budget36()["bram36"]
    return {"frames_per_s": r["frames_per_s"], "cycles_per_frame": r["cycles_per_frame"],
            "latency_ms": r["latency_cycles"] / (arch.clock_mhz * 1e3),
            "mac_units": r["mac_units"], "mac_utilization": r["mac_utilization"],
            "buffer_bytes": r["buffer_bits"] // 8, "weight_rom_bytes": r["weight_bits"] // 8,
            "dsp": r["resources"]["dsp"], "lut": r["resources"]["lut"],
            "bram36": r["resources"]["bram36"], "fits_bram": r["resources"]["bram36"] <= bram,
            "bottleneck": r["bottleneck"]}


def run_one(label, qgraph, proto, board_name):
    board = get_board(board_name)
    budget = fit_kernels(qgraph, HybridBudget.from_board(board))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rep = compile_hybrid(proto, budget, Path(tmp) / "out", qgraph=qgraph)
    clock = rep["clock_mhz"]
    base = rep["splitcnn"]["baseline"]
    seml_macs = rep["macs_per_frame"]  # the whole model in either case
    seml = {"frames_per_s": base["frames_per_s"], "cycles_per_frame": base["cycles_per_frame"],
            "latency_ms": base["latency_cycles"] / (clock * 1e3),
            "mac_units": base["seml_core"]["mac_units"],
            "mac_utilization": seml_macs / (base["cycles_per_frame"]
                                            * base["seml_core"]["mac_units"]),
            "buffer_bytes": rep["buffers"]["baseline_seml_bits"] // 8,
            "dsp": base["dsp"]["seml"], "core": base["seml_core"]}
    hybrid = {"frames_per_s": rep["frames_per_s"], "cycles_per_frame": rep["cycles_per_frame"],
              "latency_ms": rep["latency_cycles"] / (clock * 1e3),
              "mac_units": rep["mac_units"], "mac_utilization": rep["mac_utilization"],
              "buffer_bytes": rep["buffer_bits"] // 8, "dsp": rep["resources"]["dsp"],
              "lut": rep["resources"]["lut"], "bram36": rep["resources"]["bram36"],
              "sesl_layers": rep["split"]["sesl_layers"], "cut": rep["split"]["cut"],
              "dsp_split": rep["budget"]["split"], "reason": rep["split"]["reason"],
              "steps": len(rep["splitcnn"]["steps"])}
    sesl = _sesl(qgraph, budget, board)
    result = {"model": label, "board": board.name, "clock_mhz": clock,
              "budget": budget.to_dict(), "seml": seml, "sesl": sesl, "hybrid": hybrid,
              "hybrid_vs_seml": hybrid["frames_per_s"] / seml["frames_per_s"],
              "hybrid_vs_sesl": (hybrid["frames_per_s"] / sesl["frames_per_s"]
                                 if "frames_per_s" in sesl else None),
              "seconds": time.perf_counter() - start}
    return result


def table(results) -> str:
    head = ("model", "board", "mode", "frames/s", "latency ms", "MAC units", "MAC util",
            "buffers KiB", "DSP", "notes")
    rows = []
    for r in results:
        for mode in ("seml", "sesl", "hybrid"):
            f = r[mode]
            if "error" in f:
                rows.append((r["model"], r["board"], mode, "-", "-", "-", "-", "-", "-",
                             f["error"][:60]))
                continue
            note = ""
            if mode == "sesl" and not f["fits_bram"]:
                note = f"needs {f['bram36']} BRAM36 (weights in ROM): does not fit"
            if mode == "hybrid":
                note = (f"{f['sesl_layers']} SESL layers; {r['hybrid_vs_seml']:.2f}x SEML"
                        + (f", {r['hybrid_vs_sesl']:.2f}x SESL" if r["hybrid_vs_sesl"] else ""))
            rows.append((r["model"], r["board"], mode, f"{f['frames_per_s']:,.1f}",
                         f"{f['latency_ms']:.2f}", f"{f['mac_units']:,}",
                         f"{100 * f['mac_utilization']:.0f}%",
                         f"{f['buffer_bytes'] / 1024:,.0f}", str(f["dsp"]), note))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model'].split('-')[0]}\n{r['board']}" for r in results]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(results)), 4.5))
    width = 0.27
    for i, mode in enumerate(("seml", "sesl", "hybrid")):
        ys = [r[mode].get("frames_per_s", 0) for r in results]
        xs = [j + (i - 1) * width for j in range(len(results))]
        label = {"seml": "SEML", "sesl": "SESL (hatched: block RAM does not fit)",
                 "hybrid": "hybrid (SplitCNN)"}[mode]
        bars = ax.bar(xs, ys, width, label=label)
        for bar, r in zip(bars, results):
            if mode == "sesl" and not r["sesl"].get("fits_bram", True):
                bar.set_hatch("//")
                bar.set_alpha(0.55)
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("frames/s (batch 1, model)")
    ax.set_yscale("log")
    ax.set_title("SEML vs SESL vs hybrid at the same board budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--boards", nargs="+", default=list(BOARDS))
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/hybrid_comparison.json"))
    parser.add_argument("--table", default=str(ROOT / "docs/hybrid_results.md"))
    parser.add_argument("--png", default=str(ROOT / "docs/hybrid_comparison.png"))
    parser.add_argument("--from-json", nargs="+", metavar="JSON",
                        help="do not compute: merge these results (e.g. of runs per model "
                             "in parallel) into --json, --table and --png")
    args = parser.parse_args(argv)
    results = []
    if args.from_json:
        for path in args.from_json:
            results += json.loads(Path(path).read_text())
        args.models = []
    for label in args.models:
        proto = EXAMPLES[MODELS[label]]()
        qgraph = import_quantized(proto, HybridBudget(1).base)
        for board in args.boards:
            r = run_one(label, qgraph, proto, board)
            results.append(r)
            h, s, e = r["hybrid"], r["seml"], r["sesl"]
            print(f"{label:<24} {board:<7} SEML {s['frames_per_s']:8.1f}  SESL "
                  f"{e.get('frames_per_s', float('nan')):8.1f}  hybrid {h['frames_per_s']:8.1f}"
                  f"  ({r['hybrid_vs_seml']:.2f}x SEML, {h['sesl_layers']} SESL layers, "
                  f"{r['seconds']:.0f} s)", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    Path(args.table).write_text(
        "# SEML vs SESL vs hybrid: measured model figures\n\n"
        "Written by `benchmarks/bench_hybrid.py` (cycle and resource models, batch 1).\n\n"
        + table(results))
    plot(results, args.png)
    print(f"wrote {args.json}, {args.table}, {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
