"""Compile and ISS figures of the full MobileNetV2-1.0-224.

Usage: ``python benchmarks/bench_compile.py [--samples N] [--repeat N] [--board NAME]``.
Prints the figures and writes ``benchmarks/results/compile.json``.

Timed separately:

* compile = import + lowering, quantization (with precomputed calibration
  statistics), code generation (tiling, schedule, memory map, weight image) and
  writing the output directory -- the 2 s budget;
* calibration inference (the float graph over the samples), which scales with
  the number of samples and is reported on its own;
* one 224x224 inference on the ISS, in a fresh process so that its peak memory
  (``resource.getrusage``) is the simulator's own -- budgets 10 s and 1 GB. Its
  outputs are checked against the golden network runner, bit for bit.

The arch is the board's default (its 64-column line buffers make 224-pixel rows
column-tiled); the predicted cycles of the cycle model are reported too.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COMPILE_BUDGET_S = 2.0
ISS_BUDGET_S = 10.0
ISS_MEMORY_BUDGET_MB = 1024.0


def _iss_child(out_dir: str) -> int:
    """Run one inference on the ISS and print time, cycles and peak memory as JSON."""
    from compiler.compile import simulate
    start = time.perf_counter()
    result = simulate(out_dir, seed=1)
    seconds = time.perf_counter() - start
    np.savez(Path(out_dir).parent / "iss_outputs.npz", **result.outputs,
             **{f"input:{k}": v for k, v in result.inputs.items()})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": seconds, "cycles": result.cycles, "peak_mb": peak_mb}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2, help="calibration samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--board", default="ZCU102")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile.json"))
    parser.add_argument("--iss-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iss_child:
        return _iss_child(args.iss_child)

    from boards.database import get_board
    from compiler.compile import compile_graph
    from compiler.passes.quantize import (
        QuantConfig,
        calibration_statistics,
        load_calibration,
        quantize,
    )
    from compiler.pipeline import import_model
    from compiler.runner import run_golden_int
    from examples.models import mobilenet_v2

    arch = get_board(args.board).default_arch()
    model = mobilenet_v2(224, 1.0)
    samples = np.random.default_rng(0).normal(
        size=(args.samples, 3, 224, 224)).astype(np.float32)
    graph = import_model(model)
    start = time.perf_counter()
    ranges, means = calibration_statistics(graph, load_calibration(graph, samples))
    calib_s = time.perf_counter() - start

    work = Path(tempfile.mkdtemp(prefix="convforge-bench-"))
    out_dir = work / "mobilenet_v2_224"
    stages = {"import": [], "quantize": [], "codegen": [], "write": []}
    totals = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        graph = import_model(model)
        t1 = time.perf_counter()
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch), ranges=ranges, means=means)
        t2 = time.perf_counter()
        result = compile_graph(qgraph, arch, out_dir, model_name="mobilenet_v2_1.0_224")
        t3 = time.perf_counter()
        stages["import"].append(t1 - t0)
        stages["quantize"].append(t2 - t1)
        stages["codegen"].append(result.timings["codegen"])
        stages["write"].append(result.timings["write"])
        totals.append(t3 - t0)
    compile_s = statistics.median(totals)
    medians = {k: statistics.median(v) for k, v in stages.items()}

    child = subprocess.run([sys.executable, __file__, "--iss-child", str(out_dir)],
                           capture_output=True, text=True, check=True, cwd=ROOT)
    iss = json.loads(child.stdout.strip().splitlines()[-1])
    saved = np.load(work / "iss_outputs.npz")
    inputs = {k.split(":", 1)[1]: saved[k] for k in saved.files if k.startswith("input:")}
    golden = run_golden_int(qgraph, inputs).outputs
    bit_exact = all(np.array_equal(saved[name], golden[name]) for name in golden)

    program = result.program
    macs = sum(r.macs for r in program.layers)
    result_json = {
        "model": "mobilenet_v2_1.0_224",
        "board": args.board,
        "arch": arch.to_dict(),
        "layers": len(qgraph.layers),
        "instructions": len(program.instructions),
        "program_bytes": len(result.program_bin),
        "weights_bytes": len(program.weights),
        "ddr_bytes": program.ddr_bytes,
        "compile_s_median": round(compile_s, 4),
        "compile_stages_s_median": {k: round(v, 4) for k, v in medians.items()},
        "compile_budget_s": COMPILE_BUDGET_S,
        "compile_within_budget": compile_s < COMPILE_BUDGET_S,
        "calibration_samples": args.samples,
        "calibration_inference_s": round(calib_s, 3),
        "iss_s_224": round(iss["seconds"], 3),
        "iss_budget_s": ISS_BUDGET_S,
        "iss_within_budget": iss["seconds"] < ISS_BUDGET_S,
        "iss_peak_mb": round(iss["peak_mb"], 1),
        "iss_memory_budget_mb": ISS_MEMORY_BUDGET_MB,
        "iss_memory_within_budget": iss["peak_mb"] < ISS_MEMORY_BUDGET_MB,
        "iss_equals_golden": bit_exact,
        "predicted_cycles": program.cycles,
        "predicted_ms": round(program.cycles / (arch.clock_mhz * 1e3), 3),
        "macs": macs,
        "predicted_macs_per_cycle": round(macs / program.cycles, 1),
        "python": platform.python_version(),
    }
    print(f"MobileNetV2-1.0-224 on the {args.board} default arch, "
          f"{len(qgraph.layers)} layers, {len(program.instructions)} instructions")
    print(f"compile                {compile_s * 1e3:8.0f} ms (median of {args.repeat}; budget "
          f"{COMPILE_BUDGET_S * 1e3:.0f} ms: "
          f"{'met' if result_json['compile_within_budget'] else 'MISSED'})")
    for name, value in medians.items():
        print(f"  {name:<20} {value * 1e3:8.0f} ms")
    print(f"calibration inference  {calib_s:8.2f} s for {args.samples} samples (not in compile)")
    print(f"ISS inference          {iss['seconds']:8.2f} s (budget {ISS_BUDGET_S:.0f} s), peak "
          f"{iss['peak_mb']:.0f} MB (budget {ISS_MEMORY_BUDGET_MB:.0f} MB), "
          f"{'bit-exact' if bit_exact else 'DIFFERS from'} golden")
    print(f"predicted              {program.cycles:,} cycles = "
          f"{result_json['predicted_ms']} ms at {arch.clock_mhz:g} MHz, "
          f"{result_json['predicted_macs_per_cycle']} MAC/cycle")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result_json, indent=2) + "\n")
    print(f"wrote {out}")
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return 0 if bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
