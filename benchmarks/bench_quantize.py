"""Quantization of the full MobileNetV2-1.0-224: import, calibration, quantization, golden run.

Usage: ``python benchmarks/bench_quantize.py [--samples N] [--repeat N]``. Prints the
figures and writes ``benchmarks/results/quantize.json``.

Timed separately:

* import + lowering (``compiler.pipeline.import_model``) and quantization with
  precomputed calibration statistics -- together the 2 s budget;
* calibration inference (onnxruntime with the intermediate tensors exposed, and
  the float IR in numpy, over the calibration samples);
* one 224x224 inference of the golden network runner;
* the final-output SNR against onnxruntime float per scheme on the same samples,
  and on the small MobileNetV2 example, whose error budget is measurable at int8.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.passes.quantize import QuantConfig, calibration_statistics, load_calibration, quantize
from compiler.pipeline import import_model
from compiler.runner import compare_with_onnx, run_golden
from examples.models import mobilenet_v2, mobilenet_v2_small

BUDGET_S = 2.0

SCHEMES = {
    "uniform per-layer PoT": {"scale_mode": "pot", "weight_scheme": "uniform"},
    "uniform per-channel": {"scale_mode": "per_channel", "weight_scheme": "uniform"},
    "PoT weights": {"scale_mode": "per_channel", "weight_scheme": "pot"},
    "APoT weights": {"scale_mode": "per_channel", "weight_scheme": "apot"},
}


def _snr_per_scheme(model, graph, samples, ranges, means):
    out = {}
    for name, options in SCHEMES.items():
        qg, report = quantize(graph, QuantConfig(**options), ranges=ranges, means=means)
        compare_with_onnx(qg, model, samples, report)
        out[name] = {"final_snr_db": round(report.min_final_snr_db, 2),
                     "top1_agreement": report.top1_agreement}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="calibration samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quantize.json"))
    args = parser.parse_args(argv)

    model = mobilenet_v2(224, 1.0)
    samples = np.random.default_rng(0).normal(
        size=(args.samples, 3, 224, 224)).astype(np.float32)

    import_runs, quant_runs = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        graph = import_model(model)
        import_runs.append(time.perf_counter() - start)
    batches = load_calibration(graph, samples)
    start = time.perf_counter()
    calibration_statistics(graph, batches)
    calib_float_s = time.perf_counter() - start
    start = time.perf_counter()
    ranges, means = calibration_statistics(graph, batches, model=model)
    calib_s = time.perf_counter() - start
    for _ in range(args.repeat):
        start = time.perf_counter()
        qg, report = quantize(graph, QuantConfig(), ranges=ranges, means=means)
        quant_runs.append(time.perf_counter() - start)
    import_s = statistics.median(import_runs)
    quant_s = statistics.median(quant_runs)

    golden_runs = []
    for k in range(min(args.repeat, len(samples))):
        start = time.perf_counter()
        run_golden(qg, samples[k:k + 1])
        golden_runs.append(time.perf_counter() - start)
    golden_s = statistics.median(golden_runs)
    compare_with_onnx(qg, model, samples, report)
    full_snr = _snr_per_scheme(model, graph, samples, ranges, means)

    small = mobilenet_v2_small()
    small_graph = import_model(small)
    small_samples = np.random.default_rng(0).normal(size=(16, 3, 32, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s_ranges, s_means = calibration_statistics(small_graph,
                                                   load_calibration(small_graph, small_samples))
    small_snr = _snr_per_scheme(small, small_graph, small_samples, s_ranges, s_means)

    result = {
        "model": "mobilenet_v2_1.0_224",
        "layers": len(graph.layers),
        "calibration_samples": args.samples,
        "import_s_median": round(import_s, 4),
        "quantize_s_median": round(quant_s, 4),
        "import_plus_quantize_s": round(import_s + quant_s, 4),
        "budget_s": BUDGET_S,
        "within_budget": import_s + quant_s < BUDGET_S,
        "calibration_inference_s": round(calib_s, 3),
        "calibration_inference_s_per_sample": round(calib_s / args.samples, 3),
        "calibration_inference_float_ir_s_per_sample": round(calib_float_s / args.samples, 3),
        "golden_inference_s_224": round(golden_s, 3),
        "final_snr_db_int8_per_channel": round(report.min_final_snr_db, 2),
        "per_layer_snr_db_int8_per_channel": {r.name: round(r.snr_db, 2)
                                              for r in report.layers if r.snr_db is not None},
        "final_snr_db_by_scheme": full_snr,
        "small_model": "mobilenet_v2_small (32x32, 16 samples)",
        "small_final_snr_db_by_scheme": small_snr,
        "python": platform.python_version(),
    }
    print(f"MobileNetV2-1.0-224, {len(graph.layers)} layers")
    print(f"import + lowering      {import_s * 1e3:8.0f} ms (median of {args.repeat})")
    print(f"quantization           {quant_s * 1e3:8.0f} ms (median of {args.repeat}, "
          f"calibration excluded)")
    print(f"import + quantization  {(import_s + quant_s) * 1e3:8.0f} ms (budget "
          f"{BUDGET_S * 1e3:.0f} ms: {'met' if result['within_budget'] else 'MISSED'})")
    print(f"calibration inference  {calib_s:8.2f} s for {args.samples} samples "
          f"({calib_s / args.samples:.2f} s each on onnxruntime, "
          f"{calib_float_s / args.samples:.2f} s on the float IR)")
    print(f"golden runner          {golden_s:8.2f} s per 224x224 inference")
    print("final SNR vs onnxruntime float (int8):")
    for name in SCHEMES:
        print(f"  {name:<22} 224: {full_snr[name]['final_snr_db']:7.2f} dB   small: "
              f"{small_snr[name]['final_snr_db']:7.2f} dB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
