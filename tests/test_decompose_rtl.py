# amaranth: UnusedElaboratable=no
"""Rewritten convolutions on the RTL: a kernel split into sub-kernels, a stride-3
polyphase convolution and a dilated kernel run on the SEML core under Verilator equal
to the ISS (whole DDR image), and the ISS equals the golden runner."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.compiler.test_decompose import bit_exact
from tests.test_system_rtl import ARCH, run_model_on_rtl_and_iss

pytestmark = pytest.mark.rtl


def rewritten_model():
    """7x7 (split on the 5x5 engine), 5x5 stride 3 (polyphase), 3x3 dilation 2."""
    rng = np.random.default_rng(5)

    def w(name, shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="k7", kernel_shape=[7, 7],
                         pads=[3, 3, 3, 3]),
        helper.make_node("Relu", ["a"], ["ar"], name="relu"),
        helper.make_node("Conv", ["ar", "w2", "b2"], ["b"], name="k5s3", kernel_shape=[5, 5],
                         strides=[3, 3], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["b", "w3", "b3"], ["y"], name="dil2", kernel_shape=[3, 3],
                         dilations=[2, 2], pads=[2, 2, 2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "rewritten",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 14, 14])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [w("w1", (4, 3, 7, 7)), w("b1", (4,)), w("w2", (6, 4, 5, 5)), w("b2", (6,)),
         w("w3", (4, 6, 3, 3)), w("b3", (4,))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_rewritten_convolutions_on_the_rtl(tmp_path):
    model = rewritten_model()
    program = bit_exact(model, ARCH)  # ISS == golden
    engines = {r.name: r.engine for r in program.layers}
    assert "split" in engines["k7"] and "polyphase" in engines["k5s3"]
    summary = run_model_on_rtl_and_iss(model, tmp_path)  # RTL == ISS, cycle model
    assert summary["rtl_cycles"] > 0

