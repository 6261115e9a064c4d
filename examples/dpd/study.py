"""Seed 001's selection on the DPD sweep: Pareto fronts per quantization scheme, the
merged front, the five exclusion rules, Table I, plots, and Table II from synthesis.

Usage::

    python -m examples.dpd.study benchmarks/results/dpd_sweep.json [--synth N] [--docs DIR]

Steps (seed 001, section III-B):

1. the Pareto solutions of each quantization scheme on (nnz, NMSE), both minimized;
2. the Pareto front of their union (the schemes compared);
3. the exclusion rules (:func:`compiler.explore.pareto.exclusion_rules`) on it, with
   NMSE equal within 0.1 dB, nnz exact; rule 3's power is the power model
   (:mod:`compiler.explore.power`) applied to a fully parallel zero-aware datapath of
   the design (:func:`datapath_resources`);
4. ``--synth N``: the N selected designs with the best NMSE whose kernel the SESL
   stages take (up to 7; ``--channels C``: with C hidden channels; ``--dense``: with
   the unpruned, unquantized design of the same shape; ``--designs``: named designs
   instead), compiled to SESL pipelines of unrolled stages (16-bit activations, the
   design's weight scheme; every weight a constant of the datapath: a pruned weight
   has no multiplier, a PoT weight is a shift, an APoT weight two shifts and an adder)
   and synthesized with Yosys (``synth_xilinx -family xcup``) for Table II.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.explore.pareto import exclusion_rules, merge_fronts, pareto_front
from compiler.explore.power import estimate_power

__all__ = ["datapath_resources", "select", "table_one"]

#: Word size of the datapath (seed 001: <16, 6>).
WORD = 16
CLOCK_MHZ = 100.0
#: ZCU104 (the seed's board): static power of the part.
DEVICE_LUTS = 230_400


def datapath_resources(row) -> dict:
    """Resources of a fully parallel zero-aware datapath (one output sample per cycle):
    every non-zero weight is a multiplier (one DSP, unquantized), a shifter (PoT:
    ``WORD`` LUTs) or two shifters and an adder (APoT: ``3 * WORD`` LUTs); every product
    feeds a ``2 * WORD``-bit adder and register."""
    nnz = row["nnz"]
    per = {"none": 0, "pot": WORD, "apot": 3 * WORD}[row["quant"]]
    return {"dsp": nnz if row["quant"] == "none" else 0,
            "lut": nnz * (per + 2 * WORD), "ff": nnz * 2 * WORD, "bram36": 0}


def _power(row) -> float:
    return estimate_power(datapath_resources(row), CLOCK_MHZ, family="xcup",
                          device_luts=DEVICE_LUTS)["total_w"]


def select(rows) -> dict:
    """Fronts per scheme, the merged front and the exclusion rules' selection."""
    pts = []
    for i, r in enumerate(rows):
        pts.append({"id": i, "kernel": r["kernel"], "quant": r["quant"],
                    "layers": r["layers"], "channels": r["channels"],
                    "pruning": r["pruning"], "nmse": round(r["nmse"], 2), "nnz": r["nnz"],
                    "power": _power(r)})
    objectives = {"nnz": 1, "nmse": 1}
    fronts = {q: pareto_front([p for p in pts if p["quant"] == q], objectives)
              for q in ("none", "pot", "apot")}
    merged = merge_fronts(fronts, objectives)
    selected, excluded = exclusion_rules(merged, error_tol=0.1)
    return {"points": pts, "fronts": fronts, "merged": merged, "selected": selected,
            "excluded": excluded}


def table_one(selected) -> str:
    head = "| kernel | quant. | hid. ch. | hid. layers | pruning % | NMSE (dB) | nnz |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for p in sorted(selected, key=lambda p: (-p["kernel"], p["nmse"])):
        lines.append(f"| {p['kernel']} | {p['quant']} | {p['channels']} | {p['layers']} | "
                     f"{p['pruning']} | {p['nmse']:.2f} | {p['nnz']} |")
    return "\n".join(lines)


def _plots(result, docs: Path, baseline):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compiler.explore.plots import COLORS

    docs.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for q, front in result["fronts"].items():
        pts = [p for p in result["points"] if p["quant"] == q]
        ax.scatter([max(p["nnz"], 0.8) for p in pts], [p["nmse"] for p in pts], s=6,
                   alpha=0.25, color=COLORS[q])
        f = sorted(front, key=lambda p: p["nnz"])
        ax.step([max(p["nnz"], 0.8) for p in f], [p["nmse"] for p in f], where="post",
                color=COLORS[q], label=f"{q}: {len(front)} Pareto solutions")
    ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"PA alone ({baseline:.1f} dB)")
    ax.set_xscale("log")
    ax.set_xlabel("non-zero weights (nnz)")
    ax.set_ylabel("NMSE (dB)")
    ax.set_title(f"DPD sweep: {len(result['points']):,} configurations, Pareto front per "
                 "quantization")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(docs / "dpd_pareto_per_scheme.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    m = sorted(result["merged"], key=lambda p: p["nnz"])
    ax.step([max(p["nnz"], 0.8) for p in m], [p["nmse"] for p in m], where="post",
            color="gray", label=f"merged front ({len(m)})")
    for p in result["selected"]:
        ax.scatter(max(p["nnz"], 0.8), p["nmse"], s=36, color=COLORS[p["quant"]])
        ax.annotate(f"{p['kernel']}_{p['layers']}_{p['channels']}_{p['pruning']}",
                    (max(p["nnz"], 0.8), p["nmse"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("non-zero weights (nnz)")
    ax.set_ylabel("NMSE (dB)")
    ax.set_title(f"After the exclusion rules: {len(result['selected'])} designs "
                 "(kernel_layers_channels_pruning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(docs / "dpd_selected.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


# Synthesis (Table II) ---------------------------------------------------------------

def _onnx(row, out_scale: float, length: int = 64):
    """The trained pre-distorter as ONNX: the correction CNN (its output scale folded
    into the last layer) plus the skip that adds the input."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    x = "iq"
    convs = row["params"]
    for i, (w, b) in enumerate(convs):
        w = np.asarray(w, np.float32)
        b = np.asarray(b, np.float32)
        last = i == len(convs) - 1
        if last:
            w, b = w * out_scale, b * out_scale
        k = w.shape[2]
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = f"conv{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], name=y,
                                      kernel_shape=[k], pads=[k // 2, k // 2]))
        if not last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"], name=f"relu{i}"))
            y = f"relu{i}"
        x = y
    nodes.append(helper.make_node("Add", ["iq", x], ["out"], name="skip"))
    graph = helper.make_graph(
        nodes, "dpd", [helper.make_tensor_value_info("iq", TensorProto.FLOAT, [1, 2, length])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, length])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def design_pipeline(row, data, *, budget_dsp: int = 10_000):
    """``row``'s network as a SESL pipeline of unrolled stages (16-bit activations,
    the row's weight scheme: uniform 16-bit, or the PoT / APoT levels it was trained
    on; every weight a constant, see :class:`hw.sesl.unrolled.UnrolledConvStage`)."""
    import warnings

    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import import_model
    from compiler.sesl.compile import build_pipeline
    from compiler.sesl.plan import Budget
    from hw.arch import ArchConfig

    from .train import POT_EXP_BITS

    model = _onnx(row, data.out_scale)
    graph = import_model(model)
    u = data.test_u[:64 * 8] / data.rms
    calib = np.stack([u.real, u.imag]).reshape(2, 8, 64).transpose(1, 0, 2).astype(np.float32)
    scheme = {"none": "uniform"}.get(row["quant"], row["quant"])
    arch = ArchConfig(name="dpd", act_bits=WORD, weight_bits=WORD, acc_bits=48, bias_bits=48,
                      clock_mhz=CLOCK_MHZ, weight_scheme=scheme, pot_exp_bits=POT_EXP_BITS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), calib)
    return build_pipeline(qgraph, arch, Budget(budget_dsp), name="dpd", unroll=True)


def synthesize_design(row, data) -> dict:
    """Synthesize ``row``'s pipeline (:func:`design_pipeline`) with Yosys."""
    from boards.synth import synthesize
    from compiler.sesl.plan import model_summary
    from hw.sesl.pipeline import SeslPipeline
    from hw.sesl.unrolled import naf_digits

    cfg = design_pipeline(row, data)
    convs = [st for st in cfg.stages if st.op == "conv"]
    weights = [v for st in convs for v in st.weights]
    nnz = sum(1 for v in weights if v)
    multipliers = sum(1 for v in weights if len(naf_digits(v)) > 2)
    res = synthesize(SeslPipeline(cfg), family="xcup", name="dpd")
    summary = model_summary(cfg)
    power = estimate_power({"lut": res.lut, "ff": res.ff, "dsp": res.dsp,
                            "bram36": res.bram36}, CLOCK_MHZ, family="xcup",
                           device_luts=DEVICE_LUTS,
                           mac_activity=min(1.0, summary["mac_utilization"]))
    return {"dsp": res.dsp, "ff": res.ff, "lut": res.lut, "bram36": res.bram36,
            "power_w": power["total_w"], "synth_s": res.synth_s, "nnz_int": nnz,
            "weights": len(weights), "const_multipliers": multipliers,
            "cycles_per_frame": summary["cycles_per_frame"]}


def _table_two(todo, data) -> list:
    print()
    print("| CNN model (kernel_layers_channels_pruning) | quant. | NMSE (dB) | nnz | "
          "const. multipliers | DSP | FF | LUT | power (W, model) | synth. (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = []
    for r in todo:
        q = synthesize_design(r, data)
        name = f"{r['kernel']}_{r['layers']}_{r['channels']}_{r['pruning']}"
        table.append({"model": name, "quant": r["quant"], "nmse": r["nmse"], **q})
        print(f"| {name} | {r['quant']} | {r['nmse']:.2f} | {q['nnz_int']} | "
              f"{q['const_multipliers']} | {q['dsp']} | {q['ff']:,} | {q['lut']:,} | "
              f"{q['power_w']:.3f} | {q['synth_s']:.0f} |", flush=True)
    return table


def _synth_designs(args, sweep) -> int:
    from examples.dpd.train import make_data

    todo = []
    for d in args.designs:
        try:
            arch, quant = d.split(":")
            k, layers, c, pr = (int(v) for v in arch.split("_"))
        except ValueError:
            print(f"--designs takes K_L_C_P:QUANT (e.g. 5_2_4_30:none), not {d!r}",
                  file=sys.stderr)
            return 2
        row = next((r for r in sweep["rows"] if (r["kernel"], r["layers"], r["channels"],
                                                 r["pruning"], r["quant"])
                    == (k, layers, c, pr, quant)), None)
        if row is None:
            print(f"--designs {d}: not in {args.sweep}", file=sys.stderr)
            return 2
        todo.append(row)
    data = make_data(sweep["length"], 0)
    table = _table_two(todo, data)
    Path(args.output).write_text(json.dumps({"table_ii": table}, indent=1, default=float)
                                 + "\n")
    print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Pareto fronts, exclusion rules and tables of "
                                            "the DPD sweep")
    p.add_argument("sweep", nargs="?", default=str(ROOT / "benchmarks/results/dpd_sweep.json"))
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--synth", type=int, default=0, metavar="N",
                   help="synthesize the N selected designs with the best NMSE")
    p.add_argument("--channels", type=int, default=None,
                   help="--synth: only selected designs with this many hidden channels")
    p.add_argument("--dense", action="store_true",
                   help="--synth: also the unpruned, unquantized design of each shape")
    p.add_argument("--designs", nargs="+", metavar="K_L_C_P:QUANT",
                   help="synthesize these designs of the sweep (e.g. 5_2_4_30:none "
                        "3_2_4_65:apot) instead of the selection; no tables, no plots")
    p.add_argument("-o", "--output", default=str(ROOT / "benchmarks/results/dpd_study.json"))
    args = p.parse_args(argv)
    sweep = json.loads(Path(args.sweep).read_text())
    rows = sweep["rows"]
    if args.designs:
        return _synth_designs(args, sweep)
    result = select(rows)
    print(f"{len(rows)} configurations, swept in {sweep['seconds']:.0f} s on "
          f"{sweep['workers']} workers; PA alone {sweep['baseline_nmse_db']:.2f} dB NMSE")
    for q, f in result["fronts"].items():
        print(f"Pareto solutions, {q}: {len(f)}")
    total = sum(len(f) for f in result["fronts"].values())
    print(f"per scheme: {total}; merged front: {len(result['merged'])}; after the exclusion "
          f"rules: {len(result['selected'])}")
    by_rule = {}
    for e in result["excluded"]:
        by_rule[e["excluded_by"]] = by_rule.get(e["excluded_by"], 0) + 1
    print(f"excluded by rule: {dict(sorted(by_rule.items()))}")
    print()
    print(table_one(result["selected"]))
    _plots(result, Path(args.docs), sweep["baseline_nmse_db"])
    out = {"configurations": len(rows), "sweep_seconds": sweep["seconds"],
           "baseline_nmse_db": sweep["baseline_nmse_db"],
           "fronts": {q: len(f) for q, f in result["fronts"].items()},
           "merged": len(result["merged"]), "selected": result["selected"],
           "excluded_by_rule": by_rule, "table_ii": []}
    if args.synth:
        from examples.dpd.train import make_data

        data = make_data(sweep["length"], 0)
        picks = [s for s in sorted(result["selected"], key=lambda s: s["nmse"])
                 if s["kernel"] <= 7 and (args.channels is None
                                          or s["channels"] == args.channels)][:args.synth]
        todo = [rows[s["id"]] for s in picks]
        if args.dense:
            for s in picks:
                dense = next(r for r in rows if (r["kernel"], r["layers"], r["channels"])
                             == (s["kernel"], s["layers"], s["channels"])
                             and r["quant"] == "none" and r["pruning"] == 0)
                if dense not in todo:
                    todo.append(dense)
        out["table_ii"] = _table_two(todo, data)
    Path(args.output).write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {args.output} and plots in {args.docs}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
