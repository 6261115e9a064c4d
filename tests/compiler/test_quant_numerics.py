"""Scale selection, multiplier decomposition, weight schemes and the overflow proof."""

import math

import numpy as np
import pytest

from compiler.errors import QuantizationError
from compiler.quant import (
    accumulator_bounds,
    check_bias,
    check_width,
    decompose_multiplier,
    decompose_multipliers,
    decompose_shared_shift,
    float_scale,
    frac_bits_for,
    pot_scale,
    project_to_levels,
    prove_accumulator,
    prove_sum,
    quantize_weights,
    tensor_range,
    weight_levels,
)
from hw import weight_codes


def _round_shift(x, s):
    return (x + (1 << (s - 1))) >> s if s > 0 else x


# Widths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(4, 17))
def test_check_width_accepts_4_to_16(bits):
    assert check_width("act_bits", bits) == bits


@pytest.mark.parametrize("bits", [0, 3, 17, 32])
def test_check_width_rejects_out_of_range(bits):
    with pytest.raises(QuantizationError,
                       match=rf"act_bits must be between 4 and 16 bits; .*, not {bits}$"):
        check_width("act_bits", bits)


def test_check_width_rejects_non_integer():
    with pytest.raises(TypeError, match=r"weight_bits must be an integer, not 8.0$"):
        check_width("weight_bits", 8.0)


# Scales ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_frac_bits_covers_range_as_tightly_as_possible(bits):
    rng = np.random.default_rng(bits)
    qm = (1 << (bits - 1)) - 1
    for max_abs in np.concatenate([rng.uniform(1e-4, 1e4, 200), [1.0, 2.0, 0.5, qm, qm + 1]]):
        f = frac_bits_for(max_abs, bits)
        assert max_abs * 2.0 ** f <= qm
        assert max_abs * 2.0 ** (f + 1) > qm
        assert pot_scale(max_abs, bits) == 2.0 ** -f


def test_frac_bits_of_zero_and_non_finite():
    assert frac_bits_for(0.0, 8) == 7
    with pytest.raises(QuantizationError, match="must be finite"):
        frac_bits_for(math.inf, 8)


def test_float_scale_maps_max_to_qmax():
    assert float_scale(2.54, 8) == pytest.approx(0.02)
    np.testing.assert_allclose(float_scale([1.27, 0.0], 8), [0.01, 1 / 127])


def test_tensor_range_max_abs_and_percentile():
    x = np.concatenate([np.linspace(-1, 1, 1001), [100.0]])
    assert tensor_range([x[:500], x[500:]]) == 100.0
    assert tensor_range(x, percentile=99.0) < 1.0
    with pytest.raises(QuantizationError, match="percentile"):
        tensor_range(x, percentile=0.0)


# Multipliers ----------------------------------------------------------------------------

@pytest.mark.parametrize("mult_bits,shift_bits", [(16, 6), (8, 5), (24, 6), (4, 4)])
def test_decompose_multiplier_is_accurate_and_fits(mult_bits, shift_bits):
    rng = np.random.default_rng(mult_bits)
    s_max = (1 << shift_bits) - 1
    for real in 10.0 ** rng.uniform(-3, 0.5, 300):
        m, s = decompose_multiplier(real, mult_bits, shift_bits)
        assert 0 < m < 1 << mult_bits and 0 <= s <= s_max
        # Relative error bounded by half an ulp of an mult_bits-bit mantissa,
        # unless the shift range clipped the mantissa.
        if mult_bits - 1 - math.floor(math.log2(real)) <= s_max:
            assert abs(m / 2 ** s - real) <= real * 2.0 ** -(mult_bits - 1)


def test_decompose_multiplier_strips_trailing_zeros():
    assert decompose_multiplier(0.75, 16, 6) == (3, 2)
    assert decompose_multiplier(2 ** -9, 16, 6) == (1, 9)
    assert decompose_multiplier(0.0, 16, 6) == (0, 0)


def test_decompose_multiplier_matches_real_rescale_on_integers():
    rng = np.random.default_rng(3)
    real = 0.0123456
    m, s = decompose_multiplier(real, 16, 6)
    acc = rng.integers(-(1 << 20), 1 << 20, 1000)
    got = np.array([_round_shift(int(a) * m, s) for a in acc])
    assert np.max(np.abs(got - acc * real)) <= 0.5 + np.max(np.abs(acc)) * abs(m / 2 ** s - real)


def test_decompose_multiplier_power_of_two_mode():
    assert decompose_multiplier(2 ** -7, 16, 6, power_of_two=True) == (1, 7)
    assert decompose_multiplier(1.0, 16, 6, power_of_two=True) == (1, 0)
    assert decompose_multiplier(4.0, 16, 6, power_of_two=True) == (4, 0)
    with pytest.raises(QuantizationError, match=r"conv1: .* not a power of two"):
        decompose_multiplier(0.3, 16, 6, power_of_two=True, where="conv1")
    with pytest.raises(QuantizationError, match=r"conv1: .*shift of 40 .* at most 31.*"
                                                r"widen shift_bits"):
        decompose_multiplier(2 ** -40, 16, 5, power_of_two=True, where="conv1")


def test_decompose_multiplier_errors_name_layer_and_fix():
    with pytest.raises(QuantizationError, match=r"fc: .*below the smallest .*2\*\*-15.*"
                                                r"widen shift_bits"):
        decompose_multiplier(1e-9, 8, 4, where="fc")
    with pytest.raises(QuantizationError, match=r"fc: .*mult_bits=4 allows at most 15"):
        decompose_multiplier(40.0, 4, 4, where="fc")
    with pytest.raises(QuantizationError, match="finite non-negative"):
        decompose_multiplier(-1.0, 16, 6)


def test_decompose_multipliers_per_channel():
    reals = np.array([0.5, 0.011, 0.25, 0.003])
    m, s = decompose_multipliers(reals, 16, 6)
    assert m.dtype == np.int64 and s.dtype == np.int64
    np.testing.assert_allclose(m / 2.0 ** s, reals, rtol=2 ** -15)


def test_decompose_shared_shift():
    ms, s = decompose_shared_shift([0.7, 0.013], 16, 6)
    assert max(ms) < 1 << 16
    np.testing.assert_allclose(np.array(ms) / 2 ** s, [0.7, 0.013], rtol=1e-3)
    assert decompose_shared_shift([0.5, 0.25], 16, 6) == ([2, 1], 2)
    assert decompose_shared_shift([2 ** -3, 2 ** -5], 16, 6, power_of_two=True) == ([4, 1], 5)
    with pytest.raises(QuantizationError, match=r"add3: .*span more than a 4-bit"):
        decompose_shared_shift([1.0, 1e-3], 4, 6, where="add3")


# Weight schemes -------------------------------------------------------------------------

def _is_pot(v, exp_max):
    return v == 0 or (abs(v) & (abs(v) - 1) == 0 and abs(v).bit_length() - 1 <= exp_max)


@pytest.mark.parametrize("bits", [4, 6, 8, 12, 16])
@pytest.mark.parametrize("exp_bits", [2, 3, 4])
def test_weight_levels_sets(bits, exp_bits):
    qm = (1 << (bits - 1)) - 1
    exp_max = (1 << exp_bits) - 1
    pot = weight_levels("pot", bits, exp_bits)
    apot = weight_levels("apot", bits, exp_bits)
    assert np.all(np.diff(pot) > 0) and np.all(np.diff(apot) > 0)
    assert all(_is_pot(int(v), exp_max) for v in pot)
    assert pot[-1] == 1 << exp_max and len(pot) == 2 * exp_max + 3
    terms = [0] + [sign << e for e in range(exp_max + 1) for sign in (1, -1)]
    assert set(apot.tolist()) == {a + b for a in terms for b in terms}
    # Every level has a code the PEs decode back to it.
    for scheme, levels in (("pot", pot), ("apot", apot)):
        for v in levels.tolist():
            code = weight_codes.encode(scheme, v, bits, exp_bits)
            assert weight_codes.decode(scheme, code, bits, exp_bits) == v
    assert set(pot) <= set(apot)
    np.testing.assert_array_equal(weight_levels("uniform", bits), np.arange(-qm, qm + 1))


def test_weight_levels_unknown_scheme():
    with pytest.raises(QuantizationError, match=r"one of uniform, pot, apot, not 'ternary'"):
        weight_levels("ternary", 8)


def test_project_to_levels_is_nearest():
    levels = weight_levels("pot", 8, 3)
    x = np.random.default_rng(0).uniform(-150, 150, 5000)
    q = project_to_levels(x, levels)
    best = levels[np.argmin(np.abs(x[:, None] - levels[None, :]), axis=1)]
    np.testing.assert_array_equal(np.abs(q - x), np.abs(best - x))


@pytest.mark.parametrize("scheme", ["uniform", "pot", "apot"])
@pytest.mark.parametrize("per_channel,pot_scales", [(True, False), (False, True), (True, True)])
def test_quantize_weights_schemes(scheme, per_channel, pot_scales):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 4, 3, 3)) * rng.uniform(0.01, 2, size=(6, 1, 1, 1))
    q, scale = quantize_weights(w, 8, scheme=scheme, per_channel=per_channel,
                                pot_scales=pot_scales)
    assert q.shape == w.shape and q.dtype == np.int64 and scale.shape == (6,)
    assert set(np.unique(q)) <= set(weight_levels(scheme, 8, 3))
    if pot_scales:
        assert np.all(np.log2(scale) == np.round(np.log2(scale)))
    if not per_channel:
        assert np.all(scale == scale[0])
    snr = 10 * np.log10((w ** 2).sum() / ((q * scale[:, None, None, None] - w) ** 2).sum())
    floor = {"uniform": 30.0, "pot": 10.0, "apot": 20.0}[scheme]
    assert snr > floor


def test_quantize_weights_apot_beats_pot_and_uniform_beats_both():
    w = np.random.default_rng(2).normal(size=(16, 64))
    snrs = {}
    for scheme in ("uniform", "pot", "apot"):
        q, s = quantize_weights(w, 8, scheme=scheme)
        snrs[scheme] = 10 * np.log10((w ** 2).sum() / ((q * s[:, None] - w) ** 2).sum())
    assert snrs["uniform"] > snrs["apot"] > snrs["pot"]


def test_quantize_weights_rejects_bad_values():
    with pytest.raises(QuantizationError, match=r"conv2: weights contain inf or NaN"):
        quantize_weights(np.array([[np.nan]]), 8, where="conv2")


# Overflow proof -------------------------------------------------------------------------

def test_accumulator_bounds_are_tight():
    w = np.array([[3, -2, 0], [-1, -1, -1]])
    low, high = accumulator_bounds(w, -128, 127, bias=np.array([10, -5]))
    assert list(high) == [3 * 127 + 2 * 128 + 10, 3 * 128]
    assert list(low) == [-(3 * 128 + 2 * 127), -3 * 127 - 5]
    low, high = accumulator_bounds(w, 0, 127)
    assert list(high) == [3 * 127, 0] and list(low) == [-2 * 127, -3 * 127]


def test_accumulator_bounds_hold_on_random_data():
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, size=(8, 50))
    bias = rng.integers(-1000, 1000, size=8)
    low, high = accumulator_bounds(w, -128, 127, bias)
    x = rng.integers(-128, 128, size=(1000, 50))
    acc = x @ w.T + bias
    assert np.all(acc <= high) and np.all(acc >= low)


def test_prove_accumulator_passes_and_fails_clearly():
    w = np.full((2, 1024), 127)
    assert prove_accumulator("conv", w, -128, 127, 32) == 128 * 127 * 1024
    with pytest.raises(QuantizationError,
                       match=r"Layer 'big_conv': worst-case accumulator \|sum\| = 16646144 "
                             r"\(~2\*\*23\.99\) \(output channel 0, 1024 products of inputs in "
                             r"\[-128, 127\]\) exceeds the signed 20-bit accumulator limit 524287;"
                             r" lower act_bits or weight_bits, split the layer's input channels, "
                             r"or widen acc_bits"):
        prove_accumulator("big_conv", w, -128, 127, 20)


def test_prove_sum_and_product_limit():
    assert prove_sum("pool", [(9, 128)], 16) == 9 * 128
    with pytest.raises(QuantizationError, match=r"Layer 'gap': .*exceeds the signed 12-bit"):
        prove_sum("gap", [(49, 128)], 12)
    with pytest.raises(QuantizationError, match=r"Layer 'fc': .*exceeds 63 bits"):
        prove_accumulator("fc", np.full((1, 4), 1 << 28), -(1 << 15), 1 << 15, 48,
                          multiplier=np.array([1 << 31]))


def test_check_bias():
    check_bias("conv", np.array([1 << 30, -(1 << 31)]), 32)
    with pytest.raises(QuantizationError, match=r"Layer 'conv': quantized bias .* 16-bit bias"):
        check_bias("conv", np.array([40000]), 16)
