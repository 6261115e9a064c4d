"""Weight quantization: uniform, power-of-two (PoT) and additive power-of-two (APoT).

Quantized weights are plain integers whatever the scheme; the scheme only
restricts which integers may appear (seed 001):

* ``uniform`` -- every value of the signed ``weight_bits`` range,
* ``pot`` -- ``0`` or ``+-2**e`` with ``0 <= e <= 2**pot_exp_bits - 1``,
* ``apot`` -- the sum of two such PoT terms.

Every value also has to fit ``weight_bits`` (``|w| <= 2**(weight_bits-1) - 1``),
so the PE's shift-based multipliers see exactly the codes of
``hw.weight_codes``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from compiler.errors import QuantizationError
from compiler.quant.scales import frac_bits_for, qmax

__all__ = ["WEIGHT_SCHEMES", "weight_levels", "project_to_levels", "quantize_weights"]

WEIGHT_SCHEMES = ("uniform", "pot", "apot")

# Scale candidates per octave searched for PoT / APoT weights: their levels are
# uneven, so the max-abs scale is rarely the one with the least error.
_SEARCH_STEPS = 8


@lru_cache(maxsize=None)
def _levels(scheme: str, bits: int, pot_exp_bits: int) -> tuple[int, ...]:
    limit = qmax(bits)
    if scheme == "uniform":
        return tuple(range(-limit, limit + 1))
    exps = range(0, (1 << pot_exp_bits))
    terms = {0}
    for e in exps:
        terms.add(1 << e)
        terms.add(-(1 << e))
    if scheme == "pot":
        values = terms
    else:
        values = {a + b for a in terms for b in terms}
    return tuple(sorted(v for v in values if -limit <= v <= limit))


def weight_levels(scheme: str, bits: int, pot_exp_bits: int = 3) -> np.ndarray:
    """Sorted int64 array of the integer weight values a scheme may use.

    Parameters
    ----------
    scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"``.
    bits : int
        Signed weight width; every level satisfies ``|w| <= 2**(bits-1) - 1``.
    pot_exp_bits : int
        Exponent field width of PoT / APoT codes (exponents ``0 .. 2**pot_exp_bits - 1``).
    """
    if scheme not in WEIGHT_SCHEMES:
        raise QuantizationError(
            f"weight scheme must be one of {', '.join(WEIGHT_SCHEMES)}, not {scheme!r}")
    return np.array(_levels(scheme, int(bits), int(pot_exp_bits)), dtype=np.int64)


def project_to_levels(x, levels: np.ndarray) -> np.ndarray:
    """Nearest level to each element of ``x`` (ties go to the larger magnitude's side
    consistently: the upper level)."""
    x = np.asarray(x, dtype=np.float64)
    midpoints = (levels[1:] + levels[:-1]) / 2.0
    idx = np.searchsorted(midpoints, x, side="left")
    return levels[idx]


def _project_uniform(x, limit):
    return np.clip(np.rint(x), -limit, limit).astype(np.int64)


def quantize_weights(w, bits: int, *, scheme: str = "uniform", pot_exp_bits: int = 3,
                     per_channel: bool = True, pot_scales: bool = False,
                     where: str = "weights") -> tuple[np.ndarray, np.ndarray]:
    """Quantize float weights to integers of a scheme.

    Parameters
    ----------
    w : ndarray
        Float weights, output channels first (``(M, ...)``).
    bits : int
        Signed weight width.
    scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"``.
    pot_exp_bits : int
        Exponent field width of PoT / APoT codes.
    per_channel : bool
        One scale per output channel (else one for the whole tensor).
    pot_scales : bool
        Restrict scales to powers of two (dynamic fixed point).
    where : str
        Names the layer in error messages.

    Returns
    -------
    w_int : ndarray of int64
        Integer weights, same shape as ``w``, every value one of the scheme's levels.
    scales : ndarray of float64
        Scale per output channel (``(M,)``; equal entries when not per channel).
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0 or w.shape[0] == 0:
        raise QuantizationError(f"{where}: weight tensor is empty, not shape {w.shape!r}")
    if not np.all(np.isfinite(w)):
        raise QuantizationError(f"{where}: weights contain inf or NaN; fix the model")
    levels = weight_levels(scheme, bits, pot_exp_bits)
    top = int(levels[-1])
    rows = w.reshape(w.shape[0], -1)
    max_abs = np.abs(rows).max(axis=1) if per_channel else np.full(
        rows.shape[0], np.abs(rows).max())
    groups = rows if per_channel else rows.reshape(1, -1)
    group_max = max_abs if per_channel else max_abs[:1]

    # Candidate scales per group, shape (G, C): the max-abs scale first, then
    # smaller ones that clip the largest weights in exchange for resolution.
    if pot_scales:
        f0 = np.array([frac_bits_for(m, bits) if top == qmax(bits)
                       else frac_bits_for(m * qmax(bits) / top, bits) for m in group_max])
        steps = 1 if scheme == "uniform" else 2
        cands = 2.0 ** -(f0[:, None] + np.arange(steps)[None, :])
    else:
        base = np.where(group_max > 0, group_max, 1.0) / top
        steps = 1 if scheme == "uniform" else _SEARCH_STEPS
        cands = base[:, None] * 2.0 ** (-np.arange(steps) / steps)[None, :]

    best_err = np.full(groups.shape[0], np.inf)
    best_q = np.zeros(groups.shape, dtype=np.int64)
    best_scale = cands[:, 0].copy()
    for c in range(cands.shape[1]):
        scale = cands[:, c:c + 1]
        x = groups / scale
        q = _project_uniform(x, top) if scheme == "uniform" else project_to_levels(x, levels)
        err = ((q * scale - groups) ** 2).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_q[better] = q[better]
        best_scale = np.where(better, scale[:, 0], best_scale)

    if per_channel:
        scales = best_scale
    else:
        scales = np.full(rows.shape[0], best_scale[0])
    return best_q.reshape(w.shape), scales.astype(np.float64)
