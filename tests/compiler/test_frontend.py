"""ONNX frontend: loading, legality report, folding, lowering, float equivalence."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as cli_main
from compiler.errors import ConvForgeError, UnsupportedModelError
from compiler.frontend import ModelFileError, import_onnx, legality_issues
from compiler.ir import Activation, OpKind, run_float
from compiler.pipeline import import_model
from examples.models import mobilenet_v2_small, resnet, unsupported_model

# Helpers -----------------------------------------------------------------------------

def onnx_outputs(model: onnx.ModelProto, names, x: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime values of tensors ``names`` (intermediate tensors included)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def assert_float_matches(model, graph, seed=0, rtol=1e-4):
    """The lowered graph, run in numpy float, matches onnxruntime on a random input."""
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ref = onnx_outputs(model, graph.outputs, x)
    got = run_float(graph, x)
    for name in graph.outputs:
        r = ref[name].reshape(got[name].shape)
        scale = max(1e-6, float(np.abs(r).max()))
        err = float(np.abs(got[name] - r).max())
        assert err <= rtol * scale + 1e-6, f"{name}: max error {err} vs scale {scale}"


def make_model(nodes, inputs, outputs, inits=(), opset=13, name="test"):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def out(name, rank=4):
    """A graph output of known rank whose dimensions shape inference fills in."""
    return vi(name, [f"{name}_d{i}" for i in range(rank)])


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


RNG = np.random.default_rng(1234)


def weight(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.3


def bn_inits(prefix, c):
    return [const(f"{prefix}.g", RNG.uniform(0.5, 1.5, c).astype(np.float32)),
            const(f"{prefix}.b", RNG.normal(0, 0.3, c).astype(np.float32)),
            const(f"{prefix}.m", RNG.normal(0, 0.3, c).astype(np.float32)),
            const(f"{prefix}.v", RNG.uniform(0.5, 2.0, c).astype(np.float32))]


def bn_node(prefix, x, y, name=None):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{s}" for s in "gbmv"],
                            [y], name=name if name is not None else prefix)


# File errors ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"does not exist; check the path"):
        import_onnx(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01 this is certainly not a protobuf \xff\xfe" * 4)
    with pytest.raises(ModelFileError, match=r"is not an ONNX model"):
        import_onnx(path)


def test_text_file_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match=r"not an ONNX model"):
        import_onnx(path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match=r"is a directory"):
        import_onnx(tmp_path)


def test_wrong_argument_type():
    with pytest.raises(TypeError, match=r"model must be a path or an onnx.ModelProto, not 3"):
        import_onnx(3)


def test_file_errors_are_user_errors():
    assert issubclass(ModelFileError, ConvForgeError)


def test_inconsistent_models_are_file_errors():
    # shape inference lets a weight with the wrong input channels through
    w = numpy_helper.from_array(np.zeros((4, 5, 3, 3), np.float32), "w")
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
                       [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 6, 6])], [w])
    with pytest.raises(ModelFileError, match=r"model test is not a consistent ONNX model: "
                                             r"Layer 'c' \(conv\) weight shape \(4, 5, 3, 3\)"):
        import_onnx(model)
    # a constant subgraph the reference evaluator cannot compute
    inits = [numpy_helper.from_array(np.zeros(6, np.float32), "c"),
             numpy_helper.from_array(np.array([4], np.int64), "s")]
    model = make_model([helper.make_node("Reshape", ["c", "s"], ["r"], name="rs"),
                        helper.make_node("Add", ["x", "r"], ["y"], name="add")],
                       [vi("x", [1, 4, 1, 1])], [vi("y", [1, 4, 1, 1])], inits)
    with pytest.raises(ModelFileError, match=r"constant nodes \(rs\) cannot be evaluated: "
                                             r"ValueError"):
        import_onnx(model)
    # BatchNormalization parameters for another channel count
    inits = [numpy_helper.from_array(np.ones(5, np.float32), n) for n in "gbmv"]
    model = make_model([helper.make_node("BatchNormalization", ["x", *"gbmv"], ["y"], name="bn")],
                       [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 4])], inits)
    issues, _ = legality_issues(model)
    assert [str(i) for i in issues] == [
        ("bn (BatchNormalization): per-channel parameters of sizes 5 and 5 do not match the "
         "input's 3 channels")]


# Legality report -----------------------------------------------------------------------

def test_report_lists_every_unsupported_node():
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(unsupported_model())
    issues = info.value.issues
    assert [(i.node, i.op_type) for i in issues] == [("lrn", "LRN"), ("elu", "Elu")]
    text = str(info.value)
    assert "2 unsupported node(s)" in text
    for fragment in ("local response normalization", "cannot be expressed as a clamp"):
        assert fragment in text
    # Supported nodes are not reported: a dilated conv, auto_pad=SAME_UPPER, a ceil_mode
    # max pool and an 11x11 kernel all map.
    for name in ("conv_ok", "relu_ok", "conv_dilated", "conv_same", "pool_ceil", "conv_k11"):
        assert name not in text


def test_report_attribute_rules():
    x = vi("x", [1, 4, 8, 8])
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], name="avg_excl", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Conv", ["a", "w"], ["b"], name="grouped", group=2,
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w3"], ["c"], name="stride3", kernel_shape=[1, 1],
                         strides=[3, 3]),
        helper.make_node("Elu", ["c"], ["d"], name=""),
        helper.make_node("Sub", ["d", "d"], ["e"], name="diff"),
    ]
    model = make_model(nodes, [x], [out("e")],
                       [const("w", weight(4, 2, 3, 3)), const("w3", weight(4, 4, 1, 1))])
    issues, graph = legality_issues(model)
    assert graph is None
    found = {(i.node, i.op_type): i.reason for i in issues}
    # count_include_pad=0 with padding (per-position divisors), grouped convolutions and
    # strides the engines do not run are mapped
    assert ("avg_excl", "AveragePool") not in found
    assert ("grouped", "Conv") not in found and ("stride3", "Conv") not in found
    # An unnamed node gets a stable synthesized name: <op>_<position>.
    assert ("Elu_3", "Elu") in found
    assert "subtraction of two feature maps" in found[("diff", "Sub")]


def test_dynamic_spatial_dimension_is_reported():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                       [vi("x", ["batch", 3, "height", 32])], [out("y")])
    with pytest.raises(UnsupportedModelError,
                       match=r"x \(input\): dynamic dimension 'height' at axis 2; export the "
                             r"model with a fixed input size"):
        import_onnx(model)


def test_dynamic_batch_is_fixed_to_one():
    w = weight(4, 3, 3, 3)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1] * 4,
                                         kernel_shape=[3, 3])],
                       [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 4, 8, 8])], [const("w", w)])
    graph = import_model(model)
    assert graph.tensors["x"].shape == (3, 8, 8)
    assert any("dynamic batch dimension 'N' fixed to 1" in n for n in graph.notes)
    assert_float_matches(model, graph)


def test_batch_larger_than_one_is_reported():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                       [vi("x", [4, 3, 8, 8])], [out("y")])
    with pytest.raises(UnsupportedModelError, match=r"batch size 4 is not supported"):
        import_onnx(model)


def test_old_opset_is_reported():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                       [vi("x", [1, 3, 8, 8])], [out("y")], opset=7)
    with pytest.raises(UnsupportedModelError, match=r"opset 7 is too old"):
        import_onnx(model)


def test_softmax_in_the_middle_is_reported():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="sm", axis=1),
             helper.make_node("Relu", ["s"], ["y"], name="r")]
    model = make_model(nodes, [vi("x", [1, 3, 8, 8])], [out("y")])
    with pytest.raises(UnsupportedModelError, match=r"sm \(Softmax\): Softmax is supported "
                                                    r"only as the last node"):
        import_onnx(model)


def test_flatten_must_feed_fully_connected():
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Relu", ["f"], ["y"], name="r")]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [out("y", 2)])
    with pytest.raises(UnsupportedModelError, match=r"flat \(Flatten\): a flattened 4x4 "
                                                    r"feature map must feed a fully connected"):
        import_onnx(model)


def test_cli_check(tmp_path, capsys):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(mobilenet_v2_small(), str(good))
    onnx.save(unsupported_model(), str(bad))
    assert cli_main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK, 17 layers" in out and "host: softmax (Softmax)" in out
    # Every node the accelerator cannot run (LRN, Elu) falls back to the host.
    assert cli_main(["check", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "host: lrn (LRN)" in out and "host: elu (Elu)" in out
    assert "MACs on the accelerator" in out
    assert cli_main(["check", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


# Lowering --------------------------------------------------------------------------------

def test_batchnorm_folds_into_conv_and_relu6_fuses():
    for opset in (9, 11, 13):
        clip = (helper.make_node("Clip", ["b"], ["y"], name="clip", min=0.0, max=6.0)
                if opset < 11 else helper.make_node("Clip", ["b", "lo", "hi"], ["y"],
                                                    name="clip"))
        nodes = [helper.make_node("Conv", ["x", "w", "cb"], ["c"], name="conv",
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 bn_node("bn", "c", "b"), clip]
        inits = [const("w", weight(6, 3, 3, 3)), const("cb", weight(6)),
                 const("lo", np.float32(0)), const("hi", np.float32(6))] + bn_inits("bn", 6)
        model = make_model(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 6, 8, 8])], inits,
                           opset=opset)
        graph = import_model(model)
        assert [(l.name, l.kind, l.activation) for l in graph.layers] == [
            ("conv", OpKind.CONV, Activation.RELU6)]
        assert graph.layers[0].origin == ("conv", "bn", "clip")
        assert graph.outputs == ["y"]
        assert_float_matches(model, graph)


def test_lone_batchnorm_becomes_depthwise_scale():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             bn_node("bn", "p", "b"),
             helper.make_node("Relu", ["b"], ["y"], name="relu")]
    model = make_model(nodes, [vi("x", [1, 5, 8, 8])], [out("y")], bn_inits("bn", 5))
    graph = import_model(model)
    kinds = [(l.kind, l.kernel, l.groups, l.activation) for l in graph.layers]
    assert kinds == [(OpKind.MAXPOOL, (2, 2), 1, Activation.NONE),
                     (OpKind.DEPTHWISE, (1, 1), 5, Activation.RELU)]
    assert_float_matches(model, graph)


def test_clip_bounds_classify():
    cases = [((0.0, 6.0), Activation.RELU6, None), ((0.0, None), Activation.RELU, None),
             ((-1.0, 1.0), Activation.CLIP, (-1.0, 1.0))]
    for (lo, hi), act, clip in cases:
        ins = ["c", "lo", "hi" if hi is not None else ""]
        inits = [const("w", weight(2, 2, 1, 1)), const("lo", np.float32(lo))]
        if hi is not None:
            inits.append(const("hi", np.float32(hi)))
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
                 helper.make_node("Clip", ins, ["y"], name="clip")]
        model = make_model(nodes, [vi("x", [1, 2, 4, 4])], [out("y")], inits)
        graph = import_model(model)
        layer = graph.layers[0]
        assert (layer.kind, layer.activation, layer.clip) == (OpKind.POINTWISE, act, clip)
        assert_float_matches(model, graph)


def test_relu_after_relu6_composes():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Clip", ["c"], ["r6"], name="clip", min=0.0, max=6.0),
             helper.make_node("Relu", ["r6"], ["y"], name="relu")]
    model = make_model(nodes, [vi("x", [1, 2, 4, 4])], [out("y")],
                       [const("w", weight(2, 2, 1, 1))], opset=10)
    graph = import_model(model)
    assert [l.activation for l in graph.layers] == [Activation.RELU6]


def test_gemm_forms_and_flatten():
    for trans_b in (0, 1):
        w = weight(10, 48)
        nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
                 helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc",
                                  transB=trans_b, alpha=0.5, beta=2.0)]
        inits = [const("w", w if trans_b else w.T.copy()), const("b", weight(10))]
        model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", [1, 10])], inits)
        graph = import_model(model)
        (fc,) = graph.layers
        assert fc.kind is OpKind.FC and fc.inputs == ["x"] and fc.weight.shape == (10, 48)
        assert graph.shape("y") == (10, 1, 1)
        assert_float_matches(model, graph)


def test_matmul_plus_bias_is_fc():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["f"], name="reshape"),
             helper.make_node("MatMul", ["f", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["y"], name="bias")]
    inits = [const("shape", np.array([1, -1], np.int64)), const("w", weight(32, 7)),
             const("b", weight(7))]
    model = make_model(nodes, [vi("x", [1, 2, 4, 4])], [out("y", 2)], inits)
    graph = import_model(model)
    assert [(l.kind, l.origin) for l in graph.layers] == [
        (OpKind.FC, ("reshape", "mm", "bias"))]
    assert_float_matches(model, graph)


def test_constant_shape_chain_is_folded():
    model = resnet()
    graph = import_model(model)
    assert any("constant node(s) folded" in n for n in graph.notes)
    assert graph.layers[-1].kind is OpKind.FC
    assert not any(l.kind.value in ("flatten", "identity") for l in graph.layers)


def test_constant_of_shape_folds():
    # A ConstantOfShape + Mul chain producing a per-channel scale from constants only.
    nodes = [helper.make_node("ConstantOfShape", ["shp"], ["ones"], name="cos",
                              value=numpy_helper.from_array(np.array([2.0], np.float32))),
             helper.make_node("Mul", ["x", "ones"], ["y"], name="mul")]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [out("y")],
                       [const("shp", np.array([1, 3, 1, 1], np.int64))])
    graph = import_model(model)
    (layer,) = graph.layers
    assert layer.kind is OpKind.DEPTHWISE and np.allclose(layer.weight, 2.0)
    assert_float_matches(model, graph)


def test_zero_pad_folds_into_conv_but_not_maxpool():
    for opset in (9, 13):
        if opset < 11:
            pad = helper.make_node("Pad", ["x"], ["p"], name="pad", pads=[0, 0, 1, 2, 0, 0, 1, 2])
            inits = []
        else:
            pad = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad")
            inits = [const("pads", np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64))]
        nodes = [pad, helper.make_node("Conv", ["p", "w"], ["c"], name="conv",
                                       kernel_shape=[3, 5]),
                 helper.make_node("Pad", ["c", "pads2"] if opset >= 11 else ["c"], ["q"],
                                  name="pad2", **({} if opset >= 11 else
                                                  {"pads": [0, 0, 1, 1, 0, 0, 1, 1]})),
                 helper.make_node("MaxPool", ["q"], ["y"], name="pool", kernel_shape=[2, 2],
                                  strides=[2, 2])]
        inits += [const("w", weight(4, 3, 3, 5)),
                  const("pads2", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]
        model = make_model(nodes, [vi("x", [1, 3, 8, 8])], [out("y")], inits, opset=opset)
        graph = import_model(model)
        assert [(l.kind, l.pads) for l in graph.layers] == [
            (OpKind.CONV, (1, 2, 1, 2)), (OpKind.PAD, (1, 1, 1, 1)),
            (OpKind.MAXPOOL, (0, 0, 0, 0))]
        assert_float_matches(model, graph)


def test_residual_add_sum_concat_pools_dropout_identity():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"], name="r1"),
        helper.make_node("Conv", ["ar", "w2"], ["b"], name="c2", kernel_shape=[1, 1]),
        helper.make_node("Add", ["b", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["sr"], name="r2"),
        helper.make_node("Sum", ["sr", "x", "ar"], ["t"], name="sum3"),
        helper.make_node("Identity", ["t"], ["ti"], name="ident"),
        helper.make_node("Concat", ["ti", "sr"], ["cat"], name="cat", axis=1),
        helper.make_node("AveragePool", ["cat"], ["ap"], name="avg", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Dropout", ["ap"], ["dr"], name="drop"),
        helper.make_node("GlobalAveragePool", ["dr"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Softmax", ["f"], ["y"], name="softmax", axis=1),
    ]
    inits = [const("w1", weight(4, 4, 3, 3)), const("w2", weight(4, 4, 1, 1))]
    model = make_model(nodes, [vi("x", [1, 4, 8, 8])], [out("y", 2)], inits)
    graph = import_model(model)
    kinds = [(l.name, l.kind, l.activation) for l in graph.layers]
    assert kinds == [
        ("c1", OpKind.CONV, Activation.RELU), ("c2", OpKind.POINTWISE, Activation.NONE),
        ("add", OpKind.ADD, Activation.RELU), ("sum3", OpKind.ADD, Activation.NONE),
        ("sum3__add2", OpKind.ADD, Activation.NONE), ("cat", OpKind.CONCAT, Activation.NONE),
        ("avg", OpKind.AVGPOOL, Activation.NONE), ("gap", OpKind.GAP, Activation.NONE)]
    # The flatten of the 1x1 map is gone; its output name is kept for the host op.
    assert [(h.name, h.op_type, h.input) for h in graph.host_ops] == [("softmax", "Softmax",
                                                                      "f")]
    assert graph.outputs == ["f"] and graph.layers[-1].outputs == ["f"]
    assert_float_matches(model, graph)


def test_conv1d_is_h1_conv():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="c1d", kernel_shape=[5],
                              pads=[2, 2]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    model = make_model(nodes, [vi("x", [1, 2, 32])], [out("y", 3)],
                       [const("w", weight(4, 2, 5)), const("b", weight(4))])
    graph = import_model(model)
    (layer,) = graph.layers
    assert (layer.kind, layer.kernel, layer.pads, layer.weight.shape) == (
        OpKind.CONV, (1, 5), (0, 2, 0, 2), (4, 2, 1, 5))
    assert graph.shape("x") == (2, 1, 32) and graph.shape("y") == (4, 1, 32)
    assert_float_matches(model, graph)


def test_ceil_mode_without_effect_is_accepted():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                            strides=[2, 2], ceil_mode=1)
    model = make_model([node], [vi("x", [1, 3, 8, 8])], [out("y")])
    graph = import_model(model)
    assert graph.shape("y") == (3, 4, 4)


def test_identity_to_output_keeps_output_name():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Identity", ["c"], ["y"], name="id")]
    model = make_model(nodes, [vi("x", [1, 2, 4, 4])], [out("y")],
                       [const("w", weight(3, 2, 1, 1))])
    graph = import_model(model)
    assert graph.outputs == ["y"] and graph.layers[0].outputs == ["y"]
    assert set(graph.tensors) == {"x", "y"}


def test_imported_graph_is_validated_and_lowered():
    graph = import_model(mobilenet_v2_small())
    assert graph.lowered
    graph.validate()
    assert not any(l.kind in (OpKind.SCALE, OpKind.ACTIVATION, OpKind.FLATTEN,
                              OpKind.IDENTITY) for l in graph.layers)


def test_activation_after_maxpool_moves_before_it():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]
    model = make_model(nodes, [vi("x", [1, 3, 8, 8])], [out("y")], [const("w", weight(4, 3, 3, 3))])
    graph = import_model(model)
    assert [(l.name, l.activation, l.origin) for l in graph.layers] == [
        ("conv", Activation.RELU, ("conv", "relu")), ("pool", Activation.NONE, ("pool",))]
    assert graph.outputs == ["y"]
    assert_float_matches(model, graph)


def test_activation_on_graph_input_becomes_channel_conv():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2])]
    model = make_model(nodes, [vi("x", [1, 3, 8, 8])], [out("y")])
    graph = import_model(model)
    relu = graph.layers[0]
    assert (relu.kind, relu.groups, relu.activation) == (OpKind.DEPTHWISE, 3, Activation.RELU)
    assert np.all(relu.weight == 1) and np.all(relu.bias == 0)
    assert_float_matches(model, graph)


def test_unknown_shapes_after_a_refused_node_are_not_reported_again():
    nodes = [helper.make_node("Foo", ["x"], ["f"], name="custom", domain="com.example"),
             helper.make_node("Relu", ["f"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w"], ["y"], name="dilated", kernel_shape=[3, 3],
                              dilations=[2, 2])]
    graph = helper.make_graph(nodes, "g", [vi("x", [1, 3, 8, 8])], [out("y")],
                              [const("w", weight(2, 3, 3, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    issues, _ = legality_issues(model)
    assert [(i.node, i.op_type) for i in issues] == [("custom", "com.example.Foo")]


def test_unused_layers_and_inputs_are_dropped():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="used"),
             helper.make_node("MaxPool", ["x"], ["dead"], name="unused", kernel_shape=[2, 2])]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4]), vi("extra", [1, 3, 4, 4])], [out("y")])
    graph = import_model(model)
    assert graph.inputs == ["x"] and [l.name for l in graph.layers] == ["used"]
    assert any("'unused' computes nothing" in n for n in graph.notes)
    assert any("graph input 'extra' is not used" in n for n in graph.notes)


def test_dynamic_batch_with_traced_flatten_chain():
    model = resnet()
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "batch"
    del model.graph.output[0].type.tensor_type.shape.dim[0]
    model.graph.output[0].type.tensor_type.shape.dim.insert(0, onnx.TensorShapeProto.Dimension(
        dim_param="batch"))
    graph = import_model(model)
    assert graph.layers[-1].kind is OpKind.FC and graph.layers[-1].inputs[0] != "view_out"
    assert_float_matches(model, graph)


def test_dynamic_input_and_node_issues_are_reported_together():
    model = resnet()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_param = "height"
    stem = next(n for n in model.graph.node if n.name == "conv1")
    stem.attribute.append(helper.make_attribute("auto_pad", "SAME_LEFT"))
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    assert [(i.node, i.op_type) for i in info.value.issues] == [("input", "input"),
                                                                ("conv1", "Conv")]


def test_all_problems_of_one_node_in_one_line():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="bad", kernel_shape=[9, 9],
                            dilations=[0, 0], strides=[0, 4], auto_pad="SAME_LEFT")
    model = make_model([node], [vi("x", [1, 3, 32, 32])], [out("y")],
                       [const("w", weight(2, 3, 9, 9))])
    (issue,), _ = legality_issues(model)
    for fragment in ("auto_pad=SAME_LEFT", "dilations [0, 0]", "strides [0, 4]"):
        assert fragment in issue.reason


def test_constant_nodes_feed_clip_and_reshape():
    nodes = [helper.make_node("Constant", [], ["lo"], name="c_lo",
                              value=numpy_helper.from_array(np.array(0.0, np.float32))),
             helper.make_node("Constant", [], ["hi"], name="c_hi",
                              value=numpy_helper.from_array(np.array(6.0, np.float32))),
             helper.make_node("Constant", [], ["shape"], name="c_shape",
                              value=numpy_helper.from_array(np.array([1, 32], np.int64))),
             helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv", kernel_shape=[1, 1]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="/act/Clip"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="/Reshape"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="/fc/Gemm", transB=1)]
    model = make_model(nodes, [vi("x", [1, 2, 4, 4])], [out("y", 2)],
                       [const("w", weight(2, 2, 1, 1)), const("fw", weight(5, 32))])
    graph = import_model(model)
    assert [(l.name, l.kind, l.activation) for l in graph.layers] == [
        ("/conv/Conv", OpKind.POINTWISE, Activation.RELU6), ("/fc/Gemm", OpKind.FC,
                                                             Activation.NONE)]
    assert_float_matches(model, graph)


def test_one_dimensional_pooling():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[3],
                              strides=[2], pads=[1, 1]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"], name="gap")]
    model = make_model(nodes, [vi("x", [1, 2, 16])], [out("y", 3)])
    graph = import_model(model)
    assert [(l.kind, l.kernel, l.stride, l.pads) for l in graph.layers] == [
        (OpKind.MAXPOOL, (1, 3), (1, 2), (0, 1, 0, 1)), (OpKind.GAP, (1, 1), (1, 1), (0,) * 4)]
    assert graph.shape("p") == (2, 1, 8) and graph.shape("y") == (2, 1, 1)
    assert_float_matches(model, graph)


def test_average_pool_over_the_whole_map_is_global():
    node = helper.make_node("AveragePool", ["x"], ["y"], name="avg", kernel_shape=[7, 7])
    model = make_model([node], [vi("x", [1, 4, 7, 7])], [out("y")])
    graph = import_model(model)
    assert [l.kind for l in graph.layers] == [OpKind.GAP]
    assert_float_matches(model, graph)


def test_unused_dropout_mask_is_accepted_but_a_used_one_is_not():
    for used in (False, True):
        nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
                 helper.make_node("Relu", ["d"], ["y"], name="relu")]
        outputs = [out("y")]
        if used:
            outputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL,
                                                         [1, 3, 4, 4]))
        model = make_model(nodes, [vi("x", [1, 3, 4, 4])], outputs)
        issues, _ = legality_issues(model)
        assert [i.reason for i in issues] == (
            ["the mask output is not supported; export in eval mode"] if used else [])
