"""Real network topologies shipped with the onnx package (opset 6 to 9 exports of the
model zoo, with synthetic weights): import, legality report, float equivalence."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.errors import UnsupportedModelError
from compiler.ir import OpKind, run_float
from compiler.pipeline import import_model

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def load(name):
    return onnx.load(str(LIGHT / f"light_{name}.onnx"))


def test_resnet50_topology():
    graph = import_model(load("resnet50"))
    kinds = Counter(layer.kind for layer in graph.layers)
    assert kinds == {OpKind.ADD: 16, OpKind.CONV: 20, OpKind.POINTWISE: 33, OpKind.MAXPOOL: 1,
                     OpKind.GAP: 1, OpKind.FC: 1}
    # Every BatchNormalization folded, every Relu fused (into convs and adds).
    assert all(layer.bias is not None for layer in graph.layers if layer.weight is not None)
    assert sum(layer.activation.value == "relu" for layer in graph.layers) == 49


def test_squeezenet_imports_and_matches():
    model = load("squeezenet")
    graph = import_model(model)
    kinds = Counter(layer.kind for layer in graph.layers)
    assert kinds == {OpKind.CONCAT: 8, OpKind.CONV: 9, OpKind.POINTWISE: 17,
                     OpKind.MAXPOOL: 3, OpKind.GAP: 1}
    assert [op.op_type for op in graph.host_ops] == ["Softmax"]
    (inp,) = graph.inputs
    x = np.random.default_rng(0).standard_normal((1,) + graph.shape(inp)).astype(np.float32)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for out in graph.outputs:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp: x})))
    got = run_float(graph, x)
    for out in graph.outputs:
        r = ref[out].reshape(got[out].shape)
        # The synthetic weights blow values up; compare relative to the output's scale.
        assert np.abs(got[out] - r).max() <= 1e-4 * np.abs(r).max()


def test_alexnet_report():
    with pytest.raises(UnsupportedModelError) as info:
        import_model(load("bvlc_alexnet"))
    found = [(i.node, i.op_type) for i in info.value.issues]
    # the 11x11 stride-4 stem and the grouped convolutions map; LRN does not
    assert found == [("n2", "LRN"), ("n6", "LRN")]
