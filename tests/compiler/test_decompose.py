"""Kernels, strides, dilations and groups the engines do not run directly: rewritten
(compiler.codegen.decompose) and equal to the direct golden convolution, bit for bit."""

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.codegen.decompose import plan_conv, virtual_weights
from compiler.codegen.program import generate
from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import import_model
from compiler.runner import run_golden_int
from hw.arch import ArchConfig
from hw.isa import Engine, Opcode
from sim.golden import conv2d
from tests.compiler.test_codegen import run_iss
from tests.compiler.test_frontend import assert_float_matches

ARCH = ArchConfig(conv_k_max=3, max_width=32, max_height=32)


def conv_model(k, s, *, cin=3, cout=5, h=13, w=14, pad=None, groups=1, dil=1, one_d=False,
               seed=0, extra=(), auto_pad=None):
    rng = np.random.default_rng(seed)
    pad = (k // 2) * dil if pad is None else pad
    nd = 1 if one_d else 2
    shape = (cout, cin // groups) + (k,) * nd
    attrs = {"kernel_shape": [k] * nd, "strides": [s] * nd, "group": groups, "dilations": [dil] * nd}
    if auto_pad is None:
        attrs["pads"] = [pad] * (2 * nd)
    else:
        attrs["auto_pad"] = auto_pad
    inits = [numpy_helper.from_array(rng.normal(0, 1, shape).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 1, cout).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)]
    nodes += list(extra)
    xin = [1, cin, w] if one_d else [1, cin, h, w]
    last = nodes[-1].output[0]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         xin)],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def bit_exact(model, arch=ARCH, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = quantize(import_model(model), QuantConfig.from_arch(arch), random_samples=2)
    program = generate(graph, arch)
    x = np.random.default_rng(seed).integers(-128, 128, size=(1,) + graph.shape(graph.inputs[0]))
    got, result = run_iss(graph, arch, program, x)
    want = run_golden_int(graph, {graph.inputs[0]: x}).outputs
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert result.cycles == program.cycles
    return program


def computes(program):
    return [i for i in program.instructions if i.opcode is Opcode.COMPUTE]


@pytest.mark.parametrize("k", [5, 7, 9, 11])
@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_kernel_and_stride_decomposition_is_bit_exact(k, s):
    program = bit_exact(conv_model(k, s, seed=k * 10 + s))
    convs = [i for i in computes(program) if i.engine is Engine.CONV]
    assert convs, "the convolution runs on the conv engine"
    for i in convs:  # every engine job is one the engine runs natively
        assert max(i.k_h, i.k_w) <= ARCH.conv_k_max and i.stride_h == i.stride_w <= 2
    # one requantization: exactly one COMPUTE per output tile, none of them partial
    assert program.layers[0].macs == 5 * 3 * k * k * program_out_pixels(k, s)


def program_out_pixels(k, s, h=13, w=14):
    p = k // 2
    return ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)


@pytest.mark.parametrize("case", [
    {"k": 5, "s": 1, "one_d": True, "w": 64, "cin": 2, "cout": 4},
    {"k": 11, "s": 1, "one_d": True, "w": 60, "cin": 4, "cout": 4},
    {"k": 5, "s": 3, "one_d": True, "w": 61, "cin": 4, "cout": 4},
    {"k": 7, "s": 2, "h": 40, "w": 45, "cin": 3, "cout": 8},        # column and row tiles
    {"k": 11, "s": 4, "h": 50, "w": 51, "cin": 3, "cout": 6, "pad": 2},  # an AlexNet-like stem
    {"k": 3, "s": 1, "dil": 2, "cin": 3, "cout": 4},
    {"k": 3, "s": 3, "dil": 2, "cin": 3, "cout": 4},
    {"k": 5, "s": 1, "groups": 2, "cin": 4, "cout": 6},
    {"k": 3, "s": 2, "groups": 3, "cin": 6, "cout": 9, "h": 20, "w": 40},
    {"k": 3, "s": 1, "groups": 4, "cin": 4, "cout": 8},           # channel multiplier 2
    {"k": 7, "s": 1, "groups": 4, "cin": 4, "cout": 4},           # depthwise 7x7
    {"k": 5, "s": 4, "groups": 4, "cin": 4, "cout": 4},           # depthwise stride 4
    {"k": 4, "s": 2, "cin": 3, "cout": 4, "pad": 1},              # even kernel
    {"k": 6, "s": 3, "cin": 3, "cout": 4, "pad": 0},
], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_other_geometries_are_bit_exact(case):
    bit_exact(conv_model(**case, seed=len(case)))


def test_fused_max_pool_after_a_decomposed_conv():
    pool = helper.make_node("MaxPool", ["y"], ["p"], name="pool", kernel_shape=[2, 2],
                            strides=[2, 2])
    program = bit_exact(conv_model(7, 1, h=16, w=16, extra=[pool]))
    assert program.layers[0].fused == ["pool"]


def test_one_d_layers_fold_into_rows():
    """A 1-D conv streams R x L frames, not a K-row frame with one row of data."""
    program = bit_exact(conv_model(5, 1, one_d=True, w=64, cin=4, cout=4))
    assert "fold" in program.layers[0].engine
    (conv,) = [i for i in computes(program) if i.engine is Engine.CONV]
    assert conv.in_h > 1 and conv.out_h * conv.out_w == 64
    plan = plan_conv("c", 4, 1, 64, 4, (1, 5), (1, 1), (0, 2, 0, 2), (1, 1), ARCH)
    direct = plan_conv("c", 4, 1, 64, 4, (1, 3), (1, 1), (0, 1, 0, 1), (1, 1),
                       ARCH.replace(conv_k_max=5))
    assert plan.method == "fold" and plan.cycles < 2 * direct.cycles


def test_virtual_weights_hold_every_tap_once():
    rng = np.random.default_rng(1)
    w = rng.integers(-5, 6, size=(2, 3, 11, 11))
    for stride in ((1, 1), (2, 2), (4, 4), (3, 3)):
        plan = plan_conv("c", 3, 30, 30, 2, (11, 11), stride, (5, 5, 5, 5), (1, 1), ARCH)
        assert plan.method != "direct"
        wv = virtual_weights(plan, w)
        assert sorted(wv[wv != 0].tolist()) == sorted(w[w != 0].tolist())


def test_split_equals_direct_conv_in_golden_terms():
    """The split's virtual convolution over shifted windows is the direct convolution."""
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(1, 3, 12, 12))
    w = rng.integers(-128, 128, size=(4, 3, 7, 7))
    plan = plan_conv("c", 3, 12, 12, 4, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), ARCH)
    assert plan.method == "split" and plan.nb == (3, 3)
    _, hs, ws = plan.src
    xp = np.zeros((1, 3, hs, ws), dtype=np.int64)
    xp[:, :, 3:15, 3:15] = x
    k = plan.sub[0]
    virt = np.concatenate([xp[:, :, a * k:a * k + plan.op.in_h, b * k:b * k + plan.op.in_w]
                           for a in range(3) for b in range(3)], axis=1)
    np.testing.assert_array_equal(conv2d(virt, virtual_weights(plan, w)),
                                  conv2d(x, w, pads=(3, 3, 3, 3)))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("s", [1, 2])
def test_auto_pad(auto_pad, s):
    model = conv_model(4, s, h=9, w=10, auto_pad=auto_pad)
    assert_float_matches(model, import_model(model))
    bit_exact(model)


@pytest.mark.parametrize("k,s,pad,size", [(3, 2, 0, 8), (3, 2, 1, 10), (2, 2, 0, 7),
                                          (3, 3, 1, 12)])
def test_ceil_mode_max_pool(k, s, pad, size):
    pool = helper.make_node("MaxPool", ["y"], ["p"], name="pool", kernel_shape=[k, k],
                            strides=[s, s], pads=[pad] * 4, ceil_mode=1)
    model = conv_model(3, 1, h=size, w=size + 1, extra=[pool])
    graph = import_model(model)
    assert_float_matches(model, graph)
    bit_exact(model)


def test_ceil_mode_average_pool_that_changes_the_shape_runs():
    """The overhanging last windows divide by their inputs inside the map
    (tests/compiler/test_avgpool_divisors.py checks the values against onnxruntime)."""
    pool = helper.make_node("AveragePool", ["y"], ["p"], name="avg", kernel_shape=[3, 3],
                            strides=[2, 2], ceil_mode=1)
    model = conv_model(3, 1, h=8, w=8, extra=[pool])
    graph = import_model(model)
    assert graph.shape("p") == (5, 4, 4) and graph.layers[-1].count_pads == (0, 0, 0, 0)
    program = bit_exact(model)
    pools = [i for i in computes(program) if i.engine is Engine.POOL]
    # divisors 9 (inside), 6 (last row or column), 4 (last corner): one multiplier each
    assert len({(i.mult, i.shift) for i in pools}) == 3 and len(pools) >= 4


@pytest.mark.parametrize("one_d", [True, False])
def test_producer_writes_the_rewrite_source_directly(one_d):
    """A rewritten conv whose input has one producer needs no copy pass: the producer's
    STOREs scatter into the zero-bordered source (folded rows included)."""
    rng = np.random.default_rng(3)
    nd = 1 if one_d else 2
    second = helper.make_node("Conv", ["y", "w2"], ["z"], name="second",
                              kernel_shape=[7] * nd, pads=[3] * (2 * nd))
    model = conv_model(5, 1, one_d=one_d, w=48, h=12, cin=2, cout=4, extra=[second])
    model.graph.initializer.append(numpy_helper.from_array(
        rng.normal(0, 0.3, (3, 4) + (7,) * nd).astype(np.float32), "w2"))
    del model.graph.value_info[:]
    program = bit_exact(onnx.shape_inference.infer_shapes(model))
    pools = [program.layer_of[k] for k, i in enumerate(program.instructions)
             if i.opcode is Opcode.COMPUTE and i.engine is Engine.POOL]
    assert set(pools) == {"conv"}  # only the graph input is copied into a padded source
    assert program.layers[1].engine.startswith("conv (")
