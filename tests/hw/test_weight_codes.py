"""The weight-code definition shared by the PEs, the compiler and the golden model."""

import random

import pytest

from hw import weight_codes as wc


@pytest.mark.parametrize("exp_bits", [1, 2, 3, 4, 5])
def test_pot_roundtrip_covers_every_code(exp_bits):
    width = wc.code_width("pot", 8, exp_bits)
    assert width == 2 + exp_bits
    values = wc.pot_values(exp_bits)
    assert values == sorted(set(values))
    top = 1 << wc.max_exponent(exp_bits)
    assert values[0] == -top and values[-1] == top and 0 in values
    assert len(values) == 2 * (1 << exp_bits) + 1
    for v in values:
        code = wc.pot_encode(v, exp_bits)
        assert 0 <= code < 1 << width
        assert wc.pot_decode(code, exp_bits) == v
    # Every code decodes to a representable value, zero whatever the other fields hold.
    decoded = {wc.pot_decode(c, exp_bits) for c in range(1 << width)}
    assert decoded == set(values)
    zero_bit = 1 << (exp_bits + 1)
    assert all(wc.pot_decode(zero_bit | c, exp_bits) == 0 for c in range(zero_bit))


def test_pot_field_layout():
    # [exp (3) | sign | zero], exp in the LSBs.
    assert wc.pot_encode(1, 3) == 0b0_0_000
    assert wc.pot_encode(8, 3) == 0b0_0_011
    assert wc.pot_encode(-8, 3) == 0b0_1_011
    assert wc.pot_encode(-128, 3) == 0b0_1_111
    assert wc.pot_encode(0, 3) == 0b1_0_000
    assert wc.pot_decode(0b0_1_101, 3) == -32


def test_apot_field_layout_and_canonical_choice():
    half = 2 + 3
    # A single power of two lives in term 0 with term 1 zero.
    assert wc.apot_encode(16, 3) == (wc.pot_encode(0, 3) << half) | wc.pot_encode(16, 3)
    assert wc.apot_encode(0, 3) == (wc.pot_encode(0, 3) << half) | wc.pot_encode(0, 3)
    # 3 = 2 + 1 (not 4 - 1): same-sign second term preferred at equal |term1|.
    assert wc.apot_encode(3, 3) == (wc.pot_encode(1, 3) << half) | wc.pot_encode(2, 3)
    assert wc.apot_encode(-3, 3) == (wc.pot_encode(-1, 3) << half) | wc.pot_encode(-2, 3)
    # 7 = 8 - 1 is the only pair.
    assert wc.apot_encode(7, 3) == (wc.pot_encode(-1, 3) << half) | wc.pot_encode(8, 3)
    assert wc.apot_decode((wc.pot_encode(-4, 3) << half) | wc.pot_encode(4, 3), 3) == 0


@pytest.mark.parametrize("exp_bits", [1, 2, 3, 4])
def test_apot_roundtrip_covers_every_code(exp_bits):
    width = wc.code_width("apot", 8, exp_bits)
    assert width == 2 * (2 + exp_bits)
    values = wc.apot_values(exp_bits)
    pot = wc.pot_values(exp_bits)
    assert values == sorted({a + b for a in pot for b in pot})
    for v in values:
        code = wc.apot_encode(v, exp_bits)
        assert 0 <= code < 1 << width
        assert wc.apot_decode(code, exp_bits) == v
    decoded = {wc.apot_decode(c, exp_bits) for c in range(1 << width)}
    assert decoded == set(values)


def test_value_bits_hold_every_value():
    for scheme in ("pot", "apot"):
        for exp_bits in (1, 2, 3, 4, 5):
            bits = wc.value_bits(scheme, 8, exp_bits)
            vals = wc.values(scheme, 8, exp_bits)
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            assert lo <= min(vals) and max(vals) <= hi
            # Not a bit more than needed.
            assert not (lo // 2 <= min(vals) and max(vals) <= hi // 2)
    assert wc.value_bits("uniform", 6, 3) == 6


def test_uniform_encode_decode():
    assert wc.code_width("uniform", 6, 3) == 6
    assert wc.values("uniform", 3, 1) == [-4, -3, -2, -1, 0, 1, 2, 3]
    rng = random.Random(0)
    for _ in range(200):
        v = rng.randint(-128, 127)
        code = wc.encode("uniform", v, 8, 3)
        assert 0 <= code < 256 and code == v & 0xFF
        assert wc.decode("uniform", code, 8, 3) == v
    for scheme in ("pot", "apot"):
        for v in wc.values(scheme, 8, 2):
            assert wc.decode(scheme, wc.encode(scheme, v, 8, 2), 8, 2) == v


@pytest.mark.parametrize("value", [3, -6, 256, -256, 2**40])
def test_pot_refuses_unrepresentable_values(value):
    with pytest.raises(ValueError, match=rf"PoT weight value .*, not {value}$"):
        wc.pot_encode(value, 3)


@pytest.mark.parametrize("value", [11, -13, 257, 512])
def test_apot_refuses_unrepresentable_values(value):
    with pytest.raises(ValueError, match=rf"APoT weight value .*, not {value}$"):
        wc.apot_encode(value, 3)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"^scheme must be one of uniform, pot, apot, not 'fp8'$"):
        wc.code_width("fp8", 8, 3)
    with pytest.raises(TypeError, match=r"^scheme must be a string, not 3$"):
        wc.code_width(3, 8, 3)
    with pytest.raises(ValueError, match=r"^exp_bits must be between 1 and 5, not 0$"):
        wc.pot_values(0)
    with pytest.raises(TypeError, match=r"^exp_bits must be an integer, not 2.0$"):
        wc.pot_encode(1, 2.0)
    with pytest.raises(ValueError, match=r"^weight_bits must be between 2 and 32, not 1$"):
        wc.code_width("uniform", 1, 3)
    with pytest.raises(TypeError, match=r"^PoT weight value must be an integer, not 1.0$"):
        wc.pot_encode(1.0, 3)
    with pytest.raises(ValueError, match=r"^PoT code must fit in 5 unsigned bits, not 32$"):
        wc.pot_decode(32, 3)
    with pytest.raises(ValueError, match=r"^APoT code must fit in 10 unsigned bits, not -1$"):
        wc.apot_decode(-1, 3)
    with pytest.raises(ValueError, match=r"^Uniform weight value must fit in 4 signed bits, "
                                         r"not 8$"):
        wc.encode("uniform", 8, 4, 3)
