"""Golden operation of each engine kind, keyed like :data:`hw.engine_kinds.ENGINE_KINDS`.

The instruction-set simulator executes a legal COMPUTE by calling
``golden_op(instr.engine)(operands, instr, x)``: ``x`` is the input tile (int64,
``(1, in_c, in_h, in_w)``), ``operands`` reads the instruction's WBUF weights
(``operands.weights(shape)``) and PBUF entries (``operands.params()``: ``(out_c, 3)`` bias,
multiplier, shift) with their buffer ranges checked, and the result is the output tile
before it is written to OBUF. A new engine kind registers its operation with
:func:`register_golden_op`.
"""

from __future__ import annotations

import numpy as np

from hw.isa import Engine, Pool
from sim import golden

__all__ = ["GOLDEN_OPS", "golden_op", "register_golden_op"]


def _pads(i):
    return (i.pad_top, i.pad_left, i.pad_bottom, i.pad_right)


def _requantized_conv(operands, i, x, wshape, groups):
    params = operands.params()
    w = operands.weights(wshape)
    acc = golden.conv2d(x, w, params[:, 0], (i.stride_h, i.stride_w), _pads(i), groups)
    y = golden.requantize(acc, params[:, 1], params[:, 2], i.act_lo, i.act_hi)
    if i.pool is Pool.MAX:
        y = golden.max_pool2d(y, (i.fpool_h, i.fpool_w), (i.fpool_h, i.fpool_w))
    return y


def conv_op(operands, i, x):
    """CONV and POINTWISE: full convolution, requantized, optional fused max pool."""
    return _requantized_conv(operands, i, x, (i.out_c, i.in_c, i.k_h, i.k_w), 1)


def depthwise_op(operands, i, x):
    """DEPTHWISE: one ``k_h x k_w`` filter per channel, requantized."""
    return _requantized_conv(operands, i, x, (i.out_c, 1, i.k_h, i.k_w), i.in_c)


def pool_op(operands, i, x):
    """POOL: max pool (clamped), or average pool as a requantized window sum."""
    stride = (i.stride_h, i.stride_w)
    if i.pool is Pool.MAX:
        return np.clip(golden.max_pool2d(x, (i.k_h, i.k_w), stride, _pads(i)),
                       i.act_lo, i.act_hi)
    acc = golden.sum_pool2d(x, (i.k_h, i.k_w), stride, _pads(i))
    return golden.requantize(acc, i.mult, i.shift, i.act_lo, i.act_hi)


#: The golden operation of every engine kind.
GOLDEN_OPS: dict = {
    Engine.CONV: conv_op,
    Engine.DEPTHWISE: depthwise_op,
    Engine.POINTWISE: conv_op,
    Engine.POOL: pool_op,
}


def golden_op(engine):
    """The golden operation of ``engine``; ``ValueError`` if none is registered."""
    try:
        return GOLDEN_OPS[engine]
    except (KeyError, TypeError):
        raise ValueError(f"No golden operation is registered for {engine!r}") from None


def register_golden_op(engine, op) -> None:
    """Register ``op(operands, instr, x) -> y`` as the golden operation of ``engine``."""
    if not callable(op):
        raise TypeError(f"op must be callable, not {op!r}")
    GOLDEN_OPS[engine] = op
