"""Weight codes: the one definition of how power-of-two weights are stored.

Every layer of ConvForge that touches a weight uses these functions: the PEs
decode the codes in gateware, the compiler quantizes to :func:`pot_values` /
:func:`apot_values` and packs the codes into the weight image, and the golden
model decodes them back to integers.

Schemes
-------
``"uniform"``
    The weight is a signed two's-complement integer of ``weight_bits``.
``"pot"`` (power of two)
    A code of ``2 + exp_bits`` bits, from the least significant bit up::

        [ exp (exp_bits) | sign (1) | zero (1) ]

    Its value is ``0`` if ``zero`` is set, otherwise ``(-1)**sign * 2**exp``.
    A PE multiplies by such a weight with a shifter and a conditional negation.
``"apot"`` (additive power of two)
    Two PoT codes side by side, term 0 in the low half; the value is
    ``term0 + term1``. A PE multiplies with two shifters and one adder.

The exponent is unsigned, so the largest magnitude is ``2**(2**exp_bits - 1)``;
decoded weights may therefore be wider than ``weight_bits`` (see
:func:`value_bits`), and products are sized from :func:`value_bits`, not from
``weight_bits``.

This module is pure Python (no numpy) so that the gateware can import it.
"""

from __future__ import annotations

from hw.arch import WEIGHT_SCHEMES

__all__ = [
    "SCHEMES",
    "apot_decode",
    "apot_encode",
    "apot_values",
    "code_width",
    "decode",
    "encode",
    "max_exponent",
    "pot_decode",
    "pot_encode",
    "pot_values",
    "value_bits",
    "values",
]

#: Weight schemes, in the order the architecture lists them.
SCHEMES = WEIGHT_SCHEMES


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


def _check_exp_bits(exp_bits):
    _check_int("exp_bits", exp_bits, 1, 5)


def _check_scheme(scheme):
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a string, not {scheme!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")


def max_exponent(exp_bits: int) -> int:
    """Largest exponent a PoT code of ``exp_bits`` holds (``2**exp_bits - 1``)."""
    _check_exp_bits(exp_bits)
    return (1 << exp_bits) - 1


def code_width(scheme: str, weight_bits: int, exp_bits: int) -> int:
    """Bits of one stored weight code.

    ``weight_bits`` for ``"uniform"``, ``2 + exp_bits`` for ``"pot"`` and
    ``2 * (2 + exp_bits)`` for ``"apot"``.
    """
    _check_scheme(scheme)
    _check_int("weight_bits", weight_bits, 2, 32)
    _check_exp_bits(exp_bits)
    if scheme == "uniform":
        return weight_bits
    if scheme == "pot":
        return 2 + exp_bits
    return 2 * (2 + exp_bits)


def value_bits(scheme: str, weight_bits: int, exp_bits: int) -> int:
    """Signed width that holds every decoded weight of the scheme.

    ``weight_bits`` for ``"uniform"``; for ``"pot"`` the range
    ``±2**max_exponent`` needs ``max_exponent + 2`` bits, and the sum of two such
    terms in ``"apot"`` one more.
    """
    _check_scheme(scheme)
    _check_int("weight_bits", weight_bits, 2, 32)
    _check_exp_bits(exp_bits)
    if scheme == "uniform":
        return weight_bits
    extra = 2 if scheme == "pot" else 3
    return max_exponent(exp_bits) + extra


def pot_values(exp_bits: int) -> list[int]:
    """Sorted list of every value a PoT code of ``exp_bits`` represents (0 included)."""
    top = max_exponent(exp_bits)
    mags = [1 << e for e in range(top + 1)]
    return sorted([0] + mags + [-v for v in mags])


def apot_values(exp_bits: int) -> list[int]:
    """Sorted list of every value an APoT code of ``exp_bits`` represents."""
    terms = pot_values(exp_bits)
    return sorted({a + b for a in terms for b in terms})


def pot_encode(value: int, exp_bits: int) -> int:
    """Code of ``value`` as a PoT weight.

    Zero is encoded with the ``zero`` bit set and the other fields cleared.

    Raises
    ------
    ValueError
        If ``value`` is not ``0`` or ``±2**e`` with ``0 <= e <= max_exponent(exp_bits)``.
    """
    _check_exp_bits(exp_bits)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"PoT weight value must be an integer, not {value!r}")
    if value == 0:
        return 1 << (exp_bits + 1)
    mag = abs(value)
    exp = mag.bit_length() - 1
    if mag != 1 << exp or exp > max_exponent(exp_bits):
        raise ValueError(
            f"PoT weight value must be 0 or ±2**e with e <= {max_exponent(exp_bits)} "
            f"(exp_bits={exp_bits}), not {value!r}")
    sign = 1 if value < 0 else 0
    return (sign << exp_bits) | exp


def pot_decode(code: int, exp_bits: int) -> int:
    """Value of a PoT code (inverse of :func:`pot_encode`)."""
    _check_exp_bits(exp_bits)
    width = 2 + exp_bits
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"PoT code must be an integer, not {code!r}")
    if code < 0 or code >= 1 << width:
        raise ValueError(f"PoT code must fit in {width} unsigned bits, not {code!r}")
    if (code >> (exp_bits + 1)) & 1:
        return 0
    exp = code & ((1 << exp_bits) - 1)
    sign = (code >> exp_bits) & 1
    return -(1 << exp) if sign else 1 << exp


def apot_encode(value: int, exp_bits: int) -> int:
    """Code of ``value`` as an APoT weight (two PoT terms, term 0 in the low half).

    Several term pairs can give the same value; the code is chosen canonically:
    fewest non-zero terms, then the smallest ``|term1|``, then a ``term1`` of the
    same sign as ``value``, then the smallest code. A single power of two is thus
    stored in term 0 with term 1 zero.

    Raises
    ------
    ValueError
        If ``value`` is not in :func:`apot_values`.
    """
    _check_exp_bits(exp_bits)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"APoT weight value must be an integer, not {value!r}")
    half = 2 + exp_bits
    best = None
    terms = pot_values(exp_bits)
    for t0 in terms:
        t1 = value - t0
        if t1 not in terms:
            continue
        code = (pot_encode(t1, exp_bits) << half) | pot_encode(t0, exp_bits)
        key = ((t0 != 0) + (t1 != 0), abs(t1), (t1 < 0) != (value < 0), code)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError(
            f"APoT weight value must be a sum of two PoT terms with exponents <= "
            f"{max_exponent(exp_bits)} (exp_bits={exp_bits}), not {value!r}")
    return best[-1]


def apot_decode(code: int, exp_bits: int) -> int:
    """Value of an APoT code (inverse of :func:`apot_encode`)."""
    _check_exp_bits(exp_bits)
    half = 2 + exp_bits
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"APoT code must be an integer, not {code!r}")
    if code < 0 or code >= 1 << (2 * half):
        raise ValueError(f"APoT code must fit in {2 * half} unsigned bits, not {code!r}")
    mask = (1 << half) - 1
    return pot_decode(code & mask, exp_bits) + pot_decode(code >> half, exp_bits)


def values(scheme: str, weight_bits: int, exp_bits: int) -> list[int]:
    """Sorted representable weight values of any scheme."""
    code_width(scheme, weight_bits, exp_bits)
    if scheme == "uniform":
        return list(range(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1)))
    if scheme == "pot":
        return pot_values(exp_bits)
    return apot_values(exp_bits)


def encode(scheme: str, value: int, weight_bits: int, exp_bits: int) -> int:
    """Unsigned code of ``value`` in any scheme (two's complement for ``"uniform"``)."""
    width = code_width(scheme, weight_bits, exp_bits)
    if scheme == "pot":
        return pot_encode(value, exp_bits)
    if scheme == "apot":
        return apot_encode(value, exp_bits)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Uniform weight value must be an integer, not {value!r}")
    if not -(1 << (width - 1)) <= value < 1 << (width - 1):
        raise ValueError(
            f"Uniform weight value must fit in {width} signed bits, not {value!r}")
    return value & ((1 << width) - 1)


def decode(scheme: str, code: int, weight_bits: int, exp_bits: int) -> int:
    """Value of an unsigned code in any scheme (inverse of :func:`encode`)."""
    width = code_width(scheme, weight_bits, exp_bits)
    if scheme == "pot":
        return pot_decode(code, exp_bits)
    if scheme == "apot":
        return apot_decode(code, exp_bits)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"Uniform weight code must be an integer, not {code!r}")
    if code < 0 or code >= 1 << width:
        raise ValueError(f"Uniform weight code must fit in {width} unsigned bits, not {code!r}")
    return code - (1 << width) if code >> (width - 1) else code
