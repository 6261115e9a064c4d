"""Scale selection: dynamic fixed point (power-of-two) and float scales.

A quantized tensor holds integers ``q`` that stand for the real values
``q * scale``. Dynamic fixed point (the radix point per layer of seed 002)
restricts ``scale`` to ``2**-frac_bits``, which turns every requantization into
a pure shift (multiplier ``m = 1``); float scales need a multiplier.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.errors import QuantizationError
from sim.golden import qrange

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "check_width",
    "float_scale",
    "frac_bits_for",
    "pot_scale",
    "qmax",
    "qrange",
    "tensor_range",
]

#: Narrowest and widest activation / weight widths the quantizer accepts.
MIN_BITS = 4
MAX_BITS = 16

# Largest fractional length tried for an all-zero tensor or a tiny range: beyond
# this, the scale would need a shift no requantizer supports.
_FRAC_LIMIT = 48


def check_width(name: str, bits) -> int:
    """Validate a quantization width and return it.

    Raises
    ------
    TypeError
        If ``bits`` is not an integer.
    QuantizationError
        If ``bits`` is outside ``MIN_BITS .. MAX_BITS``.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
        raise TypeError(f"{name} must be an integer, not {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise QuantizationError(
            f"{name} must be between {MIN_BITS} and {MAX_BITS} bits; choose a width in that "
            f"range, not {bits!r}")
    return int(bits)


def qmax(bits: int) -> int:
    """Largest value of a signed symmetric ``bits``-bit code (``2**(bits-1) - 1``)."""
    return qrange(bits)[1]


def frac_bits_for(max_abs: float, bits: int) -> int:
    """Fractional length of a dynamic fixed-point format covering ``max_abs``.

    The largest ``f`` such that ``max_abs * 2**f <= qmax(bits)``: the radix point
    sits as far right as the range allows. ``f`` may be negative (ranges above
    ``qmax``) and is capped for all-zero tensors.
    """
    max_abs = float(max_abs)
    if not math.isfinite(max_abs):
        raise QuantizationError(f"tensor range must be finite, not {max_abs!r}")
    if max_abs <= 0.0:
        return min(bits - 1, _FRAC_LIMIT)
    f = math.floor(math.log2(qmax(bits) / max_abs))
    # log2 may land one ulp on the wrong side of an exact power of two.
    while max_abs * 2.0 ** (f + 1) <= qmax(bits):
        f += 1
    while max_abs * 2.0 ** f > qmax(bits):
        f -= 1
    return min(f, _FRAC_LIMIT)


def pot_scale(max_abs: float, bits: int) -> float:
    """Power-of-two scale ``2**-f`` of the dynamic fixed-point format for ``max_abs``."""
    return 2.0 ** -frac_bits_for(max_abs, bits)


def float_scale(max_abs, bits: int):
    """Float scale mapping ``max_abs`` onto ``qmax(bits)`` (scalar or per-channel array)."""
    max_abs = np.asarray(max_abs, dtype=np.float64)
    if not np.all(np.isfinite(max_abs)):
        raise QuantizationError("tensor range must be finite; the calibration produced inf/NaN")
    # An all-zero channel has any scale; 1/qmax keeps its codes zero and its
    # multipliers well inside the representable range.
    safe = np.where(max_abs > 0, max_abs, 1.0)
    scale = safe / qmax(bits)
    return float(scale) if scale.ndim == 0 else scale


def tensor_range(samples, percentile: float | None = None) -> float:
    """Max-abs (or the ``percentile`` of ``|x|``) of calibration samples of one tensor.

    Parameters
    ----------
    samples : array_like or list of array_like
        Values observed for the tensor across the calibration batches.
    percentile : float, optional
        If given (in ``(0, 100]``), clip the range to this percentile of ``|x|``,
        which trades saturation of rare outliers for resolution.
    """
    if isinstance(samples, (list, tuple)):
        flat = np.concatenate([np.abs(np.asarray(s, dtype=np.float64)).ravel() for s in samples])
    else:
        flat = np.abs(np.asarray(samples, dtype=np.float64)).ravel()
    if flat.size == 0:
        return 0.0
    if percentile is None:
        return float(flat.max())
    if not 0.0 < percentile <= 100.0:
        raise QuantizationError(f"calibration percentile must be in (0, 100], not {percentile!r}")
    return float(np.percentile(flat, percentile))
