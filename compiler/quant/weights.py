"""Weight quantization: uniform, power-of-two (PoT) and additive power-of-two (APoT).

Quantized weights are plain integers whatever the scheme; the scheme only
restricts which integers may appear (seed 001):

* ``uniform`` -- the symmetric signed ``weight_bits`` range
  ``-(2**(weight_bits-1) - 1) .. 2**(weight_bits-1) - 1``,
* ``pot`` -- ``0`` or ``+-2**e`` with ``0 <= e <= 2**pot_exp_bits - 1``,
* ``apot`` -- the sum of two such PoT terms.

The PoT and APoT sets are exactly the values of :mod:`hw.weight_codes`, the
codes the PEs decode; their range is set by ``pot_exp_bits`` (the PE is sized
for it), not by ``weight_bits``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from compiler.errors import QuantizationError
from compiler.quant.scales import frac_bits_for, qmax
from hw import weight_codes
from hw.arch import WEIGHT_SCHEMES

__all__ = ["WEIGHT_SCHEMES", "project_to_levels", "quantize_weights", "weight_levels"]

# Scale candidates searched for PoT / APoT weights: their levels are uneven (APoT
# levels are densest far below the top), so the max-abs scale is rarely the one
# with the least error. Candidates span _SEARCH_UP octaves of coarser scales and
# _SEARCH_DOWN octaves of finer, clipping ones, _SEARCH_STEPS per octave.
_SEARCH_STEPS = 8
_SEARCH_UP = 2
_SEARCH_DOWN = 1


@cache
def _levels(scheme: str, bits: int, pot_exp_bits: int) -> tuple[int, ...]:
    if scheme == "uniform":
        limit = qmax(bits)
        return tuple(range(-limit, limit + 1))
    return tuple(weight_codes.values(scheme, bits, pot_exp_bits))


def weight_levels(scheme: str, bits: int, pot_exp_bits: int = 3) -> np.ndarray:
    """Sorted int64 array of the integer weight values a scheme may use.

    Parameters
    ----------
    scheme : str
        ``"uniform"``, ``"pot"`` or ``"apot"``.
    bits : int
        Signed weight width of uniform weights.
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
        Signed weight width (of uniform weights).
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
        # The largest f with max_abs * 2**f <= top.
        f0 = np.array([frac_bits_for(m * qmax(bits) / top, bits) for m in group_max])
        shifts = [0] if scheme == "uniform" else range(-_SEARCH_UP, _SEARCH_DOWN + 1)
        cands = 2.0 ** -(f0[:, None] + np.array(shifts)[None, :])
    else:
        base = np.where(group_max > 0, group_max, 1.0) / top
        exps = [0] if scheme == "uniform" else range(-_SEARCH_UP * _SEARCH_STEPS,
                                                      _SEARCH_DOWN * _SEARCH_STEPS)
        cands = base[:, None] * 2.0 ** (-np.array(exps) / _SEARCH_STEPS)[None, :]

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
