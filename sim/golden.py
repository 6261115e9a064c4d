"""Golden numerics: the one definition of every integer operation ConvForge computes.

The ISS executes programs with these functions and the RTL is checked against them
bit for bit, so each function here *is* the specification of its layer type.

Conventions
-----------
- Tensors are NCHW (``conv1d``: NCL). Integer inputs of any integer dtype (or nested
  Python ints) are accepted; every result is an ``int64`` numpy array.
- Quantization is signed, symmetric, zero point 0. A real value ``v`` is represented by
  ``q = quantize(v, scale, bits)``; ``v ~= q * scale``.
- Convolutions, fully connected layers and sum pooling return *accumulators*: exact
  integer sums, without requantization. Every layer output then goes through
  :func:`requantize`::

      y = clamp(round_shift(acc * m, s), lo, hi)
      round_shift(x, s) = (x + (1 << (s - 1))) >> s   for s > 0 (arithmetic shift)
      round_shift(x, 0) = x

  with ``m`` an unsigned multiplier and ``s`` a shift (per layer, or per output
  channel). Rounding is therefore half-up (towards +inf on exact ties). The activation
  lives only in ``lo`` / ``hi``: none is the full activation range, ReLU is ``lo = 0``,
  ReLU6 is ``hi = q(6)``.
- Residual add, average pooling and concat rescale with the same primitive.

Exactness
---------
Integer convolutions are computed with float64 BLAS matrix products when that is exact:
float64 represents every integer below ``2**53``, and if the sum of the absolute values of
all products of one output stays below that bound, so does every partial sum in whatever
order BLAS adds them, and the result is the exact integer. The bound is checked from the
operand ranges; otherwise the products are done in int64, and a layer whose accumulator
could exceed int64 is refused. Requantization falls back to Python integers when
``acc * m`` could overflow int64.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Integral

import numpy as np

from hw import isa
from hw.isa import qrange, window_out

__all__ = [
    "accumulator_range",
    "add",
    "auto_pads",
    "avg_pool2d",
    "avg_pool2d_counted",
    "concat",
    "conv1d",
    "conv2d",
    "dequantize",
    "fixed_point_multiplier",
    "fully_connected",
    "global_avg_pool",
    "max_pool2d",
    "mul_broadcast",
    "pool_divisors",
    "qrange",
    "quantize",
    "requantize",
    "round_shift",
    "shared_shift_multipliers",
    "snr_db",
    "sum_pool2d",
    "table_lookup",
    "window_counts",
]

#: Largest shift :func:`round_shift` accepts; ``1 << (s - 1)`` and the rounded sum stay
#: inside int64.
MAX_SHIFT = isa.MAX_SHIFT

# Below this every integer and every partial sum is exact in float64 (2**53, halved to
# absorb the rounding of the bound itself, which is computed in floating point).
_FLOAT64_EXACT = 2 ** 52
_INT64_SAFE = 2 ** 62


# Validation -----------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, (Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _int_array(name, value):
    """Return ``value`` as an int64 array, refusing floats, bools and out-of-range uint64."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:  # ragged nested sequences
            raise ValueError(f"{name} must be a rectangular integer array, not {value!r}") from exc
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and arr.size and all(_is_int(v) for v in arr.flat):
            try:
                return arr.astype(np.int64)
            except OverflowError as exc:
                raise ValueError(f"{name} must fit in int64, not {value!r}") from exc
        raise TypeError(f"{name} must be an integer array, not {arr.dtype!r}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() >= 2 ** 63:
        raise ValueError(f"{name} must fit in int64, not a uint64 array with max {arr.max()!r}")
    return arr.astype(np.int64, copy=False)


def _check_ndim(name, arr, ndim, layout):
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array {layout}, not shape {arr.shape!r}")


def _int_value(name, value, lo=None):
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value!r}")
    return int(value)


def _pair(name, value, lo):
    """An int or a pair of ints, each at least ``lo``; returns a tuple of 2 Python ints."""
    if _is_int(value):
        items = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        items = tuple(value)
    else:
        raise TypeError(f"{name} must be an integer or a pair of integers, not {value!r}")
    if any(v < lo for v in items):
        word = "positive" if lo == 1 else f"at least {lo}"
        raise ValueError(f"{name} must be {word}, not {value!r}")
    return int(items[0]), int(items[1])


def _pads(value, n, layout):
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value.tolist())
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise TypeError(
            f"pads must be a sequence of {n} integers {layout} (resolve auto_pad modes with "
            f"auto_pads first), not {value!r}")
    if len(value) != n:
        raise ValueError(f"pads must have {n} entries {layout}, not {value!r}")
    if not all(map(_is_int, value)):
        raise TypeError(f"pads must be a sequence of {n} integers {layout}, not {value!r}")
    if any(v < 0 for v in value):
        raise ValueError(f"pads must be non-negative, not {value!r}")
    return tuple(int(v) for v in value)


def _shift_array(s):
    arr = _int_array("s", s)
    if arr.size and arr.min() < 0:
        raise ValueError(f"s must be non-negative, not {s!r}")
    if arr.size and arr.max() > MAX_SHIFT:
        raise ValueError(f"s must be at most {MAX_SHIFT}, not {s!r}")
    return arr


def _mult_array(name, m):
    arr = _int_array(name, m)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be an unsigned (non-negative) multiplier, not {m!r}")
    return arr


def _clamp_bounds(lo, hi):
    lo = _int_value("lo", lo)
    hi = _int_value("hi", hi)
    if lo > hi:
        raise ValueError(f"lo must not exceed hi ({hi}), not {lo!r}")
    if lo < -2 ** 63 or hi >= 2 ** 63:
        raise ValueError(f"lo and hi must fit in int64, not {(lo, hi)!r}")
    return lo, hi


def _channel_param(name, arr, ref, axis):
    """Broadcast a scalar or per-channel 1-D parameter along ``axis`` of ``ref``."""
    if arr.ndim == 0:
        return arr
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D per-channel array, "
                         f"not shape {arr.shape!r}")
    if not _is_int(axis):
        raise TypeError(f"axis must be an integer, not {axis!r}")
    if not -ref.ndim <= axis < ref.ndim:
        raise ValueError(f"axis must index a dimension of a {ref.ndim}-D tensor, not {axis!r}")
    axis = axis % ref.ndim
    if arr.shape[0] != ref.shape[axis]:
        raise ValueError(f"{name} must have one entry per channel ({ref.shape[axis]} along "
                         f"axis {axis}), not {arr.shape[0]!r}")
    shape = [1] * ref.ndim
    shape[axis] = arr.shape[0]
    return arr.reshape(shape)


def _max_abs(arr):
    """Largest magnitude as a Python int (exact even for the int64 minimum)."""
    if arr.size == 0:
        return 0
    return max(-int(arr.min()), int(arr.max()))


# Rescaling ------------------------------------------------------------------------------

def _rescale(terms, s, lo, hi):
    """``clamp(round_shift(sum(a * m for a, m in terms), s), lo, hi)``, exactly.

    ``terms`` holds (value, multiplier) int64 arrays already broadcast-compatible; ``s``
    is a validated int64 shift array (broadcast-compatible too).
    """
    s_max = _max_abs(s)
    half = 1 << (s_max - 1) if s_max else 0
    bound = sum(_max_abs(a) * _max_abs(m) for a, m in terms) + half
    if bound < _INT64_SAFE:
        total = terms[0][0] * terms[0][1]
        for a, m in terms[1:]:
            total = total + a * m
        rounded = (total + _half(s)) >> s
    else:
        # Python integers: exact whatever the widths, only slower.
        total = terms[0][0].astype(object) * terms[0][1].astype(object)
        for a, m in terms[1:]:
            total = total + a.astype(object) * m.astype(object)
        so = s.astype(object)
        rounded = (total + _half(s).astype(object)) >> so
    if lo is None:
        return np.asarray(rounded).astype(np.int64)
    return np.asarray(np.minimum(np.maximum(rounded, lo), hi)).astype(np.int64)


def _half(s):
    """``1 << (s - 1)`` where ``s > 0``, else 0, elementwise."""
    return np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), np.int64(0))


def round_shift(x, s):
    """Arithmetic right shift by ``s`` with rounding half up.

    ``round_shift(x, s) = (x + (1 << (s - 1))) >> s`` for ``s > 0``, ``x`` for ``s = 0``;
    equal to ``floor(x / 2**s + 1/2)``, so ties round towards +inf for negative ``x`` too
    (``round_shift(-3, 1) == -1``).

    Parameters
    ----------
    x : array_like of int
    s : int or array_like of int
        Shift, 0 to 62, broadcast against ``x``.

    Returns
    -------
    numpy.ndarray of int64
    """
    x = _int_array("x", x)
    s = _shift_array(s)
    try:
        np.broadcast_shapes(x.shape, s.shape)
    except ValueError as exc:
        raise ValueError(f"s must broadcast against x {x.shape}, not shape {s.shape!r}") from exc
    return _rescale([(x, np.int64(1))], s, None, None)


def requantize(acc, m, s, lo, hi, axis=1):
    """Rescale accumulators to the output type: ``clamp(round_shift(acc * m, s), lo, hi)``.

    Parameters
    ----------
    acc : array_like of int
        Accumulators (any shape).
    m : int or 1-D array_like of int
        Unsigned multiplier, per layer (scalar) or per channel along ``axis``.
    s : int or 1-D array_like of int
        Shift 0 to 62, per layer or per channel along ``axis``.
    lo, hi : int
        Saturation bounds, ``lo <= hi``; they express the activation (see module doc).
    axis : int
        Channel axis for per-channel ``m`` / ``s`` (ignored when both are scalars).

    Returns
    -------
    numpy.ndarray of int64
        Same shape as ``acc``.
    """
    acc = _int_array("acc", acc)
    m = _channel_param("m", _mult_array("m", m), acc, axis)
    s = _channel_param("s", _shift_array(s), acc, axis)
    lo, hi = _clamp_bounds(lo, hi)
    return _rescale([(acc, m)], s, lo, hi)


def fixed_point_multiplier(real, mult_bits=16, max_shift=MAX_SHIFT):
    """Approximate positive real scale factors by ``m / 2**s`` for :func:`requantize`.

    ``m`` is the most precise unsigned multiplier below ``2**mult_bits``; scales too small
    for ``max_shift`` lose precision (down to ``m = 0``).

    Parameters
    ----------
    real : float or array_like of float
        Positive, finite scale factors (e.g. ``s_in * s_w / s_out``).
    mult_bits : int
        Width of the unsigned multiplier, 1 to 32.
    max_shift : int
        Largest shift the hardware accepts, 0 to 62.

    Returns
    -------
    (m, s) : tuple of int or of int64 arrays
        Python ints for a scalar ``real``, arrays of its shape otherwise.
    """
    mult_bits = _int_value("mult_bits", mult_bits, 1)
    if mult_bits > 32:
        raise ValueError(f"mult_bits must be at most 32, not {mult_bits!r}")
    max_shift = _int_value("max_shift", max_shift, 0)
    if max_shift > MAX_SHIFT:
        raise ValueError(f"max_shift must be at most {MAX_SHIFT}, not {max_shift!r}")
    arr = np.asarray(real, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"real must be positive and finite, not {real!r}")
    ms, ss = [], []
    for r in arr.flat:
        # Exact rational arithmetic: rounding decisions must not depend on float error.
        frac = Fraction(float(r))
        e = math.floor(math.log2(r))
        s = mult_bits - 1 - e
        if frac * Fraction(2) ** s >= 2 ** mult_bits:
            s -= 1
        elif frac * Fraction(2) ** (s + 1) < 2 ** mult_bits:
            s += 1
        s = min(s, max_shift)
        if s < 0:
            raise ValueError(f"real must be below 2**mult_bits ({2 ** mult_bits}) to fit the "
                             f"multiplier, not {float(r)!r}")
        m = math.floor(frac * Fraction(2) ** s + Fraction(1, 2))
        if m >= 2 ** mult_bits:  # rounded up past the top: one bit less precision
            s -= 1
            if s < 0:
                raise ValueError(f"real must be below 2**mult_bits ({2 ** mult_bits}) to fit "
                                 f"the multiplier, not {float(r)!r}")
            m = math.floor(frac * Fraction(2) ** s + Fraction(1, 2))
        ms.append(m)
        ss.append(s)
    if arr.ndim == 0:
        return ms[0], ss[0]
    return (np.array(ms, dtype=np.int64).reshape(arr.shape),
            np.array(ss, dtype=np.int64).reshape(arr.shape))


def shared_shift_multipliers(reals, mult_bits=16, max_shift=MAX_SHIFT):
    """Multipliers ``m[i] / 2**s ~ reals[i]`` with one common shift ``s``.

    For :func:`add` and :func:`concat`, whose inputs share the shift. The largest scale
    gets the full ``mult_bits`` of precision; the others as many bits as it leaves them.

    Parameters
    ----------
    reals : sequence of float
        Positive, finite scale factors (e.g. ``s_a / s_out``, ``s_b / s_out``).
    mult_bits, max_shift : int
        As :func:`fixed_point_multiplier`.

    Returns
    -------
    (m, s) : (list of int, int)
    """
    arr = np.asarray(reals, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"reals must be a non-empty 1-D sequence, not {reals!r}")
    _, s = fixed_point_multiplier(float(arr.max()), mult_bits, max_shift)
    if not np.all(arr > 0):  # the largest was checked; a smaller one may still be <= 0
        raise ValueError(f"reals must be positive and finite, not {reals!r}")
    ms = [math.floor(Fraction(float(r)) * Fraction(2) ** s + Fraction(1, 2)) for r in arr]
    return ms, s


# Convolution ----------------------------------------------------------------------------

def conv2d(x, w, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """2-D convolution (cross-correlation, as ONNX ``Conv``) returning exact accumulators.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    w : array_like of int, shape (M, C // groups, KH, KW)
    bias : array_like of int, shape (M,), optional
        Added to the accumulators.
    stride : int or (int, int)
        (vertical, horizontal), positive.
    pads : (int, int, int, int)
        Zero padding (top, left, bottom, right), non-negative.
    groups : int
        Channel groups: 1 is a standard convolution, ``C`` (with ``M = k * C``) a
        depthwise one (with channel multiplier ``k``).

    Returns
    -------
    numpy.ndarray of int64, shape (N, M, OH, OW)
        ``OH = (H + top + bottom - KH) // stride_h + 1``, likewise ``OW``.
    """
    x = _int_array("x", x)
    w = _int_array("w", w)
    _check_ndim("x", x, 4, "(N, C, H, W)")
    _check_ndim("w", w, 4, "(M, C // groups, KH, KW)")
    sh, sw = _pair("stride", stride, 1)
    pt, pl, pb, pr = _pads(pads, 4, "(top, left, bottom, right)")
    groups = _int_value("groups", groups, 1)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    if c % groups:
        raise ValueError(f"groups must divide the {c} input channels of x, not {groups!r}")
    if m % groups:
        raise ValueError(f"groups must divide the {m} output channels of w, not {groups!r}")
    if cg != c // groups:
        raise ValueError(f"w must have C // groups = {c // groups} input channels per group "
                         f"(w.shape[1]) for C={c}, groups={groups}, not {cg!r}")
    if kh < 1 or kw < 1 or m < 1:
        raise ValueError(f"w must have at least one output channel and kernel tap, "
                         f"not shape {w.shape!r}")
    oh = window_out(h, kh, sh, pt, pb)
    ow = window_out(wd, kw, sw, pl, pr)
    if oh < 1 or ow < 1:
        raise ValueError(f"pads must make the padded input at least the kernel size "
                         f"({kh}x{kw}) for x of {h}x{wd}, not {pads!r}")
    b = None
    if bias is not None:
        b = _int_array("bias", bias)
        if b.shape != (m,):
            raise ValueError(f"bias must have shape ({m},), one entry per output channel, "
                             f"not {b.shape!r}")

    bound = _max_abs(x) * _max_abs_row_sum(w.reshape(m, -1)) + (_max_abs(b) if b is not None
                                                                   else 0)
    if bound >= _INT64_SAFE:
        raise ValueError(f"x and w must keep accumulators inside int64, not a worst case "
                         f"of {bound!r}")
    mg = m // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any((pt, pl, pb, pr)) else x
    xg = xp.reshape(n, groups, cg, xp.shape[2], xp.shape[3])
    wg = w.reshape(groups, mg, cg, kh, kw)

    def window(i, j):
        return xg[..., i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]

    if cg == 1:
        # Depthwise: one input channel per group, so a matrix product buys nothing;
        # per-tap int64 multiply-accumulate is exact and streams memory once per tap.
        acc = np.zeros((n, groups, mg, oh, ow), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                acc += wg[None, :, :, 0, i, j, None, None] * window(i, j)
    else:
        dtype = np.float64 if bound < _FLOAT64_EXACT else np.int64
        if kh == kw == 1 and sh == sw == 1:
            cols = xg.reshape(n, groups, cg, oh * ow).astype(dtype)
        else:
            cols = np.empty((n, groups, cg, kh, kw, oh, ow), dtype=dtype)
            for i in range(kh):
                for j in range(kw):
                    cols[:, :, :, i, j] = window(i, j)
            cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
        # Float results are exact integers here, so the cast truncates nothing.
        acc = np.matmul(wg.reshape(groups, mg, cg * kh * kw).astype(dtype), cols)
        acc = acc.astype(np.int64)
    acc = acc.reshape(n, m, oh, ow)
    if b is not None:
        acc += b[None, :, None, None]
    return acc


def _max_abs_row_sum(w2):
    """Largest per-row sum of magnitudes, as a Python int (rounded up if huge)."""
    if w2.size == 0:
        return 0
    if _max_abs(w2) * w2.shape[1] < _INT64_SAFE:
        return int(np.abs(w2).sum(axis=1).max())
    return math.ceil(float(np.abs(w2.astype(np.float64)).sum(axis=1).max()) * (1 + 1e-12))


def accumulator_range(w, bias=None, act_bits=8):
    """Exact extreme accumulator values of each output channel over all inputs.

    For any activations in ``qrange(act_bits)`` (padding zeros included), every
    accumulator of output channel ``m`` of :func:`conv2d`, :func:`conv1d` or
    :func:`fully_connected` lies in ``[lo[m], hi[m]]``, and both ends are reached by some
    input. An accumulator of ``b`` bits cannot overflow if ``lo >= -2**(b-1)`` and
    ``hi < 2**(b-1)``.

    Parameters
    ----------
    w : array_like of int, shape (M, ...)
        Weights, output channel first (any layout of the remaining axes).
    bias : array_like of int, shape (M,), optional
    act_bits : int
        Signed activation width, 2 to 32.

    Returns
    -------
    (lo, hi) : tuple of numpy.ndarray of int64, shape (M,)
    """
    w = _int_array("w", w)
    if w.ndim < 1 or w.shape[0] < 1:
        raise ValueError(f"w must have an output channel axis first, not shape {w.shape!r}")
    act_bits = _int_value("act_bits", act_bits)
    if not 2 <= act_bits <= 32:
        raise ValueError(f"act_bits must be between 2 and 32, not {act_bits!r}")
    xlo, xhi = qrange(act_bits)
    w2 = w.reshape(w.shape[0], -1)
    b = np.zeros(w.shape[0], dtype=np.int64)
    if bias is not None:
        b = _int_array("bias", bias)
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), one entry per output "
                             f"channel, not {b.shape!r}")
    if _max_abs(w2) * w2.shape[1] * (1 << (act_bits - 1)) + _max_abs(b) >= _INT64_SAFE:
        raise ValueError(f"w must keep accumulators inside int64, not max|w|={_max_abs(w2)!r}")
    # Each product is extreme independently: positive weights meet the top of the
    # activation range, negative ones the bottom (and the other way round).
    hi = np.where(w2 > 0, w2 * xhi, w2 * xlo).sum(axis=1) + b
    lo = np.where(w2 > 0, w2 * xlo, w2 * xhi).sum(axis=1) + b
    return lo, hi


def conv1d(x, w, bias=None, stride=1, pads=(0, 0), groups=1):
    """1-D convolution, the ``H = 1`` case of :func:`conv2d`.

    Parameters
    ----------
    x : array_like of int, shape (N, C, L)
    w : array_like of int, shape (M, C // groups, K)
    bias : array_like of int, shape (M,), optional
    stride : int
        Positive.
    pads : (int, int)
        Zero padding (left, right).
    groups : int

    Returns
    -------
    numpy.ndarray of int64, shape (N, M, OL)
    """
    x = _int_array("x", x)
    w = _int_array("w", w)
    _check_ndim("x", x, 3, "(N, C, L)")
    _check_ndim("w", w, 3, "(M, C // groups, K)")
    stride = _int_value("stride", stride, 1)
    left, right = _pads(pads, 2, "(left, right)")
    acc = conv2d(x[:, :, None, :], w[:, :, None, :], bias, stride=(1, stride),
                 pads=(0, left, 0, right), groups=groups)
    return acc[:, :, 0, :]


def fully_connected(x, w, bias=None):
    """Fully connected layer ``acc = x @ w.T + bias`` (ONNX ``Gemm`` with ``transB=1``).

    Parameters
    ----------
    x : array_like of int, shape (N, K)
    w : array_like of int, shape (M, K)
    bias : array_like of int, shape (M,), optional

    Returns
    -------
    numpy.ndarray of int64, shape (N, M)
    """
    x = _int_array("x", x)
    w = _int_array("w", w)
    _check_ndim("x", x, 2, "(N, K)")
    _check_ndim("w", w, 2, "(M, K)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have K = {x.shape[1]} columns to match x, "
                         f"not {w.shape[1]!r}")
    acc = conv2d(x[:, :, None, None], w[:, :, None, None], bias)
    return acc[:, :, 0, 0]


# Pooling --------------------------------------------------------------------------------

def _pool_geometry(x, kernel, stride, pads):
    x = _int_array("x", x)
    _check_ndim("x", x, 4, "(N, C, H, W)")
    kh, kw = _pair("kernel", kernel, 1)
    sh, sw = _pair("stride", stride, 1)
    pt, pl, pb, pr = _pads(pads, 4, "(top, left, bottom, right)")
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise ValueError(f"pads must be smaller than the kernel ({kh}x{kw}) so that no window "
                         f"lies entirely in padding, not {pads!r}")
    oh = window_out(x.shape[2], kh, sh, pt, pb)
    ow = window_out(x.shape[3], kw, sw, pl, pr)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel must fit in the padded {x.shape[2]}x{x.shape[3]} input, "
                         f"not {kernel!r}")
    return x, (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh, ow)


def _pool(x, kernel, stride, pads, fill, reduce):
    x, (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh, ow) = _pool_geometry(x, kernel, stride, pads)
    if reduce is np.add and _max_abs(x) * kh * kw >= _INT64_SAFE:
        raise ValueError(f"x must keep window sums inside int64, not max|x|={_max_abs(x)!r}")
    if any((pt, pl, pb, pr)):
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            out = tap.copy() if out is None else reduce(out, tap, out=out)
    return out


def max_pool2d(x, kernel, stride, pads=(0, 0, 0, 0)):
    """Max pooling (ONNX ``MaxPool``, floor output size).

    Padded positions never win (they act as -inf), as in ONNX; a window always holds at
    least one real element because pads must be smaller than the kernel.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    kernel, stride : int or (int, int)
    pads : (int, int, int, int)
        (top, left, bottom, right), each smaller than the kernel along its axis.

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, OH, OW)
    """
    return _pool(x, kernel, stride, pads, np.iinfo(np.int64).min, np.maximum)


def sum_pool2d(x, kernel, stride, pads=(0, 0, 0, 0)):
    """Window sums (the accumulator of average pooling); padded positions count as 0.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    kernel, stride : int or (int, int)
    pads : (int, int, int, int)
        (top, left, bottom, right), each smaller than the kernel along its axis.

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, OH, OW)
    """
    return _pool(x, kernel, stride, pads, 0, np.add)


def avg_pool2d(x, kernel, stride, m, s, lo, hi, pads=(0, 0, 0, 0)):
    """Average pooling: ``requantize(sum_pool2d(x, ...), m, s, lo, hi)``.

    ``m / 2**s`` approximates ``1 / (KH * KW)`` (times any input/output scale ratio);
    padded positions count as zeros in the divisor too (ONNX ``count_include_pad=1``).

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    kernel, stride : int or (int, int)
    m, s : int or 1-D array_like of int
        Per layer or per channel (axis 1), see :func:`requantize`.
    lo, hi : int
    pads : (int, int, int, int)

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, OH, OW)
    """
    return requantize(sum_pool2d(x, kernel, stride, pads), m, s, lo, hi, axis=1)


def window_counts(size, kernel, stride, pads, count_pads):
    """Divisor of each window along one axis: how many of its positions are counted.

    Window ``i`` covers padded positions ``[i * stride - pad_before, ... + kernel)`` of an
    input of ``size``; the counted positions are those in ``[-count_before, size +
    count_after)``: the real input plus the part of the padding that counts (ONNX
    ``AveragePool``: none with ``count_include_pad=0``, the explicit pads with
    ``count_include_pad=1``; the extra end padding of ``ceil_mode`` never counts).

    Parameters
    ----------
    size, kernel, stride : int
    pads : (int, int)
        ``(before, after)`` padding of the window geometry.
    count_pads : (int, int)
        ``(before, after)`` padding counted in the divisor, at most ``pads``.

    Returns
    -------
    numpy.ndarray of int64, shape (out,)
        ``out = window_out(size, kernel, stride, *pads)``; every entry at least 1.
    """
    pb, pe = (int(v) for v in pads)
    cb, ce = (int(v) for v in count_pads)
    if not (0 <= cb <= pb and 0 <= ce <= pe):
        raise ValueError(f"count_pads {count_pads!r} must lie within pads {pads!r}")
    out = window_out(size, kernel, stride, pb, pe)
    start = np.arange(out, dtype=np.int64) * stride - pb
    counts = np.minimum(start + kernel, size + ce) - np.maximum(start, -cb)
    if out < 1 or counts.min() < 1:
        raise ValueError(f"every window of kernel {kernel}, stride {stride}, pads {pads!r} "
                         f"over {size} positions must hold a counted position")
    return counts


def pool_divisors(shape, kernel, stride, pads, count_pads):
    """Divisor of every output of an average pool, ``rows(i) * cols(j)``
    (:func:`window_counts` along each axis).

    Parameters
    ----------
    shape : (int, int)
        Input ``(H, W)``.
    kernel, stride : int or (int, int)
    pads, count_pads : (int, int, int, int)
        ``(top, left, bottom, right)`` window geometry and its counted part.

    Returns
    -------
    numpy.ndarray of int64, shape (OH, OW)
    """
    (kh, kw), (sh, sw) = _pair("kernel", kernel, 1), _pair("stride", stride, 1)
    pt, pl, pb, pr = _pads(pads, 4, "(top, left, bottom, right)")
    ct, cl, cb, cr = _pads(count_pads, 4, "(top, left, bottom, right)")
    rows = window_counts(int(shape[0]), kh, sh, (pt, pb), (ct, cb))
    cols = window_counts(int(shape[1]), kw, sw, (pl, pr), (cl, cr))
    return rows[:, None] * cols[None, :]


def avg_pool2d_counted(x, kernel, stride, pads, count_pads, div_m, div_s, lo, hi):
    """Average pooling with a per-position divisor (ONNX ``count_include_pad=0``,
    ``ceil_mode=1``).

    The window sum of output ``(i, j)`` (padding adds 0) is requantized with the
    multiplier and shift of its divisor ``n = rows(i) * cols(j)``
    (:func:`window_counts` along each axis)::

        y = clamp(round_shift(sum * div_m[n], div_s[n]), lo, hi)

    with ``div_m[n] / 2**div_s[n] ~ 1 / n`` (times the input/output scale ratio); the
    rounding is :func:`requantize`'s (half up). Outputs of equal divisor form rectangles
    (runs of equal row count x runs of equal column count: interior, border rows and
    columns, corners), each an ordinary average pool with one multiplier.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    kernel, stride : int or (int, int)
    pads : (int, int, int, int)
        ``(top, left, bottom, right)`` window geometry.
    count_pads : (int, int, int, int)
        The part of ``pads`` counted in the divisor.
    div_m, div_s : 1-D array_like of int
        Multiplier and shift per divisor, indexed by the divisor (``KH * KW + 1``
        entries; the unused ones are ignored).
    lo, hi : int

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, OH, OW)
    """
    x = _int_array("x", x)
    acc = sum_pool2d(x, kernel, stride, pads)
    kh, kw = _pair("kernel", kernel, 1)
    counts = pool_divisors(x.shape[2:], kernel, stride, pads, count_pads)
    div_m = _mult_array("div_m", div_m).reshape(-1)
    div_s = _shift_array(div_s).reshape(-1)
    if div_m.shape != (kh * kw + 1,) or div_s.shape != div_m.shape:
        raise ValueError(f"div_m and div_s must have KH * KW + 1 = {kh * kw + 1} entries, "
                         f"not {div_m.shape[0]} and {div_s.shape[0]}")
    lo, hi = _clamp_bounds(lo, hi)
    return _rescale([(acc, div_m[counts])], div_s[counts], lo, hi)


def global_avg_pool(x, m, s, lo, hi):
    """Global average pooling: requantized sum over H and W, ``m / 2**s ~ 1 / (H * W)``.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    m, s : int or 1-D array_like of int
        Per layer or per channel (axis 1).
    lo, hi : int

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, 1, 1)
    """
    x = _int_array("x", x)
    _check_ndim("x", x, 4, "(N, C, H, W)")
    if _max_abs(x) * x.shape[2] * x.shape[3] >= _INT64_SAFE:
        raise ValueError(f"x must keep window sums inside int64, not max|x|={_max_abs(x)!r}")
    return requantize(x.sum(axis=(2, 3), keepdims=True), m, s, lo, hi, axis=1)


# Element-wise ---------------------------------------------------------------------------

def add(a, b, ma, mb, s, lo, hi, axis=1):
    """Residual add with rescaling: ``clamp(round_shift(a * ma + b * mb, s), lo, hi)``.

    The sum is formed before the single rounding, so the result is the correctly rounded
    (half up) value of ``(a * ma + b * mb) / 2**s``.

    Parameters
    ----------
    a, b : array_like of int
        Same shape (no broadcasting).
    ma, mb : int or 1-D array_like of int
        Unsigned multipliers, per layer or per channel along ``axis``.
    s : int or 1-D array_like of int
        Shared shift, 0 to 62.
    lo, hi : int
    axis : int
        Channel axis for per-channel parameters.

    Returns
    -------
    numpy.ndarray of int64
    """
    a = _int_array("a", a)
    b = _int_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"b must have the shape of a {a.shape}, not {b.shape!r}")
    ma = _channel_param("ma", _mult_array("ma", ma), a, axis)
    mb = _channel_param("mb", _mult_array("mb", mb), a, axis)
    s = _channel_param("s", _shift_array(s), a, axis)
    lo, hi = _clamp_bounds(lo, hi)
    return _rescale([(a, ma), (b, mb)], s, lo, hi)


def mul_broadcast(a, b, group, m, s, lo, hi):
    """Product with a broadcast operand: ``clamp(round_shift(a[i] * b[i // group] * m, s),
    lo, hi)`` over the flattened ``a``.

    With ``a`` a ``(C, H, W)`` feature map and ``group = H * W``, ``b`` holds one value
    per channel (the gate of a squeeze-and-excitation block).

    Parameters
    ----------
    a : array_like of int
        Any shape; read in C order.
    b : 1-D array_like of int
        At least ``ceil(a.size / group)`` values.
    group : int
        Elements of ``a`` that share one element of ``b`` (at least 1).
    m : int
        Unsigned multiplier.
    s : int
        Shift, 0 to 62.
    lo, hi : int

    Returns
    -------
    numpy.ndarray of int64
        Shape of ``a``.
    """
    a = _int_array("a", a)
    b = _int_array("b", b).reshape(-1)
    group = _int_value("group", group, 1)
    if b.size * group < a.size:
        raise ValueError(f"b must hold at least ceil({a.size} / {group}) elements, "
                         f"not {b.size}")
    m = _mult_array("m", m)
    s = _shift_array(s)
    lo, hi = _clamp_bounds(lo, hi)
    flat = a.reshape(-1)
    gate = b[np.arange(flat.size) // group]
    return _rescale([(flat * gate, m)], s, lo, hi).reshape(a.shape)


def table_lookup(y, table):
    """Activation table: each ``y`` replaced by ``table[y mod len(table)]``.

    ``table`` holds ``2**bits`` signed entries indexed by the two's-complement bit pattern
    of a ``bits``-bit ``y`` (entry 0 for ``y = 0``, the last for ``y = -1``), as the
    element-wise unit's TBUF.

    Parameters
    ----------
    y : array_like of int
        Values of ``bits`` bits (``-2**(bits-1) <= y < 2**(bits-1)``).
    table : 1-D array_like of int
        ``2**bits`` entries.

    Returns
    -------
    numpy.ndarray of int64
    """
    y = _int_array("y", y)
    table = _int_array("table", table).reshape(-1)
    n = table.size
    if n < 2 or n & (n - 1):
        raise ValueError(f"table must hold a power of two (>= 2) entries, not {n}")
    if y.size and (int(y.min()) < -(n // 2) or int(y.max()) >= n // 2):
        raise ValueError(f"y must lie in [{-(n // 2)}, {n // 2 - 1}] for a {n}-entry table")
    return table[y & (n - 1)]


def concat(xs, ms, s, lo, hi, axis=1):
    """Concatenate along ``axis`` after rescaling each input to the common output scale.

    Input ``i`` becomes ``clamp(round_shift(xs[i] * ms[i], s), lo, hi)``.

    Parameters
    ----------
    xs : sequence of array_like of int
        At least one tensor; shapes equal except along ``axis``.
    ms : sequence of int
        One unsigned multiplier per input.
    s : int or sequence of int
        Shift shared by all inputs, or one per input.
    lo, hi : int
    axis : int

    Returns
    -------
    numpy.ndarray of int64
    """
    if isinstance(xs, np.ndarray) or not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"xs must be a non-empty list or tuple of arrays, not {xs!r}")
    xs = [_int_array(f"xs[{i}]", x) for i, x in enumerate(xs)]
    if isinstance(ms, np.ndarray) and ms.ndim == 1:
        ms = ms.tolist()
    if isinstance(s, np.ndarray) and s.ndim == 1:
        s = s.tolist()
    if not isinstance(ms, (list, tuple)) or len(ms) != len(xs):
        raise ValueError(f"ms must be a sequence of {len(xs)} multipliers, one per input, "
                         f"not {ms!r}")
    if isinstance(s, (list, tuple)):
        if len(s) != len(xs):
            raise ValueError(f"s must be one shift or {len(xs)} shifts, one per input, "
                             f"not {s!r}")
        shifts = list(s)
    else:
        shifts = [s] * len(xs)
    if not _is_int(axis):
        raise TypeError(f"axis must be an integer, not {axis!r}")
    ref = xs[0]
    if not -ref.ndim <= axis < ref.ndim:
        raise ValueError(f"axis must index a dimension of a {ref.ndim}-D tensor, not {axis!r}")
    ax = axis % ref.ndim
    for i, x in enumerate(xs[1:], 1):
        if x.ndim != ref.ndim or any(d != e for k, (d, e) in enumerate(zip(x.shape, ref.shape))
                                     if k != ax):
            raise ValueError(f"xs[{i}] must match xs[0] {ref.shape} except along axis {ax}, "
                             f"not shape {x.shape!r}")
    lo, hi = _clamp_bounds(lo, hi)
    parts = []
    for i, (x, mi, si) in enumerate(zip(xs, ms, shifts)):
        if not _is_int(mi):
            raise TypeError(f"ms[{i}] must be an integer, not {mi!r}")
        if mi < 0:
            raise ValueError(f"ms[{i}] must be an unsigned (non-negative) multiplier, "
                             f"not {mi!r}")
        if not _is_int(si):
            raise TypeError(f"s must be an integer or a sequence of integers, not {s!r}")
        parts.append(_rescale([(x, np.int64(mi))], _shift_array(si), lo, hi))
    return np.concatenate(parts, axis=ax)


# Float <-> integer ----------------------------------------------------------------------

def quantize(x_float, scale, bits, axis=1):
    """Quantize real values: ``clamp(round_half_even(x / scale), qrange(bits))``.

    Rounding is half to even, as ONNX ``QuantizeLinear`` (and numpy ``rint``), so that
    offline weight quantization matches the ONNX reference. (The accelerator's own
    rounding, in :func:`round_shift`, is half up.)

    Parameters
    ----------
    x_float : array_like of float
        Finite values.
    scale : float or 1-D array_like of float
        Positive step size, per tensor or per channel along ``axis``.
    bits : int
        Signed width, 2 to 63.
    axis : int
        Channel axis for a per-channel ``scale``.

    Returns
    -------
    numpy.ndarray of int64
    """
    lo, hi = qrange(bits)
    x = np.asarray(x_float, dtype=np.float64)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("x_float must be finite, not an array containing NaN or inf")
    sc = _scale_array(scale, x, axis)
    return np.clip(np.rint(x / sc), lo, hi).astype(np.int64)


def dequantize(q, scale, axis=1):
    """Real values of quantized integers: ``q * scale``.

    Parameters
    ----------
    q : array_like of int
    scale : float or 1-D array_like of float
        Positive, per tensor or per channel along ``axis``.
    axis : int

    Returns
    -------
    numpy.ndarray of float64
    """
    q = _int_array("q", q)
    return q.astype(np.float64) * _scale_array(scale, q, axis)


def _scale_array(scale, ref, axis):
    try:
        sc = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"scale must be a positive float or 1-D array, not {scale!r}") from exc
    if sc.size == 0 or not (np.all(np.isfinite(sc)) and np.all(sc > 0)):
        raise ValueError(f"scale must be positive and finite, not {scale!r}")
    return _channel_param("scale", sc, ref, axis)


def snr_db(reference, test):
    """Signal-to-noise ratio of ``test`` against ``reference``, in decibels.

    ``10 * log10(sum(reference**2) / sum((reference - test)**2))``; ``inf`` when the
    two are identical.

    Parameters
    ----------
    reference, test : array_like of float
        Same shape.

    Returns
    -------
    float
    """
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"test must have the shape of reference {ref.shape}, "
                         f"not {tst.shape!r}")
    noise = float(np.sum((ref - tst) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def auto_pads(auto_pad, in_size, kernel, stride):
    """Explicit pads for an ONNX ``auto_pad`` mode.

    Parameters
    ----------
    auto_pad : str
        ``"VALID"``, ``"SAME_UPPER"`` (extra padding at the end, as TensorFlow's
        ``SAME``) or ``"SAME_LOWER"``. (``"NOTSET"`` means the node carries explicit pads.)
    in_size, kernel, stride : (int, int)
        Input (H, W), kernel (KH, KW), strides.

    Returns
    -------
    (top, left, bottom, right) : tuple of int
    """
    modes = ("VALID", "SAME_UPPER", "SAME_LOWER")
    if auto_pad not in modes:
        raise ValueError(f"auto_pad must be one of {', '.join(modes)}, not {auto_pad!r}")
    in_size = _pair("in_size", in_size, 1)
    kernel = _pair("kernel", kernel, 1)
    stride = _pair("stride", stride, 1)
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    begin, end = [], []
    for n, k, st in zip(in_size, kernel, stride):
        out = -(-n // st)
        total = max((out - 1) * st + k - n, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return (begin[0], begin[1], end[0], end[1])
