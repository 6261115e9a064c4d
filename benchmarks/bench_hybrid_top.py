"""The hybrid top (SESL prefix and SEML core overlapped) on the RTL: frames/s and latency
against the model.

Usage: ``python benchmarks/bench_hybrid_top.py [--frames N] [--budget-dsp D] [--stall P]``.
Compiles the small MobileNetV2 in hybrid mode at the DSP budget, streams N frames through
:class:`hw.hybrid.top.HybridTop` under Verilator (DDR a cocotbext-axi memory, stalls with
probability P on every channel and input gaps alike), checks every output against the
golden runner, and prints / writes ``benchmarks/results/hybrid_top.json``: the steady
frame interval (cycles between frame completions) against ``1 / max(T_SESL, T_SEML)``,
the first frame's latency against ``T_SESL latency + T_SEML``, each frame's latency, and
the frame time the two parts would take one after the other.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--budget-dsp", type=int, default=300)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2 (the interval needs two completions)")

    from compiler.hybrid.compile import compile_hybrid, load_hybrid
    from compiler.hybrid.rtl import run_hybrid_rtl
    from compiler.hybrid.split import HybridBudget
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import PassContext, import_model
    from compiler.runner import run_golden_int
    from examples import models
    from hw.arch import ArchConfig

    arch = ArchConfig()
    graph = import_model(models.mobilenet_v2_small(), PassContext(arch=arch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), None)
    with tempfile.TemporaryDirectory(prefix="bench-hybrid-top-") as tmp:
        out = Path(tmp) / "mv2"
        report = compile_hybrid(models.mobilenet_v2_small(), HybridBudget(args.budget_dsp),
                                out, qgraph=qgraph)
        if report["split"]["pure_seml"]:
            print(f"SplitCNN answers pure SEML at {args.budget_dsp} DSPs: "
                  f"{report['split']['reason']}")
            return 1
        _, _, _, manifest, cfg = load_hybrid(out)
        x = np.random.default_rng(args.seed).integers(
            -128, 128, size=(args.frames,) + tuple(cfg.input_shape))
        start = time.perf_counter()
        run = run_hybrid_rtl(out, x, seed=args.seed, p_idle=args.stall, p_pause=args.stall)
        wall = time.perf_counter() - start
    name = manifest["inputs"][0]["name"]
    exact = 0
    for f in range(args.frames):
        want = run_golden_int(qgraph, {name: x[f:f + 1]}).outputs
        exact += all(np.array_equal(run.outputs[f][k].reshape(v.shape), v)
                     for k, v in want.items()) if f < len(run.outputs) else 0
    sesl, seml = report["parts"]["sesl"], report["parts"]["seml"]
    clock = report["clock_mhz"] * 1e6
    interval = run.steady_cycles()
    results = {
        "model": "mobilenet_v2_small", "budget_dsp": args.budget_dsp, "frames": args.frames,
        "stall": args.stall, "cut": report["split"]["cut"],
        "sesl_layers": report["split"]["sesl_layers"],
        "outputs_equal_golden": f"{exact}/{args.frames}",
        "model_t_sesl": sesl["cycles_per_frame"], "model_t_seml": seml["cycles_per_frame"],
        "model_interval": report["cycles_per_frame"],
        "model_latency": report["latency_cycles"],
        "rtl_core_cycles": run.registers["CORE_CYCLES"],
        "rtl_interval": interval,
        "rtl_interval_vs_model": interval / report["cycles_per_frame"] - 1,
        "rtl_frames_per_s": clock / interval,
        "model_frames_per_s": clock / report["cycles_per_frame"],
        "rtl_latencies": run.latencies(),
        "rtl_latency_vs_model": run.latencies()[0] / report["latency_cycles"] - 1,
        "sequential_cycles_per_frame": report["latency_cycles"],
        "overlap_speedup": report["latency_cycles"] / interval,
        "registers": run.registers, "wall_s": wall,
    }
    print(json.dumps(results, indent=2))
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hybrid_top.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if exact == args.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
