"""Table activations against onnxruntime float: every 8-bit input, each activation.

    python benchmarks/bench_table_act.py [--in-range 6.0]

For each activation a one-node ONNX model is imported, quantized with the input range
``[-in_range, in_range]`` (int8, scale ``in_range / 127``) and the output scale from the
float output's range, and run by the golden model on all 256 input integers. Prints the
largest error in output LSBs against onnxruntime's float result and the SNR, and writes
``benchmarks/results/table_act.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import import_model
from compiler.runner import run_golden_int
from hw.arch import ArchConfig
from sim import golden

NODES = {
    "Sigmoid": [helper.make_node("Sigmoid", ["x"], ["y"])],
    "Tanh": [helper.make_node("Tanh", ["x"], ["y"])],
    "HardSigmoid": [helper.make_node("HardSigmoid", ["x"], ["y"])],
    "HardSwish": [helper.make_node("HardSwish", ["x"], ["y"])],
    "x*HardSigmoid(x)": [helper.make_node("HardSigmoid", ["x"], ["g"], alpha=1 / 6, beta=0.5),
                         helper.make_node("Mul", ["x", "g"], ["y"])],
    "SiLU (x*Sigmoid(x))": [helper.make_node("Sigmoid", ["x"], ["g"]),
                            helper.make_node("Mul", ["x", "g"], ["y"])],
    "LeakyRelu(0.1)": [helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)],
    "PRelu (per channel)": [helper.make_node("PRelu", ["x", "slope"], ["y"])],
}


def measure(name, nodes, in_range, arch):
    inits = []
    if name.startswith("PRelu"):
        inits = [numpy_helper.from_array(np.array([0.1, 0.25, -0.3, 0.02], np.float32)
                                         .reshape(4, 1, 1), "slope")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 16, 16]) for n in "xy"]
    model = helper.make_model(helper.make_graph(nodes, "act", [vi[0]], [vi[1]], inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    q = np.broadcast_to(np.arange(-128, 128), (4, 256)).reshape(1, 4, 16, 16)
    s_in = in_range / 127
    x = (q * s_in).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0].astype(np.float64)
    graph = import_model(model)
    out = graph.outputs[0]
    ranges = {"x": in_range, out: max(float(np.abs(want).max()), 1e-6)}
    qg, _ = quantize(graph, QuantConfig.from_arch(arch), ranges=ranges)
    got = run_golden_int(qg, {"x": q}).outputs[out]
    s_out = qg.tensors[out].scale
    err = np.abs(got * s_out - want) / s_out
    return {"layers": [layer.kind.value for layer in qg.layers],
            "max_err_lsb": float(err.max()), "mean_err_lsb": float(err.mean()),
            "snr_db": float(golden.snr_db(want, got * s_out)), "out_scale": s_out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-range", type=float, default=6.0)
    args = parser.parse_args(argv)
    arch = ArchConfig()
    rows = {}
    print(f"{'activation':22s} {'layers':8s} {'max err':>8s} {'mean err':>9s} {'SNR':>7s}")
    for name, nodes in NODES.items():
        r = measure(name, nodes, args.in_range, arch)
        rows[name] = r
        print(f"{name:22s} {'+'.join(r['layers']):8s} {r['max_err_lsb']:6.3f} LSB "
              f"{r['mean_err_lsb']:6.3f} LSB {r['snr_db']:6.1f} dB")
    out = ROOT / "benchmarks" / "results" / "table_act.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"in_range": args.in_range, "activations": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
