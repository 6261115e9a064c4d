"""Golden ops against plain-loop references written from the definitions, bit for bit.

The references below use Python integers, explicit loops and bounds checks instead of
padding, and ``fractions.Fraction`` for rounding (``floor(v / 2**s + 1/2)``), so they
share no code path with the vectorized implementation.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from sim import golden
from sim.golden import (
    accumulator_range,
    add,
    auto_pads,
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
    round_shift,
    snr_db,
    sum_pool2d,
)

# Plain-loop references -------------------------------------------------------------------


def ref_round_shift(v, s):
    return math.floor(Fraction(int(v), 2 ** int(s)) + Fraction(1, 2))


def ref_requant(v, m, s, lo, hi):
    return min(max(ref_round_shift(int(v) * int(m), s), lo), hi)


def ref_conv2d(x, w, bias, stride, pads, groups):
    n_, _, h_, w_ = x.shape
    m_, cg, kh, kw = w.shape
    sh, sw = stride
    pt, pl, pb, pr = pads
    oh = (h_ + pt + pb - kh) // sh + 1
    ow = (w_ + pl + pr - kw) // sw + 1
    mg = m_ // groups
    out = np.zeros((n_, m_, oh, ow), dtype=object)
    for n in range(n_):
        for m in range(m_):
            g = m // mg
            for oy in range(oh):
                for ox in range(ow):
                    acc = int(bias[m]) if bias is not None else 0
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                y = oy * sh + i - pt
                                xx = ox * sw + j - pl
                                if 0 <= y < h_ and 0 <= xx < w_:
                                    acc += int(x[n, g * cg + c, y, xx]) * int(w[m, c, i, j])
                    out[n, m, oy, ox] = acc
    return out


def ref_conv1d(x, w, bias, stride, pads, groups):
    n_, _, l_ = x.shape
    m_, cg, k_ = w.shape
    left, right = pads
    ol = (l_ + left + right - k_) // stride + 1
    mg = m_ // groups
    out = np.zeros((n_, m_, ol), dtype=object)
    for n in range(n_):
        for m in range(m_):
            for o in range(ol):
                acc = int(bias[m]) if bias is not None else 0
                for c in range(cg):
                    for k in range(k_):
                        p = o * stride + k - left
                        if 0 <= p < l_:
                            acc += int(x[n, (m // mg) * cg + c, p]) * int(w[m, c, k])
                out[n, m, o] = acc
    return out


def ref_fc(x, w, bias):
    out = np.zeros((x.shape[0], w.shape[0]), dtype=object)
    for n in range(x.shape[0]):
        for m in range(w.shape[0]):
            acc = int(bias[m]) if bias is not None else 0
            for k in range(x.shape[1]):
                acc += int(x[n, k]) * int(w[m, k])
            out[n, m] = acc
    return out


def ref_pool(x, kernel, stride, pads, kind):
    n_, c_, h_, w_ = x.shape
    kh, kw = kernel
    sh, sw = stride
    pt, pl, pb, pr = pads
    oh = (h_ + pt + pb - kh) // sh + 1
    ow = (w_ + pl + pr - kw) // sw + 1
    out = np.zeros((n_, c_, oh, ow), dtype=object)
    for n in range(n_):
        for c in range(c_):
            for oy in range(oh):
                for ox in range(ow):
                    vals = [int(x[n, c, oy * sh + i - pt, ox * sw + j - pl])
                            for i in range(kh) for j in range(kw)
                            if 0 <= oy * sh + i - pt < h_ and 0 <= ox * sw + j - pl < w_]
                    out[n, c, oy, ox] = max(vals) if kind == "max" else sum(vals)
    return out


def ref_requant_array(acc, m, s, lo, hi, axis=1):
    acc = np.asarray(acc, dtype=object)
    out = np.zeros(acc.shape, dtype=np.int64)
    m_arr, s_arr = np.asarray(m), np.asarray(s)
    for idx in np.ndindex(acc.shape):
        mi = m_arr[idx[axis]] if m_arr.ndim else m_arr
        si = s_arr[idx[axis]] if s_arr.ndim else s_arr
        out[idx] = ref_requant(acc[idx], mi, si, lo, hi)
    return out


def assert_same(got, ref):
    assert got.dtype == np.int64
    assert got.shape == ref.shape
    assert all(int(a) == int(b) for a, b in zip(got.flat, ref.flat))


# round_shift / requantize ---------------------------------------------------------------

def test_qrange():
    assert qrange(8) == (-128, 127)
    assert qrange(2) == (-2, 1)
    assert qrange(32) == (-2 ** 31, 2 ** 31 - 1)


def test_round_shift_is_floor_of_half_up_including_negatives():
    xs = np.arange(-70, 71)
    for s in range(8):
        got = round_shift(xs, s)
        assert_same(got, np.array([ref_round_shift(v, s) for v in xs], dtype=object))
    # Ties go up, also below zero: -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1.
    assert round_shift([-5, -3, -1, 1, 3, 5], 1).tolist() == [-2, -1, 0, 1, 2, 3]
    assert round_shift([7, -7], 0).tolist() == [7, -7]


def test_round_shift_extreme_values_stay_exact():
    xs = np.array([2 ** 63 - 1, -2 ** 63, 2 ** 62 + 12345, -(2 ** 62) - 1], dtype=np.int64)
    for s in (1, 17, 62):
        assert_same(round_shift(xs, s), np.array([ref_round_shift(v, s) for v in xs],
                                                 dtype=object))


@pytest.mark.parametrize("seed", range(6))
def test_requantize_per_layer_and_per_channel(seed):
    rng = np.random.default_rng(seed)
    lo, hi = qrange(8)
    if seed % 3 == 1:
        lo = 0  # ReLU
    if seed % 3 == 2:
        lo, hi = 0, 96  # ReLU6 with q(6) = 96
    acc = rng.integers(-2 ** 24, 2 ** 24, size=(2, 5, 3, 4))
    for m, s in [(1, 0), (1, 16), (rng.integers(1, 2 ** 16), 22), (3, 0),
                 (rng.integers(0, 2 ** 16, size=5), rng.integers(0, 30, size=5)),
                 (rng.integers(1, 2 ** 16, size=5), 20)]:
        got = requantize(acc, m, s, lo, hi)
        assert_same(got, ref_requant_array(acc, m, s, lo, hi))


def test_requantize_saturates_at_both_rails():
    acc = np.array([[-10 ** 6, -129, -128, -127, 0, 126, 127, 128, 10 ** 6]])
    assert requantize(acc, 1, 0, -128, 127, axis=0).tolist() == [
        [-128, -128, -128, -127, 0, 126, 127, 127, 127]]
    got = requantize(acc * 4 + 2, 1, 2, -128, 127, axis=0)
    assert_same(got, ref_requant_array(acc * 4 + 2, 1, 2, -128, 127, axis=0))
    assert got.min() == -128 and got.max() == 127


def test_requantize_per_channel_along_other_axes():
    rng = np.random.default_rng(7)
    acc = rng.integers(-5000, 5000, size=(3, 4, 6))
    m = rng.integers(0, 300, size=6)
    s = rng.integers(0, 12, size=6)
    assert_same(requantize(acc, m, s, -100, 100, axis=-1),
                ref_requant_array(acc, m, s, -100, 100, axis=2))
    assert_same(requantize(acc, m[:4], 5, -100, 100, axis=1),
                ref_requant_array(acc, m[:4], 5, -100, 100, axis=1))


def test_requantize_wide_products_fall_back_to_exact_integers():
    rng = np.random.default_rng(3)
    acc = rng.integers(-2 ** 47, 2 ** 47, size=(1, 4, 5))
    m = rng.integers(2 ** 30, 2 ** 32, size=4)
    s = np.array([40, 45, 50, 62])
    assert_same(requantize(acc, m, s, -2 ** 31, 2 ** 31 - 1),
                ref_requant_array(acc, m, s, -2 ** 31, 2 ** 31 - 1))


def test_fixed_point_multiplier_is_precise_and_in_range():
    rng = np.random.default_rng(11)
    reals = np.concatenate([rng.uniform(1e-6, 3.0, size=200), [1.0, 0.5, 0.25, 1 / 9]])
    for bits in (8, 16, 31):
        m, s = fixed_point_multiplier(reals, mult_bits=bits)
        assert m.shape == reals.shape and m.dtype == np.int64
        assert np.all(m < 2 ** bits) and np.all(m >= 2 ** (bits - 1))
        approx = m / np.exp2(s)
        assert np.all(np.abs(approx - reals) <= reals * 2.0 ** -(bits - 1))
    assert fixed_point_multiplier(0.25, mult_bits=16) == (32768, 17)
    assert fixed_point_multiplier(1e-20, mult_bits=16, max_shift=20) == (0, 20)
    m, s = fixed_point_multiplier(2.0 ** -30, mult_bits=8, max_shift=32)
    assert (m, s) == (4, 32)


# Convolutions ---------------------------------------------------------------------------

CONV_CASES = [
    # (kernel, stride, pads, (C, M, groups))
    (1, 1, (0, 0, 0, 0), (4, 3, 1)),
    (3, 1, (1, 0, 1, 2), (1, 3, 1)),
    (1, 2, (0, 1, 1, 0), (4, 4, 2)),
    (3, 1, (1, 1, 1, 1), (3, 4, 1)),
    (3, 2, (0, 0, 1, 1), (4, 6, 2)),
    (3, 2, (1, 2, 0, 1), (4, 4, 4)),
    (3, 1, (2, 0, 1, 3), (3, 6, 3)),
    (5, 1, (2, 2, 2, 2), (2, 3, 1)),
    (5, 2, (1, 0, 2, 3), (4, 4, 4)),
    (7, 1, (3, 3, 3, 3), (2, 2, 1)),
    (7, 2, (0, 3, 2, 1), (3, 3, 3)),
]


@pytest.mark.parametrize("k,stride,pads,chans", CONV_CASES)
def test_conv2d_matches_loops(k, stride, pads, chans):
    c, m, groups = chans
    rng = np.random.default_rng(hash((k, stride, pads, chans)) % 2 ** 32)
    x = rng.integers(-128, 128, size=(2, c, 9, 8))
    w = rng.integers(-128, 128, size=(m, c // groups, k, k))
    bias = rng.integers(-2 ** 20, 2 ** 20, size=m)
    got = conv2d(x, w, bias, stride=(stride, stride), pads=pads, groups=groups)
    assert_same(got, ref_conv2d(x, w, bias, (stride, stride), pads, groups))


def test_conv2d_rectangular_kernel_and_anisotropic_stride_without_bias():
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(1, 4, 7, 10))
    w = rng.integers(-128, 128, size=(2, 4, 3, 2))
    assert_same(conv2d(x, w, stride=(2, 1), pads=(0, 1, 2, 0)),
                ref_conv2d(x, w, None, (2, 1), (0, 1, 2, 0), 1))


def test_conv2d_wide_operands_use_exact_int64_path():
    # max|x| * sum|w| exceeds 2**53, where float64 would round.
    rng = np.random.default_rng(9)
    x = rng.integers(-2 ** 31, 2 ** 31, size=(1, 3, 5, 5))
    w = rng.integers(-2 ** 20, 2 ** 20, size=(2, 3, 3, 3))
    assert_same(conv2d(x, w, pads=(1, 1, 1, 1)), ref_conv2d(x, w, None, (1, 1), (1, 1, 1, 1), 1))


def test_conv2d_refuses_int64_overflow():
    x = np.full((1, 2, 3, 3), 2 ** 40)
    w = np.full((1, 2, 3, 3), 2 ** 20)
    with pytest.raises(ValueError, match=r"^x and w must keep accumulators inside int64"):
        conv2d(x, w)


@pytest.mark.parametrize("k,stride,pads,groups", [
    (1, 1, (0, 0), 1), (3, 1, (1, 1), 1), (3, 2, (0, 2), 2), (5, 1, (2, 1), 4), (7, 2, (3, 3), 1),
])
def test_conv1d_matches_loops(k, stride, pads, groups):
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.integers(-128, 128, size=(2, 4, 13))
    w = rng.integers(-128, 128, size=(4, 4 // groups, k))
    bias = rng.integers(-1000, 1000, size=4)
    assert_same(conv1d(x, w, bias, stride=stride, pads=pads, groups=groups),
                ref_conv1d(x, w, bias, stride, pads, groups))


def test_fully_connected_matches_loops():
    rng = np.random.default_rng(21)
    x = rng.integers(-128, 128, size=(3, 37))
    w = rng.integers(-128, 128, size=(5, 37))
    bias = rng.integers(-2 ** 20, 2 ** 20, size=5)
    assert_same(fully_connected(x, w, bias), ref_fc(x, w, bias))
    assert_same(fully_connected(x, w), ref_fc(x, w, None))


# Pooling --------------------------------------------------------------------------------

POOL_CASES = [
    ((2, 2), (2, 2), (0, 0, 0, 0)),
    ((3, 3), (2, 2), (1, 1, 1, 1)),
    ((3, 3), (1, 1), (0, 1, 2, 0)),
    ((2, 3), (1, 2), (1, 0, 0, 2)),
    ((5, 5), (2, 2), (2, 2, 2, 2)),
]


@pytest.mark.parametrize("kernel,stride,pads", POOL_CASES)
def test_max_and_sum_pool_match_loops(kernel, stride, pads):
    rng = np.random.default_rng(sum(kernel) * 7 + sum(pads))
    # All-negative inputs: a padded zero would win a max pool if padding counted.
    x = rng.integers(-128, 0, size=(2, 3, 9, 8))
    assert_same(max_pool2d(x, kernel, stride, pads), ref_pool(x, kernel, stride, pads, "max"))
    x = rng.integers(-128, 128, size=(2, 3, 9, 8))
    assert_same(max_pool2d(x, kernel, stride, pads), ref_pool(x, kernel, stride, pads, "max"))
    assert_same(sum_pool2d(x, kernel, stride, pads), ref_pool(x, kernel, stride, pads, "sum"))


@pytest.mark.parametrize("kernel,stride,pads", POOL_CASES)
def test_avg_pool_is_requantized_sum(kernel, stride, pads):
    rng = np.random.default_rng(sum(stride) * 3 + sum(pads))
    x = rng.integers(-128, 128, size=(1, 4, 9, 8))
    m, s = fixed_point_multiplier(1 / (kernel[0] * kernel[1]))
    ref = ref_requant_array(ref_pool(x, kernel, stride, pads, "sum"), m, s, -128, 127)
    assert_same(avg_pool2d(x, kernel, stride, m, s, -128, 127, pads), ref)
    ms = rng.integers(1, 2 ** 12, size=4)
    ref = ref_requant_array(ref_pool(x, kernel, stride, pads, "sum"), ms, 14, 0, 127)
    assert_same(avg_pool2d(x, kernel, stride, ms, 14, 0, 127, pads), ref)


def test_global_avg_pool_matches_loops():
    rng = np.random.default_rng(17)
    x = rng.integers(-128, 128, size=(2, 5, 7, 7))
    m, s = fixed_point_multiplier(1 / 49)
    sums = ref_pool(x, (7, 7), (1, 1), (0, 0, 0, 0), "sum")
    got = global_avg_pool(x, m, s, -128, 127)
    assert got.shape == (2, 5, 1, 1)
    assert_same(got, ref_requant_array(sums, m, s, -128, 127))


# Element-wise ---------------------------------------------------------------------------

def test_add_rounds_once_and_saturates():
    rng = np.random.default_rng(23)
    a = rng.integers(-128, 128, size=(2, 3, 4, 4))
    b = rng.integers(-128, 128, size=(2, 3, 4, 4))
    for ma, mb, s, lo, hi in [(1, 1, 0, -128, 127), (3, 5, 2, -128, 127),
                              (23170, 40000, 15, 0, 127), (1, 1, 1, -128, 127)]:
        got = add(a, b, ma, mb, s, lo, hi)
        ref = np.array([min(max(ref_round_shift(int(p) * ma + int(q) * mb, s), lo), hi)
                        for p, q in zip(a.flat, b.flat)], dtype=object).reshape(a.shape)
        assert_same(got, ref)
    assert add([[100]], [[100]], 1, 1, 0, -128, 127).tolist() == [[127]]
    assert add([[-100]], [[-100]], 1, 1, 0, -128, 127).tolist() == [[-128]]


def test_add_per_channel_multipliers():
    rng = np.random.default_rng(29)
    a = rng.integers(-128, 128, size=(1, 3, 2, 2))
    b = rng.integers(-128, 128, size=(1, 3, 2, 2))
    ma, mb = np.array([1, 7, 300]), np.array([2, 0, 5])
    got = add(a, b, ma, mb, 3, -128, 127)
    ref = np.zeros(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        c = idx[1]
        ref[idx] = min(max(ref_round_shift(int(a[idx]) * ma[c] + int(b[idx]) * mb[c], 3),
                           -128), 127)
    assert_same(got, ref)


def test_concat_rescales_each_input():
    rng = np.random.default_rng(31)
    xs = [rng.integers(-128, 128, size=(2, c, 3, 3)) for c in (2, 3, 1)]
    ms, s = [1 << 8, 300, 511], 8
    got = concat(xs, ms, s, -128, 127)
    assert got.shape == (2, 6, 3, 3)
    ref = np.concatenate([ref_requant_array(x, mi, s, -128, 127) for x, mi in zip(xs, ms)],
                         axis=1)
    assert_same(got, ref)
    got = concat(xs[:2], [1, 3], [0, 1], -128, 127)
    assert_same(got[:, :2], xs[0].astype(object))
    assert_same(got[:, 2:], ref_requant_array(xs[1], 3, 1, -128, 127))
    ys = [rng.integers(-128, 128, size=(2, 3, w)) for w in (2, 5)]
    assert concat(ys, [1, 1], 0, -128, 127, axis=-1).shape == (2, 3, 7)


# Float <-> integer ----------------------------------------------------------------------

def test_quantize_rounds_half_to_even_and_saturates():
    got = quantize([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1000.0, -1000.0], 1.0, 8, axis=0)
    assert got.dtype == np.int64
    assert got.tolist() == [0, 2, 2, 0, -2, -2, 127, -128]
    x = np.array([[0.25, -0.5], [3.0, 6.0]])
    assert quantize(x, np.array([0.25, 2.0]), 4, axis=0).tolist() == [[1, -2], [2, 3]]


def test_dequantize_roundtrip_and_snr():
    rng = np.random.default_rng(37)
    x = rng.normal(size=(4, 8, 5, 5))
    scale = np.abs(x).max(axis=(0, 2, 3)) / 127
    q = quantize(x, scale, 8)
    back = dequantize(q, scale)
    assert np.all(np.abs(back - x) <= scale[None, :, None, None] / 2 + 1e-12)
    assert snr_db(x, back) > 35
    assert snr_db([1.0, 1.0], [1.1, 0.9]) == pytest.approx(20.0)
    assert snr_db([1.0, 2.0], [1.0, 2.0]) == math.inf


def test_auto_pads():
    assert auto_pads("VALID", (7, 7), 3, 1) == (0, 0, 0, 0)
    assert auto_pads("SAME_UPPER", (224, 224), (3, 3), (2, 2)) == (0, 0, 1, 1)
    assert auto_pads("SAME_LOWER", (224, 224), (3, 3), (2, 2)) == (1, 1, 0, 0)
    assert auto_pads("SAME_UPPER", (5, 6), (3, 4), (1, 1)) == (1, 1, 1, 2)
    with pytest.raises(ValueError, match=r"^auto_pad must be one of VALID, SAME_UPPER, "
                                         r"SAME_LOWER, not 'SAME'$"):
        auto_pads("SAME", (7, 7), 3, 1)


# Validation messages --------------------------------------------------------------------

X = np.zeros((1, 4, 6, 6), dtype=np.int64)
W = np.zeros((4, 2, 3, 3), dtype=np.int64)


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: conv2d(X, W, groups=3), ValueError,
     r"^groups must divide the 4 input channels of x, not 3$"),
    (lambda: conv2d(X, W, groups=1), ValueError,
     (r"^w must have C // groups = 4 input channels per group \(w.shape\[1\]\) for C=4, "
     r"groups=1, not 2$")),
    (lambda: conv2d(X, np.zeros((3, 1, 3, 3), dtype=int), groups=4), ValueError,
     r"^groups must divide the 3 output channels of w, not 4$"),
    (lambda: conv2d(X, W, groups=0), ValueError, r"^groups must be at least 1, not 0$"),
    (lambda: conv2d(X, W, groups=2.0), TypeError, r"^groups must be an integer, not 2.0$"),
    (lambda: conv2d(X, W, groups=2, stride=0), ValueError, r"^stride must be positive, not 0$"),
    (lambda: conv2d(X, W, groups=2, stride=(1, -2)), ValueError,
     r"^stride must be positive, not \(1, -2\)$"),
    (lambda: conv2d(X, W, groups=2, stride=(1, 1, 1)), TypeError,
     r"^stride must be an integer or a pair of integers, not \(1, 1, 1\)$"),
    (lambda: conv2d(X, W, groups=2, pads=(1, 1)), ValueError,
     r"^pads must have 4 entries \(top, left, bottom, right\), not \(1, 1\)$"),
    (lambda: conv2d(X, W, groups=2, pads="SAME"), TypeError,
     (r"^pads must be a sequence of 4 integers \(top, left, bottom, right\) \(resolve "
     r"auto_pad modes with auto_pads first\), not 'SAME'$")),
    (lambda: conv2d(X, W, groups=2, pads=(0, -1, 0, 0)), ValueError,
     r"^pads must be non-negative, not \(0, -1, 0, 0\)$"),
    (lambda: conv2d(X, W, groups=2, bias=[1, 2]), ValueError,
     r"^bias must have shape \(4,\), one entry per output channel, not \(2,\)$"),
    (lambda: conv2d(X.astype(float), W, groups=2), TypeError,
     r"^x must be an integer array, not dtype\('float64'\)$"),
    (lambda: conv2d(X[0], W, groups=2), ValueError,
     r"^x must be a 4-D array \(N, C, H, W\), not shape \(4, 6, 6\)$"),
    (lambda: conv2d(X, np.zeros((4, 2, 9, 9), dtype=int), groups=2), ValueError,
     (r"^pads must make the padded input at least the kernel size \(9x9\) for x of 6x6, "
     r"not \(0, 0, 0, 0\)$")),
    (lambda: conv1d(X[:, :, 0], W[:, :, 0], pads=(1, 1, 1, 1), groups=2), ValueError,
     r"^pads must have 2 entries \(left, right\), not \(1, 1, 1, 1\)$"),
    (lambda: conv1d(X[:, :, 0], W[:, :, 0], stride=0, groups=2), ValueError,
     r"^stride must be at least 1, not 0$"),
    (lambda: fully_connected(np.zeros((2, 5), dtype=int), np.zeros((3, 4), dtype=int)),
     ValueError, r"^w must have K = 5 columns to match x, not 4$"),
    (lambda: round_shift(5, -1), ValueError, r"^s must be non-negative, not -1$"),
    (lambda: round_shift(5, 63), ValueError, r"^s must be at most 62, not 63$"),
    (lambda: requantize([[1, 2]], -1, 0, -128, 127), ValueError,
     r"^m must be an unsigned \(non-negative\) multiplier, not -1$"),
    (lambda: requantize([[1, 2]], [1, 2, 3], 0, -128, 127), ValueError,
     r"^m must have one entry per channel \(2 along axis 1\), not 3$"),
    (lambda: requantize([[1, 2]], 1, [[0, 1]], -128, 127), ValueError,
     r"^s must be a scalar or a 1-D per-channel array, not shape \(1, 2\)$"),
    (lambda: requantize([1, 2], [1, 1], 0, -128, 127, axis=1), ValueError,
     r"^axis must index a dimension of a 1-D tensor, not 1$"),
    (lambda: requantize([1, 2], 1, 0, 5, 4), ValueError, r"^lo must not exceed hi \(4\), not 5$"),
    (lambda: requantize([1, 2], 1.5, 0, -128, 127), TypeError,
     r"^m must be an integer array, not dtype\('float64'\)$"),
    (lambda: max_pool2d(X, 3, 2, pads=(3, 0, 0, 0)), ValueError,
     (r"^pads must be smaller than the kernel \(3x3\) so that no window lies entirely in "
     r"padding, not \(3, 0, 0, 0\)$")),
    (lambda: sum_pool2d(X, 0, 1), ValueError, r"^kernel must be positive, not 0$"),
    (lambda: max_pool2d(X, 7, 1), ValueError,
     r"^kernel must fit in the padded 6x6 input, not 7$"),
    (lambda: add(X, X[:, :2], 1, 1, 0, -128, 127), ValueError,
     r"^b must have the shape of a \(1, 4, 6, 6\), not \(1, 2, 6, 6\)$"),
    (lambda: concat([X, X[:, :, :3]], [1, 1], 0, -128, 127), ValueError,
     (r"^xs\[1\] must match xs\[0\] \(1, 4, 6, 6\) except along axis 1, not shape "
     r"\(1, 4, 3, 6\)$")),
    (lambda: concat([X, X], [1], 0, -128, 127), ValueError,
     r"^ms must be a sequence of 2 multipliers, one per input, not \[1\]$"),
    (lambda: concat([X, X], [1, -2], 0, -128, 127), ValueError,
     r"^ms\[1\] must be an unsigned \(non-negative\) multiplier, not -2$"),
    (lambda: concat([], [], 0, -128, 127), TypeError,
     r"^xs must be a non-empty list or tuple of arrays, not \[\]$"),
    (lambda: qrange(1), ValueError, r"^bits must be between 2 and 63, not 1$"),
    (lambda: qrange(8.0), TypeError, r"^bits must be an integer, not 8.0$"),
    (lambda: quantize([1.0], 0.0, 8), ValueError, r"^scale must be positive and finite, not 0.0$"),
    (lambda: quantize([np.nan], 1.0, 8), ValueError,
     r"^x_float must be finite, not an array containing NaN or inf$"),
    (lambda: snr_db([1.0, 2.0], [1.0]), ValueError,
     r"^test must have the shape of reference \(2,\), not \(1,\)$"),
    (lambda: fixed_point_multiplier(70000.0, mult_bits=16), ValueError,
     r"^real must be below 2\*\*mult_bits \(65536\) to fit the multiplier, not 70000.0$"),
    (lambda: fixed_point_multiplier(-1.0), ValueError,
     r"^real must be positive and finite, not -1.0$"),
])
def test_validation_messages(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_public_api_is_complete():
    for name in ("qrange", "round_shift", "requantize", "conv2d", "conv1d", "fully_connected",
                 "max_pool2d", "sum_pool2d", "avg_pool2d", "global_avg_pool", "add", "concat",
                 "quantize", "dequantize", "snr_db"):
        assert name in golden.__all__ and callable(getattr(golden, name))


def test_accumulator_range_is_reached_and_never_exceeded():
    rng = np.random.default_rng(61)
    w = rng.integers(-8, 8, size=(3, 1, 2, 2))
    bias = np.array([5, -7, 0])
    lo, hi = accumulator_range(w, bias, act_bits=3)
    # Brute force over every input of four 3-bit activations.
    grid = np.array(np.meshgrid(*[np.arange(-4, 4)] * 4, indexing="ij")).reshape(4, -1).T
    accs = grid @ w.reshape(3, 4).T + bias
    assert lo.tolist() == accs.min(axis=0).tolist()
    assert hi.tolist() == accs.max(axis=0).tolist()
    lo8, hi8 = accumulator_range(np.full((2, 3, 3, 3), -128), act_bits=8)
    assert lo8.tolist() == [-128 * 127 * 27] * 2 and hi8.tolist() == [128 * 128 * 27] * 2
    with pytest.raises(ValueError, match=r"^act_bits must be between 2 and 32, not 40$"):
        accumulator_range(w, act_bits=40)
