"""Table activations: float definitions and the 8-bit tables the element-wise unit looks up.

A table activation maps each ``bits``-bit input integer ``q`` (scale ``s_in``) to
``clamp(round(f(q * s_in) / s_out), lo, hi)``: the quantized float activation of the
dequantized input. The table holds that value for every one of the ``2**bits`` inputs,
so the accelerator's result is exact by construction (the only error is the rounding
of the output itself, at most half an output step). Entries are ordered by the
two's-complement bit pattern of the input (:func:`sim.golden.table_lookup`).

PRelu has one slope per channel: it gets one table per channel (channels with equal
slopes share one), loaded in turn into the unit's table buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.isa import qrange

__all__ = ["FUNCTIONS", "TableActivation", "activation_tables", "evaluate"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0.0, 1.0)


#: Name -> ``f(x, alpha, beta)`` in float64 (``alpha`` / ``beta`` as ONNX defines them).
FUNCTIONS = {
    "sigmoid": lambda x, a, b: _sigmoid(x),
    "tanh": lambda x, a, b: np.tanh(x),
    "hardsigmoid": lambda x, a, b: _hard_sigmoid(x, a, b),
    # x * HardSigmoid(x): HardSwish is alpha = 1/6, beta = 0.5
    "hardswish": lambda x, a, b: x * _hard_sigmoid(x, a, b),
    "silu": lambda x, a, b: x * _sigmoid(x),
    "leakyrelu": lambda x, a, b: np.where(x >= 0, x, a * x),
    "prelu": lambda x, a, b: np.where(x >= 0, x, a * x),
}

#: ONNX defaults of ``alpha`` / ``beta``.
DEFAULTS = {
    "sigmoid": (0.0, 0.0), "tanh": (0.0, 0.0), "hardsigmoid": (0.2, 0.5),
    "hardswish": (1.0 / 6.0, 0.5), "silu": (0.0, 0.0), "leakyrelu": (0.01, 0.0),
    "prelu": (0.0, 0.0),
}


@dataclass
class TableActivation:
    """The activation a table layer applies.

    Parameters
    ----------
    function : str
        A key of :data:`FUNCTIONS`.
    alpha, beta : float
        Its parameters (slope of LeakyRelu, ``alpha * x + beta`` of HardSigmoid).
    slope : numpy.ndarray or None
        PRelu's per-channel slopes ``(C,)`` (float32); ``None`` otherwise.
    """

    function: str
    alpha: float = 0.0
    beta: float = 0.0
    slope: np.ndarray | None = None

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}, "
                             f"not {self.function!r}")

    @classmethod
    def of(cls, function, alpha=None, beta=None, slope=None) -> TableActivation:
        """With the ONNX defaults for the parameters not given."""
        da, db = DEFAULTS[function]
        return cls(function, da if alpha is None else float(alpha),
                   db if beta is None else float(beta), slope)

    @property
    def label(self) -> str:
        return self.function


def evaluate(act: TableActivation, x: np.ndarray) -> np.ndarray:
    """The float activation of ``x`` (``(C, H, W)`` or ``(N, C, H, W)``), float64."""
    x = np.asarray(x, dtype=np.float64)
    if act.slope is not None:
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        slope = np.asarray(act.slope, dtype=np.float64).reshape(shape)
        return np.where(x >= 0, x, slope * x)
    return FUNCTIONS[act.function](x, act.alpha, act.beta)


def activation_tables(act: TableActivation, in_scale: float, out_scale: float, bits: int,
                      lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """The tables of ``act`` for ``bits``-bit inputs of scale ``in_scale`` and outputs of
    scale ``out_scale`` clamped to ``[lo, hi]`` (default the full range).

    Returns
    -------
    numpy.ndarray of int64
        ``(T, 2**bits)``: one table (``T = 1``) or, for PRelu, one per channel; entry
        ``k`` is the output for the input whose bit pattern is ``k``.
    """
    full_lo, full_hi = qrange(bits)
    lo = full_lo if lo is None else lo
    hi = full_hi if hi is None else hi
    n = 1 << bits
    q = np.arange(n, dtype=np.int64)
    q = np.where(q >= n // 2, q - n, q)  # the input value of each bit pattern
    x = q.astype(np.float64) * in_scale
    if act.slope is not None:
        slope = np.asarray(act.slope, dtype=np.float64).reshape(-1, 1)
        y = np.where(x >= 0, x, slope * x)
    else:
        y = FUNCTIONS[act.function](x, act.alpha, act.beta)[None, :]
    return np.clip(np.rint(y / out_scale), lo, hi).astype(np.int64)
