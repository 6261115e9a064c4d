"""The IR: invariants checked by Graph.validate, classification helpers, float execution."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.ir import (
    Activation,
    Graph,
    IRError,
    Layer,
    LayerQuant,
    OpKind,
    Tensor,
    classify_clamp,
    combine_activations,
    conv_kind,
    infer_shape,
    run_float,
)

RNG = np.random.default_rng(7)


def conv_graph(kind=OpKind.CONV, c=3, m=4, k=3, stride=1, pads=(1, 1, 1, 1), groups=1,
               size=8):
    w = RNG.standard_normal((m, c // groups, k, k)).astype(np.float32)
    layer = Layer("conv", kind, ["x"], ["y"], kernel=(k, k), stride=(stride, stride),
                  pads=pads, groups=groups, weight=w, bias=np.zeros(m, np.float32))
    oh = (size + pads[0] + pads[2] - k) // stride + 1
    ow = (size + pads[1] + pads[3] - k) // stride + 1
    return Graph("g", ["x"], ["y"], {"x": Tensor("x", (c, size, size)),
                                     "y": Tensor("y", (m, oh, ow))}, [layer])


def two_layer_graph():
    a = Layer("a", OpKind.MAXPOOL, ["x"], ["t"], kernel=(2, 2), stride=(2, 2))
    b = Layer("b", OpKind.GAP, ["t"], ["y"])
    return Graph("g", ["x"], ["y"], {"x": Tensor("x", (3, 8, 8)), "t": Tensor("t", (3, 4, 4)),
                                     "y": Tensor("y", (3, 1, 1))}, [a, b])


# validate ------------------------------------------------------------------------------

def test_valid_graphs_pass():
    graph = conv_graph()
    assert graph.validate() is graph
    two_layer_graph().validate()


def test_topological_order():
    g = two_layer_graph()
    g.layers.reverse()
    with pytest.raises(IRError, match=r"Layer 'b' reads 't' before it is produced"):
        g.validate()


def test_dangling_tensor():
    g = two_layer_graph()
    g.tensors["orphan"] = Tensor("orphan", (1, 1, 1))
    with pytest.raises(IRError, match=r"Dangling tensor\(s\) neither consumed nor output: orphan"):
        g.validate()


def test_shape_mismatch():
    g = two_layer_graph()
    g.tensors["t"] = Tensor("t", (3, 5, 4))
    with pytest.raises(IRError, match=r"Layer 'a' produces shape \(3, 4, 4\), but tensor 't' "
                                      r"has shape \(3, 5, 4\)"):
        g.validate()


def test_unknown_and_twice_produced_tensors():
    g = two_layer_graph()
    g.layers[1].inputs = ["nope"]
    with pytest.raises(IRError, match=r"reads unknown tensor 'nope'"):
        g.validate()
    g = two_layer_graph()
    g.layers[1].outputs = ["t"]
    with pytest.raises(IRError, match=r"Tensor 't' is produced twice"):
        g.validate()


def test_attribute_sanity():
    g = conv_graph()
    g.layers[0].stride = (0, 1)
    with pytest.raises(IRError, match=r"stride \(0, 1\), not a 2-tuple of ints >= 1"):
        g.validate()
    g = conv_graph(pads=(1, 1, 1, 1))
    g.layers[0].pads = (3, 1, 1, 1)
    g.tensors["y"] = Tensor("y", (4, 9, 8))
    with pytest.raises(IRError, match=r"pads \(3, 1, 1, 1\) must be smaller than kernel"):
        g.validate()
    g = two_layer_graph()
    g.layers[1].kernel = (3, 3)
    with pytest.raises(IRError, match=r"must have kernel \(1, 1\), stride \(1, 1\), no pads"):
        g.validate()


def test_weight_checks():
    g = conv_graph()
    g.layers[0].weight = g.layers[0].weight.astype(np.float64)
    with pytest.raises(IRError, match=r"weight must be a float32 array"):
        g.validate()
    g = conv_graph(kind=OpKind.CONV, c=4, m=4, groups=4)
    with pytest.raises(IRError, match=r"is depthwise \(groups == channels\): use DEPTHWISE"):
        g.validate()
    g = conv_graph(kind=OpKind.DEPTHWISE, c=4, m=4, groups=4)
    g.validate()
    g = conv_graph(kind=OpKind.POINTWISE, k=1, pads=(0, 0, 0, 0))
    g.validate()
    g.layers[0].bias = np.zeros(3, np.float32)
    with pytest.raises(IRError, match=r"bias must be a float32 array of shape \(4,\)"):
        g.validate()


def test_activation_checks():
    g = two_layer_graph()
    g.layers[1].activation = Activation.CLIP
    with pytest.raises(IRError, match=r"clip bounds None, not \(lo, hi\)"):
        g.validate()
    g.layers[1].clip = (-1.0, 1.0)
    g.validate()
    g.layers[1].activation = Activation.RELU
    with pytest.raises(IRError, match=r"has clip bounds but activation relu"):
        g.validate()


def test_lowered_graph_refuses_frontend_kinds():
    g = two_layer_graph()
    g.layers.insert(1, Layer("id", OpKind.IDENTITY, ["t"], ["u"]))
    g.layers[2].inputs = ["u"]
    g.tensors["u"] = Tensor("u", (3, 4, 4))
    g.validate()
    g.lowered = True
    with pytest.raises(IRError, match=r"Layer 'id' of kind identity remains in a lowered graph"):
        g.validate()


def test_add_and_concat_arity_and_shapes():
    tensors = {"a": Tensor("a", (2, 4, 4)), "b": Tensor("b", (3, 4, 4)),
               "y": Tensor("y", (5, 4, 4))}
    g = Graph("g", ["a", "b"], ["y"], tensors, [Layer("cat", OpKind.CONCAT, ["a", "b"], ["y"])])
    g.validate()
    g.layers[0].kind = OpKind.ADD
    with pytest.raises(IRError, match=r"input shapes differ"):
        g.validate()
    g.layers[0].inputs = ["a"]
    with pytest.raises(IRError, match=r"needs at least two inputs, not 1"):
        g.validate()


def test_graph_queries_and_copy():
    g = two_layer_graph()
    assert g.producer("t").name == "a" and g.producer("x") is None
    assert [l.name for l in g.consumers("t")] == ["b"]
    assert g.layer("b").kind is OpKind.GAP
    with pytest.raises(KeyError):
        g.layer("zz")
    assert g.unique_name("a") == "a_1" and g.unique_name("new") == "new"
    h = g.copy()
    h.layers[0].name = "changed"
    assert g.layers[0].name == "a"


# Classification helpers --------------------------------------------------------------------

def test_conv_kind():
    assert conv_kind(8, 8, (3, 3), (1, 1), (1, 1, 1, 1), 8) is OpKind.DEPTHWISE
    assert conv_kind(8, 16, (1, 1), (1, 1), (0, 0, 0, 0), 1) is OpKind.POINTWISE
    assert conv_kind(8, 16, (1, 1), (2, 2), (0, 0, 0, 0), 1) is OpKind.CONV
    assert conv_kind(8, 16, (3, 3), (1, 1), (1, 1, 1, 1), 1) is OpKind.CONV
    assert conv_kind(1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1) is OpKind.POINTWISE


def test_classify_and_combine_clamps():
    assert classify_clamp(0.0, 6.0) == (Activation.RELU6, None)
    assert classify_clamp(0.0, math.inf) == (Activation.RELU, None)
    big = float(np.finfo(np.float32).max)
    assert classify_clamp(-big, big) == (Activation.NONE, None)
    assert classify_clamp(-1.0, 1.0) == (Activation.CLIP, (-1.0, 1.0))
    relu = Layer("r", OpKind.ACTIVATION, ["x"], ["y"], activation=Activation.RELU)
    clip = Layer("c", OpKind.ACTIVATION, ["x"], ["y"], activation=Activation.CLIP,
                 clip=(-2.0, 3.0))
    assert combine_activations(relu, clip) == (Activation.CLIP, (0.0, 3.0))
    neg = Layer("n", OpKind.ACTIVATION, ["x"], ["y"], activation=Activation.CLIP,
                clip=(-5.0, -1.0))
    assert combine_activations(relu, neg) is None


def test_infer_shape_flatten_pad():
    flat = Layer("f", OpKind.FLATTEN, ["x"], ["y"])
    assert infer_shape(flat, [(3, 4, 5)]) == (60, 1, 1)
    pad = Layer("p", OpKind.PAD, ["x"], ["y"], pads=(1, 2, 3, 4))
    assert infer_shape(pad, [(3, 4, 5)]) == (3, 8, 11)


# run_float against onnxruntime --------------------------------------------------------------

def _ort_conv(x, w, b, stride, pads, groups):
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[stride] * 2, pads=list(pads),
                         group=groups, kernel_shape=list(w.shape[2:]))
    g = helper.make_graph([n], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                   list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0][0]


@pytest.mark.parametrize("kind,c,m,k,stride,groups", [
    (OpKind.CONV, 3, 5, 3, 1, 1), (OpKind.CONV, 4, 6, 5, 2, 1), (OpKind.CONV, 2, 3, 7, 2, 1),
    (OpKind.DEPTHWISE, 6, 6, 3, 2, 6), (OpKind.POINTWISE, 5, 7, 1, 1, 1)])
def test_run_float_conv_matches_onnxruntime(kind, c, m, k, stride, groups):
    pads = (k // 2, k // 2, k // 2 + (stride - 1), k // 2) if k > 1 else (0, 0, 0, 0)
    g = conv_graph(kind, c, m, k, stride, pads, groups, size=9)
    layer = g.layers[0]
    layer.bias = RNG.standard_normal(m).astype(np.float32)
    layer.activation = Activation.RELU6
    g.validate()
    x = RNG.standard_normal((1, c, 9, 9)).astype(np.float32)
    ref = np.clip(_ort_conv(x, layer.weight, layer.bias, stride, pads, groups), 0, 6)
    np.testing.assert_allclose(run_float(g, x)["y"], ref, rtol=1e-4, atol=1e-5)


def test_run_float_pools_fc_add_concat():
    x = RNG.standard_normal((4, 6, 6)).astype(np.float32)
    layers = [
        Layer("mp", OpKind.MAXPOOL, ["x"], ["mp"], kernel=(3, 3), stride=(2, 2),
              pads=(1, 1, 1, 1)),
        Layer("ap", OpKind.AVGPOOL, ["x"], ["ap"], kernel=(3, 3), stride=(2, 2),
              pads=(1, 1, 1, 1)),
        Layer("add", OpKind.ADD, ["mp", "ap"], ["s"], activation=Activation.RELU),
        Layer("cat", OpKind.CONCAT, ["s", "mp"], ["cat"]),
        Layer("fc", OpKind.FC, ["cat"], ["y"],
              weight=RNG.standard_normal((3, 72)).astype(np.float32)),
    ]
    tensors = {n: Tensor(n, s) for n, s in (("x", (4, 6, 6)), ("mp", (4, 3, 3)),
                                            ("ap", (4, 3, 3)), ("s", (4, 3, 3)),
                                            ("cat", (8, 3, 3)), ("y", (3, 1, 1)))}
    g = Graph("g", ["x"], ["y"], tensors, layers).validate()
    values = run_float(g, x, keep_all=True)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    xz = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    mp = np.array([[[xp[c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(3)]
                    for i in range(3)] for c in range(4)])
    ap = np.array([[[xz[c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum() / 9 for j in range(3)]
                    for i in range(3)] for c in range(4)])
    np.testing.assert_allclose(values["mp"], mp, rtol=1e-6)
    np.testing.assert_allclose(values["ap"], ap, rtol=1e-5, atol=1e-6)
    s = np.maximum(mp + ap, 0)
    y = layers[-1].weight @ np.concatenate([s, mp]).reshape(-1)
    np.testing.assert_allclose(values["y"].reshape(-1), y, rtol=1e-4, atol=1e-5)
    assert set(run_float(g, x)) == {"y"}


def test_run_float_input_checks():
    g = two_layer_graph()
    with pytest.raises(ValueError, match=r"Graph input 'x' must have shape \(3, 8, 8\)"):
        run_float(g, np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"Missing value for graph input 'x'"):
        run_float(g, {"z": np.zeros((3, 8, 8))})
    assert run_float(g, np.ones((1, 3, 8, 8)))["y"].shape == (3, 1, 1)


def test_no_onnx_types_in_ir():
    g = conv_graph()
    for layer in g.layers:
        for value in vars(layer).values():
            assert not type(value).__module__.startswith("onnx")
    from compiler import ir
    assert "onnx" not in vars(ir)


def test_quant_fields_checked():
    g = conv_graph()
    layer = g.layers[0]
    layer.quant = LayerQuant(weight=np.zeros(layer.weight.shape, np.int64),
                             bias=np.zeros(4, np.int64), m=np.full(4, 3), s=np.full(4, 9),
                             lo=0, hi=127)
    g.validate()
    layer.quant.m = np.full(3, 3)
    with pytest.raises(IRError, match=r"multipliers \(3,\) and shifts \(4,\) must be 1-D"):
        g.validate()
    layer.quant.s = np.full(3, 9)
    with pytest.raises(IRError, match=r"has 3 multipliers for 4 output channels"):
        g.validate()
    layer.quant.m, layer.quant.s = np.ones(1, np.int64), np.zeros(1, np.int64)
    layer.quant.lo = 127
    with pytest.raises(IRError, match=r"output clamp lo=127 is not below hi=127"):
        g.validate()
    layer.quant.lo = -128
    layer.quant.weight = np.zeros((4, 3, 1, 1), np.int64)
    with pytest.raises(IRError, match=r"integer weight shape \(4, 3, 1, 1\) does not match"):
        g.validate()
