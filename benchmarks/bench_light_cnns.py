"""The nine CNNs of the onnx package's test data on a board: check, compile, ISS vs
golden, golden vs onnxruntime float SNR and onnxruntime's int8 QDQ SNR.

Usage: ``python benchmarks/bench_light_cnns.py [--board ZCU102] [--only NAME ...]
[--samples N] [--weights random] [--out FILE]``. Prints one row per model (what passes, what blocks the rest) and
writes ``benchmarks/results/light_cnns.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.light_cnns import MODELS, evaluate


def _fmt(row: dict) -> str:
    if row["status"] != "pass":
        needs = ", ".join(row.get("needs", [])) or row.get("blocked_by", "").splitlines()[-1]
        host = f"; host: {', '.join(row['host_nodes'])}" if row["host_nodes"] else ""
        return f"{row['model']:14s} {row['status']} at {row['stage']} (needs {needs}){host}"
    return (f"{row['model']:14s} pass  ISS==golden {row['iss_equals_golden']}  "
            f"SNR {row['snr_db']:6.2f} dB  ORT-QDQ {row.get('ort_qdq_snr_db', float('nan')):6.2f}"
            f" dB  same numbers {row.get('golden_equals_ort_qdq')}  distinct logits "
            f"{row.get('float_logits_distinct')}"
            f"  top1 {row['top1_agree']}  cycles {row['cycles']:,}  accel MACs "
            f"{100 * row['accelerator_mac_share']:.2f} %  host {row['host_nodes'] or '-'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ZCU102")
    parser.add_argument("--only", nargs="+", choices=MODELS, metavar="NAME")
    parser.add_argument("--samples", type=int, default=4, help="calibration samples")
    parser.add_argument("--weights", choices=("synthetic", "random"), default="synthetic",
                        help="the models' own constant parameters, or seeded random ones")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the rows of the models run in an existing --out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "light_cnns.json"))
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice
    rows = []
    for name in args.only or MODELS:
        start = time.perf_counter()
        row = evaluate(name, args.board, samples=args.samples, weights=args.weights)
        row["wall_seconds"] = time.perf_counter() - start
        rows.append(row)
        print(_fmt(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():
        ran = {r["model"] for r in rows}
        old = [r for r in json.loads(out.read_text())["models"] if r["model"] not in ran]
        rows = sorted(old + rows, key=lambda r: MODELS.index(r["model"]))
    out.write_text(json.dumps({"board": args.board, "samples": args.samples, "weights": args.weights,
                               "python": platform.python_version(), "models": rows},
                              indent=2, default=str) + "\n")
    print(f"wrote {out}")
    passed = sum(r["status"] == "pass" for r in rows)
    print(f"{passed} of {len(rows)} pass on {args.board}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
