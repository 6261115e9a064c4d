"""A synthetic power amplifier: a generalized memory polynomial (GMP), and test signals.

The PA maps complex baseband input ``x(n)`` to

``y(n) = sum_{k=0}^{Ka-1} sum_{m=0}^{Ma-1} a[k, m] x(n-m) |x(n-m)|^k``
``     + sum_{k=1}^{Kb}   sum_{m=0}^{Mb-1} sum_{l=1}^{Lb} b[k, m, l] x(n-m) |x(n-m-l)|^k``

(Morgan, Ma, Kim, Zierdt, Pastalan, "A Generalized Memory Polynomial Model for
Digital Predistortion of RF Power Amplifiers", IEEE Trans. Signal Processing 54(10),
2006): the first sum is the memory polynomial (aligned signal and envelope), the
second the lagging cross terms (envelope ``l`` samples behind the signal).

:data:`A` holds the memory-polynomial coefficients of Ding et al. ("A robust digital
baseband predistorter constructed using memory polynomials", IEEE Trans.
Communications 52(1), 2004): odd orders 1, 3, 5 (``k = 0, 2, 4``) and memory depth 3;
:data:`B` adds two small lagging cross terms of order 3. At the drive of
:func:`ofdm_signal` (RMS 0.25, peaks near 0.72) the PA compresses its peaks and smears
them over three samples: without pre-distortion its output differs from the linear
gain by about -26 dB NMSE.
"""

from __future__ import annotations

import numpy as np

__all__ = ["A", "B", "gmp", "linear_gain", "nmse_db", "ofdm_signal"]

#: a[k, m]: envelope power k (order k + 1), memory tap m (Ding et al. 2004).
A = np.array([
    [1.0513 + 0.0904j, -0.0680 - 0.0023j, 0.0289 - 0.0054j],
    [0.0, 0.0, 0.0],
    [-0.0542 - 0.2900j, 0.2234 + 0.2317j, -0.0621 - 0.0932j],
    [0.0, 0.0, 0.0],
    [-0.9657 - 0.7028j, -0.2451 - 0.3735j, 0.1229 + 0.1508j],
])

#: b[(k, m, l)]: lagging cross terms x(n-m) |x(n-m-l)|^k.
B = {(2, 0, 1): 0.0200 - 0.0100j, (2, 1, 1): -0.0100 + 0.0050j}


def _delay(x: np.ndarray, d: int) -> np.ndarray:
    if d == 0:
        return x
    return np.concatenate([np.zeros(d, dtype=x.dtype), x[:-d]])


def gmp(x, a=A, b=B) -> np.ndarray:
    """The PA output for complex baseband input ``x`` (1-D)."""
    x = np.asarray(x, dtype=np.complex128)
    env = np.abs(x)
    y = np.zeros_like(x)
    for k in range(a.shape[0]):
        for m in range(a.shape[1]):
            if a[k, m]:
                y += a[k, m] * _delay(x * env ** k, m)
    for (k, m, lag), coef in b.items():
        y += coef * _delay(x, m) * _delay(env, m + lag) ** k
    return y


def linear_gain(x, y) -> complex:
    """Least-squares complex gain ``G`` of ``y ~ G x`` (the target of linearization)."""
    x = np.asarray(x)
    return complex(np.vdot(x, y) / np.vdot(x, x))


def nmse_db(ref, got) -> float:
    """Normalized mean squared error of ``got`` against ``ref``, in dB."""
    ref = np.asarray(ref)
    err = np.asarray(got) - ref
    return float(10 * np.log10(np.sum(np.abs(err) ** 2) / np.sum(np.abs(ref) ** 2)))


def ofdm_signal(length: int, *, seed: int = 0, fft: int = 256, used: int = 64,
                rms: float = 0.25) -> np.ndarray:
    """A 4x-oversampled OFDM-like baseband signal: 16-QAM on ``used`` of ``fft``
    subcarriers around DC, scaled to ``rms``."""
    rng = np.random.default_rng(seed)
    levels = np.array([-3, -1, 1, 3])
    symbols = []
    half = used // 2
    while sum(len(s) for s in symbols) < length:
        spec = np.zeros(fft, dtype=np.complex128)
        qam = rng.choice(levels, used) + 1j * rng.choice(levels, used)
        spec[1:half + 1] = qam[:half]
        spec[-half:] = qam[half:]
        symbols.append(np.fft.ifft(spec))
    x = np.concatenate(symbols)[:length]
    return x * (rms / np.sqrt(np.mean(np.abs(x) ** 2)))
