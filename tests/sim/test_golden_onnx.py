"""Golden ops against onnxruntime on single-op float models built with ``onnx.helper``.

Inputs and weights are quantized, the golden op runs on the integers, and onnxruntime
runs the float op on the *dequantized* integers, so both compute the same real function.

Tolerances:

- Accumulators (conv, conv1d, gemm, max pool): exact equality. All scales are powers of
  two and every accumulator stays below ``2**24`` in units of its scale, so float32
  represents every product and every partial sum exactly, whatever order onnxruntime
  adds them in.
- Requantized outputs (any op followed by requantization to int8, average pooling,
  global average pooling, add, concat): within 1 LSB of the float result quantized to the
  same output scale (rounded half up, as the accelerator rounds). The golden multiplier
  ``m / 2**s`` approximates the float scale ratio to 16 bits and onnxruntime rounds in
  float32, so results next to a rounding boundary may land on either side of it; at least
  80 % of the outputs must agree exactly (average pooling by 6 puts one output in six
  on an exact tie, which a 16-bit approximation of 1/6 moves to one side).
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sim.golden import (
    add,
    avg_pool2d,
    concat,
    conv1d,
    conv2d,
    dequantize,
    fixed_point_multiplier,
    fully_connected,
    global_avg_pool,
    max_pool2d,
    qrange,
    quantize,
    requantize,
    shared_shift_multipliers,
    sum_pool2d,
)

LO, HI = qrange(8)
OPSET = 17


def run_onnx(nodes, inputs, initializers=(), output_names=("y",)):
    """Run a float32 graph of ``nodes`` with feeds ``inputs`` (name -> array)."""
    rank = next(iter(inputs.values())).ndim
    graph = helper.make_graph(
        nodes, "single_op",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
        # Output shapes left symbolic: onnxruntime infers them, the tests compare them.
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_d{i}" for i in range(rank)])
         for n in output_names],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                     for k, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
    outs = sess.run(list(output_names), feeds)
    return [o.astype(np.float64) for o in outs]


def float_to_int8(y_float, scale):
    """The float reference requantized with the accelerator's rounding (half up)."""
    return np.clip(np.floor(y_float / scale + 0.5), LO, HI).astype(np.int64)


def assert_within_one_lsb(golden_q, y_float, scale):
    ref = float_to_int8(y_float, scale)
    assert golden_q.shape == ref.shape
    diff = np.abs(golden_q - ref)
    assert diff.max() <= 1, f"max difference {diff.max()} LSB"
    # Differences come only from near-ties; most outputs must agree exactly.
    assert np.mean(diff == 0) >= 0.8


def output_scale(y_float):
    # Deliberately not a power of two, so requantization needs a real multiplier.
    return float(np.abs(y_float).max()) / 100.0


CONV_CASES = [
    # id, N, C, H, W, M, K, stride, pads (top, left, bottom, right), groups
    ("std3x3_s1_p1", 1, 3, 9, 9, 4, 3, 1, (1, 1, 1, 1), 1),
    ("pw1x1", 2, 8, 5, 6, 6, 1, 1, (0, 0, 0, 0), 1),
    ("std5x5_s2_asym", 1, 4, 11, 10, 3, 5, 2, (2, 1, 0, 3), 1),
    ("std7x7_s2_p3", 1, 3, 14, 14, 4, 7, 2, (3, 3, 3, 3), 1),
    ("grouped3x3", 1, 6, 8, 8, 4, 3, 1, (0, 1, 2, 1), 2),
    ("dw3x3_s1", 1, 8, 8, 7, 8, 3, 1, (1, 1, 1, 1), 8),
    ("dw3x3_s2", 2, 6, 9, 9, 6, 3, 2, (0, 0, 1, 1), 6),
    ("dw_mult2_5x5", 1, 4, 10, 10, 8, 5, 1, (2, 2, 2, 2), 4),
]


def quantized_conv_operands(rng, n, c, h, w, m, k, groups, one_d=False):
    # Power-of-two scales (activation per tensor, weights per output channel).
    sx = 2.0 ** -5
    sw = 2.0 ** -rng.integers(6, 10, size=m)
    xq = rng.integers(-128, 128, size=(n, c, w) if one_d else (n, c, h, w))
    wq = rng.integers(-127, 128, size=(m, c // groups, k) if one_d else (m, c // groups, k, k))
    bq = rng.integers(-2 ** 12, 2 ** 12, size=m)
    return sx, sw, xq, wq, bq


def check_weighted_node(node, acc, xq, wq, bq, sx, sw):
    """onnxruntime's float result of ``node`` on the dequantized operands equals the golden
    accumulators exactly, and the requantized accumulators are within one LSB of it."""
    (y,) = run_onnx([node], {"x": dequantize(xq, sx)},
                    [("w", dequantize(wq, sw, axis=0)), ("b", dequantize(bq, sx * sw, axis=0))])
    np.testing.assert_array_equal(dequantize(acc, sx * sw), y)
    sy = output_scale(y)
    mult, shift = fixed_point_multiplier(sx * sw / sy)
    assert_within_one_lsb(requantize(acc, mult, shift, LO, HI), y, sy)


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_against_onnxruntime(case):
    _, n, c, h, w, m, k, stride, pads, groups = case
    rng = np.random.default_rng(sum(map(ord, case[0])))
    sx, sw, xq, wq, bq = quantized_conv_operands(rng, n, c, h, w, m, k, groups)
    acc = conv2d(xq, wq, bq, stride=stride, pads=pads, groups=groups)
    assert np.abs(acc).max() < 2 ** 24  # the exactness premise of this test
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k],
                            strides=[stride, stride], group=groups,
                            pads=[pads[0], pads[1], pads[2], pads[3]])
    check_weighted_node(node, acc, xq, wq, bq, sx, sw)


@pytest.mark.parametrize("act", ["Relu", "Clip6"])
def test_conv_activation_as_clamp_bounds(act):
    rng = np.random.default_rng(41)
    sx, sw, xq, wq, bq = quantized_conv_operands(rng, 1, 4, 8, 8, 5, 3, 1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1])]
    inits = [("w", dequantize(wq, sw, axis=0)), ("b", dequantize(bq, sx * sw, axis=0))]
    acc = conv2d(xq, wq, bq, pads=(1, 1, 1, 1))
    (pre,) = run_onnx(nodes + [helper.make_node("Identity", ["t"], ["y"])],
                      {"x": dequantize(xq, sx)}, inits)
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["t"], ["y"]))
    else:
        inits += [("lo", np.array(0.0)), ("hi", np.array(6.0))]
        nodes.append(helper.make_node("Clip", ["t", "lo", "hi"], ["y"]))
    (y,) = run_onnx(nodes, {"x": dequantize(xq, sx)}, inits)
    # Scale chosen so that 6.0 lies inside the int8 range and ReLU6 really clips.
    sy = min(output_scale(pre), 6.0 / 80)
    hi = min(HI, int(quantize(6.0, sy, 8))) if act == "Clip6" else HI
    mult, shift = fixed_point_multiplier(sx * sw / sy)
    got = requantize(acc, mult, shift, 0, hi)
    assert_within_one_lsb(got, y, sy)
    assert got.min() == 0
    if act == "Clip6":
        assert pre.max() > 6.0 and got.max() == hi


@pytest.mark.parametrize("k,stride,pads,groups", [(3, 1, (1, 1), 1), (5, 2, (2, 0), 1),
                                                  (3, 1, (0, 2), 2), (3, 2, (1, 1), 4)])
def test_conv1d_against_onnxruntime(k, stride, pads, groups):
    rng = np.random.default_rng(k * 100 + stride * 10 + groups)
    sx, sw, xq, wq, bq = quantized_conv_operands(rng, 2, 4, 1, 15, 4, k, groups, one_d=True)
    acc = conv1d(xq, wq, bq, stride=stride, pads=pads, groups=groups)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k], strides=[stride],
                            pads=list(pads), group=groups)
    check_weighted_node(node, acc, xq, wq, bq, sx, sw)


def test_gemm_against_onnxruntime():
    rng = np.random.default_rng(43)
    sx, sw = 2.0 ** -4, 2.0 ** -rng.integers(6, 10, size=10)
    xq = rng.integers(-128, 128, size=(3, 64))
    wq = rng.integers(-127, 128, size=(10, 64))
    bq = rng.integers(-2 ** 12, 2 ** 12, size=10)
    acc = fully_connected(xq, wq, bq)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    check_weighted_node(node, acc, xq, wq, bq, sx, sw)


POOL_CASES = [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)),
              ((3, 3), (1, 1), (0, 1, 2, 1)), ((2, 3), (1, 2), (1, 0, 0, 2))]


@pytest.mark.parametrize("kernel,stride,pads", POOL_CASES)
def test_max_pool_against_onnxruntime(kernel, stride, pads):
    rng = np.random.default_rng(sum(kernel) + 10 * sum(pads))
    sx = 2.0 ** -5
    xq = rng.integers(-128, 128, size=(2, 3, 9, 10))
    xq[0, 0] = rng.integers(-128, -1, size=(9, 10))  # padding must not win
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(stride), pads=list(pads))
    (y,) = run_onnx([node], {"x": dequantize(xq, sx)})
    np.testing.assert_array_equal(dequantize(max_pool2d(xq, kernel, stride, pads), sx), y)


@pytest.mark.parametrize("kernel,stride,pads", POOL_CASES)
def test_avg_pool_against_onnxruntime(kernel, stride, pads):
    rng = np.random.default_rng(sum(kernel) + 10 * sum(stride) + sum(pads))
    sx = 2.0 ** -5
    xq = rng.integers(-128, 128, size=(2, 3, 9, 10))
    # The golden divisor is the full window (padded zeros included).
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(stride), pads=list(pads), count_include_pad=1)
    (y,) = run_onnx([node], {"x": dequantize(xq, sx)})
    window = kernel[0] * kernel[1]
    # Window sums are exact; onnxruntime's one float32 division gives 1 ulp of slack.
    sums = sum_pool2d(xq, kernel, stride, pads)
    np.testing.assert_allclose(dequantize(sums, sx) / window, y, rtol=2 ** -23, atol=0)
    # Same in/out scale: the multiplier is just 1/window.
    mult, shift = fixed_point_multiplier(1.0 / window)
    assert_within_one_lsb(avg_pool2d(xq, kernel, stride, mult, shift, LO, HI, pads), y, sx)


def test_global_avg_pool_against_onnxruntime():
    rng = np.random.default_rng(47)
    sx = 2.0 ** -5
    xq = rng.integers(-128, 128, size=(2, 16, 7, 7))
    xq[:, :4] = np.abs(xq[:, :4])  # channels with a large mean, far from zero
    (y,) = run_onnx([helper.make_node("GlobalAveragePool", ["x"], ["y"])],
                    {"x": dequantize(xq, sx)})
    sy = output_scale(y)
    mult, shift = fixed_point_multiplier(sx / sy / 49)
    got = global_avg_pool(xq, mult, shift, LO, HI)
    assert got.shape == y.shape == (2, 16, 1, 1)
    assert_within_one_lsb(got, y, sy)


def test_add_against_onnxruntime():
    rng = np.random.default_rng(53)
    sa, sb = 0.031, 0.0123
    aq = rng.integers(-128, 128, size=(2, 8, 6, 6))
    bq = rng.integers(-128, 128, size=(2, 8, 6, 6))
    (y,) = run_onnx([helper.make_node("Add", ["a", "b"], ["y"])],
                    {"a": dequantize(aq, sa), "b": dequantize(bq, sb)})
    sy = output_scale(y) * 0.5  # outputs saturate at both rails
    (ma, mb), shift = shared_shift_multipliers([sa / sy, sb / sy])
    got = add(aq, bq, ma, mb, shift, LO, HI)
    assert_within_one_lsb(got, y, sy)
    assert got.max() == HI and got.min() == LO


def test_concat_against_onnxruntime():
    rng = np.random.default_rng(59)
    scales = [0.02, 0.05, 0.011]
    xq = [rng.integers(-128, 128, size=(1, c, 5, 5)) for c in (3, 4, 2)]
    feeds = {f"x{i}": dequantize(q, s) for i, (q, s) in enumerate(zip(xq, scales))}
    (y,) = run_onnx([helper.make_node("Concat", list(feeds), ["y"], axis=1)], feeds)
    sy = output_scale(y)
    ms, shift = shared_shift_multipliers([s / sy for s in scales])
    got = concat(xq, ms, shift, LO, HI)
    assert_within_one_lsb(got, y, sy)
