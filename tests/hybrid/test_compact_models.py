"""The comparison's example builders (MobileNetV1, ProxylessNAS-mobile-like) and a hybrid
compile of 5x5 / 7x7 depthwise layers, checked against the golden runner."""

import numpy as np
import onnx

from compiler.compile import simulate
from compiler.hybrid.compile import compile_hybrid, import_quantized
from compiler.hybrid.split import HybridBudget
from compiler.runner import run_golden_int
from examples.imagenet_models import mobilenet_v1, proxylessnas_mobile
from examples.models import EXAMPLES

SMALL_PROXYLESS = ((1, 16, 3, 1), (3, 24, 5, 2), (3, 24, 7, 1))


def test_builders_are_registered_and_valid():
    assert {"mobilenet_v1_224", "proxylessnas_mobile_224"} <= set(EXAMPLES)
    v1 = mobilenet_v1(32, 0.25, 10, blocks=((64, 1), (128, 2)))
    onnx.checker.check_model(v1)
    kinds = [n.op_type for n in v1.graph.node]
    assert kinds.count("Conv") == 5 and "Gemm" in kinds
    p = proxylessnas_mobile(32, 10, blocks=SMALL_PROXYLESS, last_channels=64)
    onnx.checker.check_model(p)
    kernels = {tuple(a.ints) for n in p.graph.node if n.op_type == "Conv"
               for a in n.attribute if a.name == "kernel_shape"}
    assert {(3, 3), (5, 5), (7, 7), (1, 1)} <= kernels
    assert any(n.op_type == "Add" for n in p.graph.node)


def test_hybrid_with_large_depthwise_kernels_equals_golden(tmp_path):
    proto = proxylessnas_mobile(32, 10, blocks=SMALL_PROXYLESS, last_channels=64)
    budget = HybridBudget(400, source="--budget-dsp 400")
    qgraph = import_quantized(proto, budget.base)
    report = compile_hybrid(proto, budget, tmp_path / "out", qgraph=qgraph)
    assert report["parts"]["seml"]["arch"]["conv_k_max"] == 7
    assert report["resources"]["dsp"] <= 400
    name = qgraph.inputs[0]
    x = np.random.default_rng(3).integers(-128, 128, size=(1,) + qgraph.shape(name))
    got = simulate(tmp_path / "out", x)
    for t, ref in run_golden_int(qgraph, {name: x}).outputs.items():
        assert np.array_equal(got.outputs[t], ref.reshape(got.outputs[t].shape))
