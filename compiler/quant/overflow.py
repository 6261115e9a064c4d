"""Accumulator-overflow proof.

For each layer the compiler bounds the accumulator from the actual integer
weights and the range the input activations can take (the producer's clamp
``lo .. hi``), and refuses the layer if any partial sum could leave the signed
``acc_bits`` range. The bound holds for any accumulation order (input-channel
tiles, bias first or last): positive and negative contributions are summed
separately.
"""

from __future__ import annotations

import numpy as np

from compiler.errors import QuantizationError
from sim.golden import qrange

__all__ = ["accumulator_bounds", "check_bias", "prove_accumulator", "prove_sum"]

# Products ``acc * m`` are kept within int64, where every requantizer (ISS, numpy
# golden fast path) computes them natively.
_PRODUCT_LIMIT = (1 << 63) - 1


def accumulator_bounds(w_int, act_lo: int, act_hi: int, bias=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel lowest and highest value any partial sum can reach.

    Parameters
    ----------
    w_int : ndarray of int
        Integer weights, output channels first.
    act_lo, act_hi : int
        Range of the input activations.
    bias : ndarray of int, optional
        Integer bias per output channel.

    Returns
    -------
    (low, high) : tuple of int64 arrays of shape ``(M,)``
    """
    w = np.asarray(w_int, dtype=np.int64)
    w = w.reshape(w.shape[0], -1)
    at_lo = w * int(act_lo)
    at_hi = w * int(act_hi)
    high = np.maximum(np.maximum(at_lo, at_hi), 0).sum(axis=1)
    low = np.minimum(np.minimum(at_lo, at_hi), 0).sum(axis=1)
    if bias is not None:
        b = np.broadcast_to(np.asarray(bias, dtype=np.int64), high.shape)
        high = high + np.maximum(b, 0)
        low = low + np.minimum(b, 0)
    return low, high


def _fmt(v: int) -> str:
    v = int(v)
    return f"{v} (~2**{np.log2(abs(v)):.2f})" if v else "0"


def prove_accumulator(layer: str, w_int, act_lo: int, act_hi: int, acc_bits: int, *,
                      bias=None, multiplier=None) -> int:
    """Prove a weighted layer's accumulator fits ``acc_bits``; return the worst |sum|.

    Raises
    ------
    QuantizationError
        Naming the layer, the bound, the limit and the ways out.
    """
    low, high = accumulator_bounds(w_int, act_lo, act_hi, bias)
    worst = int(max(high.max(initial=0), -low.min(initial=0)))
    lowest, limit = qrange(acc_bits)
    if int(high.max(initial=0)) > limit or int(low.min(initial=0)) < lowest:
        channel = int(np.argmax(np.maximum(high, -low)))
        fan_in = int(np.asarray(w_int).reshape(len(high), -1).shape[1])
        raise QuantizationError(
            f"Layer {layer!r}: worst-case accumulator |sum| = {_fmt(worst)} (output channel "
            f"{channel}, {fan_in} products of inputs in [{act_lo}, {act_hi}]) exceeds the "
            f"signed {acc_bits}-bit accumulator limit {limit}; lower act_bits or weight_bits, "
            f"split the layer's input channels, or widen acc_bits")
    _check_product(layer, worst, multiplier)
    return worst


def prove_sum(layer: str, terms, acc_bits: int, *, multiplier=None) -> int:
    """Prove a sum of bounded terms fits ``acc_bits`` (pool windows, residual adds).

    ``terms`` is a list of ``(count, max_abs)``: ``count`` values each at most
    ``max_abs`` in magnitude.
    """
    worst = int(sum(int(c) * int(a) for c, a in terms))
    limit = qrange(acc_bits)[1]
    if worst > limit:
        raise QuantizationError(
            f"Layer {layer!r}: worst-case accumulator |sum| = {_fmt(worst)} exceeds the signed "
            f"{acc_bits}-bit accumulator limit {limit}; lower act_bits, shrink the window, or "
            f"widen acc_bits")
    _check_product(layer, worst, multiplier)
    return worst


def _check_product(layer, worst, multiplier):
    if multiplier is None:
        return
    m = int(np.max(np.asarray(multiplier, dtype=np.int64), initial=0))
    if worst * m > _PRODUCT_LIMIT:
        raise QuantizationError(
            f"Layer {layer!r}: accumulator bound {_fmt(worst)} times multiplier {m} exceeds "
            f"63 bits; lower mult_bits or acc_bits")


def check_bias(layer: str, bias_int, bias_bits: int) -> None:
    """Refuse a bias that does not fit the signed ``bias_bits`` field."""
    b = np.asarray(bias_int, dtype=np.int64)
    if b.size == 0:
        return
    lo, hi = qrange(bias_bits)
    worst = int(np.abs(b).max())
    if b.min() < lo or b.max() > hi:
        raise QuantizationError(
            f"Layer {layer!r}: quantized bias magnitude {_fmt(worst)} does not fit the signed "
            f"{bias_bits}-bit bias field; widen bias_bits or use a coarser weight/activation "
            f"scale")
