"""Real rescale factors as integer (multiplier, shift) pairs.

A requantizer computes ``round_shift(acc * m, s)``, i.e. multiplies by
``m / 2**s``. ``m`` is unsigned with ``mult_bits`` bits and ``s`` lies in
``0 .. 2**shift_bits - 1`` (``ArchConfig.mult_bits`` / ``shift_bits``). In the
pure power-of-two mode of dynamic fixed point every factor is ``2**-s`` and
``m = 1``.

The approximation itself is :func:`sim.golden.fixed_point_multiplier` /
:func:`sim.golden.shared_shift_multipliers`; this module adds the hardware's
field limits, the power-of-two mode, errors that name the layer, and the
canonical form (no trailing zero bits in ``m``).
"""

from __future__ import annotations

import math

import numpy as np

from compiler.errors import QuantizationError
from hw import isa
from sim import golden

__all__ = ["decompose_multiplier", "decompose_multipliers", "decompose_shared_shift",
           "max_shift"]


def max_shift(shift_bits: int) -> int:
    """Largest usable shift: the field's maximum, capped at :data:`hw.isa.MAX_SHIFT`
    (:func:`hw.isa.max_shift`)."""
    return isa.max_shift(shift_bits)


def _strip_trailing_zeros(ms: list[int], s: int) -> tuple[list[int], int]:
    """The same factors ``m / 2**s`` with the smallest shift (cheaper to apply)."""
    while s > 0 and all(m % 2 == 0 for m in ms):
        ms = [m // 2 for m in ms]
        s -= 1
    return [int(m) for m in ms], int(s)


def _check_real(real, where):
    if not math.isfinite(real) or real < 0.0:
        raise QuantizationError(
            f"{where}: rescale factor must be a finite non-negative number, not {real!r}; "
            f"check the calibration ranges of its tensors")


def _pot_pair(real, mult_bits, s_max, where):
    if real == 0.0:
        return 0, 0
    exp = -math.log2(real)
    s = round(exp)
    if abs(exp - s) > 1e-9:
        raise QuantizationError(
            f"{where}: rescale factor {real!r} is not a power of two, so it cannot be a pure "
            f"shift; use per-layer power-of-two scales or allow a multiplier")
    if s > s_max:
        raise QuantizationError(
            f"{where}: rescale factor 2**-{s} needs a shift of {s} but shift_bits allows at "
            f"most {s_max}; widen shift_bits or narrow the scales' spread")
    if s < 0:
        # A factor above one is a left shift, still a power of two.
        m = 1 << -s
        if m >= 1 << mult_bits:
            raise QuantizationError(
                f"{where}: rescale factor 2**{-s} does not fit a {mult_bits}-bit multiplier; "
                f"widen mult_bits")
        return m, 0
    return 1, s


def decompose_multiplier(real: float, mult_bits: int, shift_bits: int, *,
                         power_of_two: bool = False, where: str = "rescale") -> tuple[int, int]:
    """Integer ``(m, s)`` with ``m / 2**s`` as close to ``real`` as the widths allow.

    The shift is chosen as large as possible so that ``m`` keeps ``mult_bits``
    significant bits, then trailing zero bits of ``m`` are traded for a smaller
    shift (the same value, cheaper to apply).

    Parameters
    ----------
    real : float
        The factor, e.g. ``scale_in * scale_w / scale_out``.
    mult_bits, shift_bits : int
        Multiplier width and shift-field width.
    power_of_two : bool
        Require ``real`` to be a power of two and return ``m = 1`` (or ``2**k``
        for factors above one).
    where : str
        Names the layer in error messages.

    Raises
    ------
    QuantizationError
        If the factor underflows (rounds to ``m = 0`` at the largest shift) or
        overflows the multiplier.
    """
    real = float(real)
    _check_real(real, where)
    s_max = max_shift(shift_bits)
    if power_of_two:
        return _pot_pair(real, mult_bits, s_max, where)
    if real == 0.0:
        return 0, 0
    try:
        m, s = golden.fixed_point_multiplier(real, mult_bits, s_max)
    except ValueError:
        raise QuantizationError(
            f"{where}: rescale factor {real:.6g} needs a multiplier of at least {round(real)} "
            f"but mult_bits={mult_bits} allows at most {(1 << mult_bits) - 1}; widen mult_bits "
            f"or let the output scale grow") from None
    if m == 0:
        raise QuantizationError(
            f"{where}: rescale factor {real:.3g} is below the smallest nonzero step "
            f"2**-{s_max} of shift_bits={shift_bits}; widen shift_bits or mult_bits")
    (m,), s = _strip_trailing_zeros([m], s)
    return m, s


def decompose_multipliers(reals, mult_bits: int, shift_bits: int, *, power_of_two: bool = False,
                          where: str = "rescale") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel :func:`decompose_multiplier`; returns int64 arrays ``(m, s)``."""
    reals = np.asarray(reals, dtype=np.float64).ravel()
    ms = np.empty(reals.size, dtype=np.int64)
    ss = np.empty(reals.size, dtype=np.int64)
    for i, r in enumerate(reals):
        ms[i], ss[i] = decompose_multiplier(r, mult_bits, shift_bits, power_of_two=power_of_two,
                                            where=f"{where} (channel {i})")
    return ms, ss


def decompose_shared_shift(reals, mult_bits: int, shift_bits: int, *,
                           power_of_two: bool = False,
                           where: str = "rescale") -> tuple[list[int], int]:
    """Multipliers for several inputs that share one shift (residual add, concat).

    Returns ``([m_0, m_1, ...], s)`` with ``m_i / 2**s ~ reals[i]``. The shift
    is set by the largest factor so that every multiplier fits ``mult_bits``;
    with ``power_of_two`` each ``m_i`` is itself a power of two.
    """
    reals = [float(r) for r in reals]
    for r in reals:
        _check_real(r, where)
    s_max = max_shift(shift_bits)
    biggest = max(reals, default=0.0)
    if biggest == 0.0:
        return [0] * len(reals), 0
    if power_of_two:
        pairs = [_pot_pair(r, mult_bits, s_max, where) for r in reals]
        s = max(p[1] for p in pairs)
        ms = [m << (s - ps) for m, ps in pairs]
        if max(ms) >= 1 << mult_bits:
            raise QuantizationError(
                f"{where}: input scales differ by more than mult_bits={mult_bits} allows as a "
                f"shared-shift power of two; widen mult_bits")
        return ms, s
    try:
        positive, s = golden.shared_shift_multipliers([r for r in reals if r > 0], mult_bits,
                                                      s_max)
    except ValueError:
        raise QuantizationError(
            f"{where}: rescale factor {biggest:.6g} does not fit a {mult_bits}-bit "
            f"multiplier; widen mult_bits") from None
    rest = iter(positive)
    ms = [next(rest) if r > 0 else 0 for r in reals]
    for r, m in zip(reals, ms):
        if r > 0 and m == 0:
            raise QuantizationError(
                f"{where}: input factors {', '.join(f'{x:.3g}' for x in reals)} span more "
                f"than a {mult_bits}-bit multiplier with one shared shift; widen mult_bits or "
                f"bring the input scales closer")
    return _strip_trailing_zeros(ms, s)
