"""Import time of the full MobileNetV2-1.0-224: load + legality + folding + lowering.

Usage: ``python benchmarks/bench_frontend.py [--repeat N]``. Prints the figures and
writes ``benchmarks/results/frontend.json``. The budget for import plus
quantization of this model is 2 s; this measures the import and lowering passes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.pipeline import PassContext, import_model
from compiler.profile import profile_graph
from examples.models import mobilenet_v2

BUDGET_S = 2.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frontend.json"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model = mobilenet_v2(224, 1.0)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mobilenet_v2_224.onnx"
        onnx.save(model, str(path))
        size = path.stat().st_size
        runs, timings = [], []
        for _ in range(args.repeat):
            ctx = PassContext()
            start = time.perf_counter()
            graph = import_model(path, ctx)
            runs.append(time.perf_counter() - start)
            timings.append(ctx.timings)
    prof = profile_graph(graph)
    median = statistics.median(runs)
    passes = {name: statistics.median(t[name] for t in timings) for name in timings[0]}
    result = {
        "model": "mobilenet_v2_1.0_224",
        "onnx_nodes": len(model.graph.node),
        "onnx_bytes": size,
        "layers": len(graph.layers),
        "macs": prof.total_macs,
        "params": prof.total_params,
        "build_model_s": round(build_s, 4),
        "import_s_median": round(median, 4),
        "import_s_min": round(min(runs), 4),
        "import_s_runs": [round(r, 4) for r in runs],
        "stage_s_median": {k: round(v, 4) for k, v in passes.items()},
        "budget_s": BUDGET_S,
        "within_budget": median < BUDGET_S,
        "python": platform.python_version(),
        "onnx": onnx.__version__,
    }
    print(f"MobileNetV2-1.0-224: {result['onnx_nodes']} ONNX nodes -> {result['layers']} "
          f"layers, {prof.total_macs / 1e6:.1f} M MACs, {prof.total_params / 1e6:.2f} M params")
    print(f"import + lowering passes: median {median * 1e3:.0f} ms, min {min(runs) * 1e3:.0f} "
          f"ms over {args.repeat} runs (budget with quantization: {BUDGET_S:.0f} s)")
    for name, seconds in passes.items():
        print(f"  {name:<20} {seconds * 1e3:8.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
