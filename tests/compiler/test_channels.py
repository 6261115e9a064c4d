"""Channel shuffle (Reshape -> Transpose -> Reshape), Split and Slice along channels:
recognized as channel views and folded into weights, exact against onnxruntime; the
ShuffleNetV2-like example compiles and runs ISS == golden (RTL == ISS, slow)."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, simulate
from compiler.errors import UnsupportedModelError
from compiler.ir import OpKind, run_float
from compiler.partition import _static_shapes, node_macs
from compiler.pipeline import import_model
from compiler.runner import run_golden
from examples.models import EXAMPLES
from hw.arch import ArchConfig

ARCH = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384, wbuf_bytes=8192,
                  pbuf_entries=256, max_width=34, max_height=34, conv_k_max=5)


def _model(nodes, inits, out_c, opset=13, out="y"):
    graph = helper.make_graph(
        nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, out_c, 6, 6])],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _shuffle_nodes(x, y, c, g, p="sh"):
    return [helper.make_node("Reshape", [x, f"{p}5"], [f"{p}_r"], name=f"{p}_reshape1"),
            helper.make_node("Transpose", [f"{p}_r"], [f"{p}_t"], name=f"{p}_transpose",
                             perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", [f"{p}_t", f"{p}4"], [y], name=f"{p}_reshape2")], {
        f"{p}5": np.array([1, g, c // g, 6, 6], dtype=np.int64),
        f"{p}4": np.array([1, c, 6, 6], dtype=np.int64)}


def _assert_float_equal(model, graph):
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]
    got = next(iter(run_float(graph, x).values())).reshape(ref.shape)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def _w(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32)


@pytest.mark.parametrize("groups", [2, 4])
def test_shuffle_between_convs_folds_into_weights(groups):
    """conv -> relu -> shuffle -> depthwise -> conv: the shuffle moves below the
    depthwise (its weights permuted) and into the last conv's weight columns."""
    sh, consts = _shuffle_nodes("r", "s", 8, groups)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"), *sh,
             helper.make_node("Conv", ["s", "wd"], ["d"], name="dw", group=8, pads=[1] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("Conv", ["d", "w2"], ["y"], name="conv2")]
    model = _model(nodes, {"w1": _w(8, 8, 3, 3), "wd": _w(8, 1, 3, 3, seed=1),
                           "w2": _w(5, 8, 1, 1, seed=2), **consts}, 5)
    graph = import_model(model)
    assert [layer.kind for layer in graph.layers] == [OpKind.CONV, OpKind.DEPTHWISE,
                                                      OpKind.POINTWISE]
    # No extra channels: a permutation costs nothing.
    assert graph.shape(graph.layers[1].output) == (8, 6, 6)
    _assert_float_equal(model, graph)


def test_split_and_slice_into_convs_and_concat():
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1),
             helper.make_node("Conv", ["b", "w1"], ["cb"], name="conv_b"),
             helper.make_node("Relu", ["cb"], ["rb"], name="relu_b"),
             helper.make_node("Concat", ["a", "rb"], ["cat"], name="cat", axis=1),
             helper.make_node("Slice", ["cat", "st", "en", "ax"], ["sl"], name="slice"),
             helper.make_node("Conv", ["sl", "w2"], ["y"], name="conv_y", pads=[1] * 4,
                              kernel_shape=[3, 3])]
    model = _model(nodes, {"sizes": np.array([3, 5], dtype=np.int64), "w1": _w(4, 5, 1, 1),
                           "st": np.array([2], dtype=np.int64),
                           "en": np.array([6], dtype=np.int64),
                           "ax": np.array([1], dtype=np.int64),
                           "w2": _w(6, 4, 3, 3, seed=3)}, 6)
    graph = import_model(model)
    assert not any(layer.kind is OpKind.CHANNELS for layer in graph.layers)
    assert any("reads 5 of 8 channels" in n for n in graph.notes)
    _assert_float_equal(model, graph)


def test_view_into_add_with_another_tensor_is_refused():
    sh, consts = _shuffle_nodes("x", "s", 8, 2)
    nodes = [*sh, helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["s", "c"], ["y"], name="add")]
    model = _model(nodes, {"w": _w(8, 8, 1, 1), **consts}, 8)
    with pytest.raises(UnsupportedModelError, match=r"sh_reshape1, sh_transpose, sh_reshape2 "
                                                    r"feeding add \(add\)"):
        import_model(model)


def test_view_as_graph_output():
    # After a conv: the conv computes its output channels in the shuffled order.
    sh, consts = _shuffle_nodes("c", "y", 8, 2)
    model = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), *sh],
                   {"w": _w(8, 8, 1, 1), **consts}, 8)
    graph = import_model(model)
    assert [layer.kind for layer in graph.layers] == [OpKind.POINTWISE]
    _assert_float_equal(model, graph)
    # Straight from the graph input: the channels would have to move.
    sh, consts = _shuffle_nodes("x", "y", 8, 2)
    with pytest.raises(UnsupportedModelError, match=r"cannot be a graph output"):
        import_model(_model(sh, consts, 8))


def test_split_after_conv_bn_relu_splits_the_conv():
    """conv -> BN -> ReLU -> Split -> two convs: each half is its own conv computing only
    its channels, so the MACs do not grow."""
    c = 8
    bn = {f"bn_{k}": v for k, v in (("s", np.linspace(0.5, 1.5, c)), ("b", np.zeros(c)),
                                    ("m", np.linspace(-0.2, 0.2, c)), ("v", np.ones(c)))}
    bn = {k: v.astype(np.float32) for k, v in bn.items()}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"],
                              ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Split", ["r", "sizes"], ["a", "b"], name="split", axis=1),
             helper.make_node("Conv", ["a", "wa"], ["ca"], name="conv_a"),
             helper.make_node("Conv", ["b", "wb"], ["cb"], name="conv_b"),
             helper.make_node("Add", ["ca", "cb"], ["y"], name="add")]
    model = _model(nodes, {"w": _w(c, 8, 3, 3), "sizes": np.array([4, 4], dtype=np.int64),
                           "wa": _w(5, 4, 1, 1, seed=4), "wb": _w(5, 4, 1, 1, seed=5), **bn}, 5)
    graph = import_model(model)
    kinds = [layer.kind for layer in graph.layers]
    assert kinds.count(OpKind.CONV) == 2 and OpKind.CHANNELS not in kinds
    assert all(layer.weight.shape[1] == 4 for layer in graph.layers
               if layer.kind is OpKind.POINTWISE)
    _assert_float_equal(model, graph)


def test_shufflenet_v2_example_iss_equals_golden(tmp_path):
    model = EXAMPLES["shufflenet_v2_small"]()
    graph = import_model(model)
    assert not any(layer.kind is OpKind.CHANNELS for layer in graph.layers)
    # Every shuffle and split folded upwards or into weights: not one extra MAC, and no
    # concatenation wider than the model's.
    shapes = _static_shapes(model)
    assert sum(math.prod(graph.shape(layer.output)) * math.prod(layer.weight.shape[1:])
               for layer in graph.layers if layer.weight is not None) == \
        sum(node_macs(node, shapes) for node in model.graph.node)
    assert max(graph.shape(layer.output)[0] for layer in graph.layers
               if layer.kind is OpKind.CONCAT) == 96
    result = compile_model(model, ARCH, tmp_path / "out", verify=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sim = simulate(tmp_path / "out", x)
    golden = run_golden(result.graph, {"input": x})
    (name, want), = golden.outputs.items()
    assert np.array_equal(sim.outputs[name].reshape(want.shape), want)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0].reshape(-1)
    real = want.reshape(-1) * result.graph.tensors[name].scale
    snr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - real) ** 2))
    assert snr > 20, snr


@pytest.mark.slow
@pytest.mark.rtl
def test_shufflenet_v2_example_rtl_equals_iss(tmp_path):
    from tests.test_system_rtl import run_model_on_rtl_and_iss
    summary = run_model_on_rtl_and_iss(EXAMPLES["shufflenet_v2_small"](), tmp_path)
    assert summary["rtl_cycles"] > 0
