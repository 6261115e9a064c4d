"""Table activations, element-wise products and nearest upsampling: import, quantize,
compile, ISS == golden; each table activation over all 256 inputs against onnxruntime."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_graph
from compiler.errors import UnsupportedModelError
from compiler.ir import OpKind
from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import import_model
from compiler.runner import run_golden_int
from compiler.table_act import TableActivation, activation_tables
from hw.arch import ArchConfig
from sim import golden

ARCH = ArchConfig(name="table-test", ibuf_bytes=4096, obuf_bytes=4096, wbuf_bytes=4096,
                  pbuf_entries=64, max_width=16, max_height=16, conv_pi=2, conv_po=2,
                  pw_pi=4, pw_po=4, dw_channels=4)


def _model(nodes, inputs, output, inits=(), opset=14):
    graph = helper.make_graph(nodes, "t", inputs, [output], initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


ACTIVATIONS = {
    "sigmoid": (helper.make_node("Sigmoid", ["x"], ["y"]), ()),
    "tanh": (helper.make_node("Tanh", ["x"], ["y"]), ()),
    "hardsigmoid": (helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.25, beta=0.4), ()),
    "hardswish": (helper.make_node("HardSwish", ["x"], ["y"]), ()),
    "leakyrelu": (helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1), ()),
    "prelu": (helper.make_node("PRelu", ["x", "slope"], ["y"]),
              (numpy_helper.from_array(np.array([0.1, 0.3, -0.2, 0.05], np.float32)
                                       .reshape(4, 1, 1), "slope"),)),
}


def _all_inputs(scale):
    """Every int8 value in each of 4 channels, as a (1, 4, 16, 16) float tensor."""
    q = np.arange(-128, 128, dtype=np.int64)
    q = np.broadcast_to(q, (4, 256)).reshape(1, 4, 16, 16)
    return q, (q * scale).astype(np.float32)


@pytest.mark.parametrize("name", [*ACTIVATIONS, "silu"])
def test_table_activation_all_inputs_within_one_lsb(name):
    """The table of every activation: over all 256 inputs the golden output is within
    1 LSB of onnxruntime's float result (0.5 LSB from rounding, the rest from float32)."""
    scale = 6.0 / 127
    if name == "silu":
        nodes = [helper.make_node("Sigmoid", ["x"], ["s"]),
                 helper.make_node("Mul", ["x", "s"], ["y"])]
        inits = ()
    else:
        node, inits = ACTIVATIONS[name]
        nodes = [node]
    model = _model(nodes, [_vi("x", [1, 4, 16, 16])], _vi("y", [1, 4, 16, 16]), inits)
    graph = import_model(model)
    tables = [layer for layer in graph.layers if layer.kind is OpKind.TABLE]
    assert len(graph.layers) == 1 and len(tables) == 1
    q, xf = _all_inputs(scale)
    want = _ort(model, {"x": xf})
    out_scale = max(float(np.abs(want).max()), 1e-3) / 127
    ranges = {"x": scale * 127, graph.outputs[0]: out_scale * 127}
    qg, _ = quantize(graph, QuantConfig.from_arch(ARCH), ranges=ranges)
    layer = qg.layers[0]
    got = run_golden_int(qg, {"x": q}).outputs[qg.outputs[0]]
    s_out = qg.tensors[qg.outputs[0]].scale
    err = np.abs(got * s_out - want) / s_out
    assert err.max() <= 1.0, (name, float(err.max()))
    assert err.max() <= 0.5 + 1e-3, (name, float(err.max()))
    # exact by construction: half an output step of rounding, the rest float32 noise
    assert layer.quant.table.shape == ((4, 256) if name == "prelu" else (1, 256))


def test_tables_are_indexed_by_bit_pattern():
    t = activation_tables(TableActivation.of("leakyrelu", alpha=0.5), 1.0, 1.0, 8)
    assert t.shape == (1, 256)
    assert t[0, 0] == 0 and t[0, 127] == 127 and t[0, 128] == -64 and t[0, 255] == 0
    assert golden.table_lookup(np.array([-128, -1, 0, 127]), t[0]).tolist() == [-64, 0, 0, 127]
    with pytest.raises(ValueError, match="must lie in"):
        golden.table_lookup(np.array([128]), t[0])


def test_gated_patterns_fuse_into_one_table():
    nodes = [helper.make_node("HardSigmoid", ["x"], ["g"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["g", "x"], ["y"])]
    model = _model(nodes, [_vi("x", [1, 4, 8, 8])], _vi("y", [1, 4, 8, 8]))
    graph = import_model(model)
    assert [layer.kind for layer in graph.layers] == [OpKind.TABLE]
    assert graph.layers[0].table_act.function == "hardswish"
    # a gate read twice stays a gate and a product
    nodes.append(helper.make_node("Add", ["y", "g"], ["z"]))
    model = _model(nodes, [_vi("x", [1, 4, 8, 8])], _vi("z", [1, 4, 8, 8]))
    kinds = [layer.kind for layer in import_model(model).layers]
    assert kinds == [OpKind.TABLE, OpKind.MUL, OpKind.ADD]


def _se_model():
    """conv -> HardSwish -> squeeze-and-excitation (GAP -> FC -> ReLU -> FC -> HardSigmoid
    -> Mul) -> Sigmoid, then a 2x nearest upsample and a concat with the feature map."""
    rng = np.random.default_rng(0)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale)
                                       .astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c0"], ["h0"]),
        helper.make_node("GlobalAveragePool", ["h0"], ["p"]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["f1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["f1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["f2"], kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["f2"], ["g"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["h0", "g"], ["se"]),
        helper.make_node("Conv", ["se", "w3", "b3"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("LeakyRelu", ["c3"], ["l3"], alpha=0.1),
        helper.make_node("MaxPool", ["l3"], ["m3"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["m3", "", "scales"], ["u"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Concat", ["u", "l3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["c4"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["c4"], ["s4"]),
        helper.make_node("Mul", ["c4", "s4"], ["y"]),
    ]
    inits = [w("w0", 8, 3, 3, 3), w("b0", 8, scale=0.1), w("w1", 4, 8, 1, 1),
             w("b1", 4, scale=0.1), w("w2", 8, 4, 1, 1), w("b2", 8, scale=0.1),
             w("w3", 6, 8, 1, 1), w("b3", 6, scale=0.1), w("w4", 5, 12, 1, 1),
             w("b4", 5, scale=0.1),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    return _model(nodes, [_vi("x", [1, 3, 10, 10])], _vi("y", [1, 5, 10, 10]), inits, 14)


def test_squeeze_excitation_upsample_compiles_iss_equals_golden(tmp_path):
    model = _se_model()
    graph = import_model(model)
    kinds = [layer.kind for layer in graph.layers]
    assert kinds.count(OpKind.TABLE) == 4  # hardswish, hardsigmoid, leakyrelu, silu
    assert OpKind.MUL in kinds and OpKind.RESIZE in kinds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg, _ = quantize(graph, QuantConfig.from_arch(ARCH), seed=1)
    result = compile_graph(qg, ARCH, tmp_path / "out", verify=True)
    assert result is not None
    # the quantized network follows the float model
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32)
    want = _ort(model, {"x": x})
    s_in = qg.tensors["x"].scale
    q = np.clip(np.rint(x / s_in), -128, 127).astype(np.int64)
    got = run_golden_int(qg, {"x": q}).outputs[qg.outputs[0]] * qg.tensors[qg.outputs[0]].scale
    assert golden.snr_db(want, got) > 20


def test_unsupported_resize_is_refused_with_the_reason():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    model = _model(nodes, [_vi("x", [1, 2, 4, 4])], _vi("y", [1, 2, 8, 8]), inits, 13)
    with pytest.raises(UnsupportedModelError, match="only nearest"):
        import_model(model)
    nodes = [helper.make_node("Mul", ["x", "z"], ["y"])]
    model = _model(nodes, [_vi("x", [1, 2, 4, 4]), _vi("z", [1, 1, 4, 4])],
                   _vi("y", [1, 2, 4, 4]))
    with pytest.raises(UnsupportedModelError, match="one value per channel"):
        import_model(model)
