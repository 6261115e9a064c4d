"""Integer golden model of the Descartes LSTM core, exactly as the hardware computes it.

Per time step and hidden unit ``k`` (ONNX gate order i, o, f, c):

- gate sums ``s = W_x[g] . x_t + W_h[g] . h_{t-1} + b[g]`` (exact integers; the sparse
  engine adds the same products in another order, which changes nothing);
- table inputs ``clamp(round_shift(s, gate_shift), -2048, 2047)`` (Q3.8);
- ``i, o, f = sigmoid_table[...]``, ``g = tanh_table[...]`` (Q0.15);
- ``c_t = clamp(round_shift(f * c_{t-1}, 15) + round_shift(i * g, 15))`` (24-bit Q8.15);
- ``h_t = clamp(round_shift(o * tanh_table[clamp(round_shift(c_t, 7))], 15))`` (16-bit Q0.15).

:func:`lstm_cycles` is the cycle model of the core (see ``docs/lstm.md``), validated
against the RTL cycle stamps.
"""

from __future__ import annotations

import numpy as np

from hw.lstm.config import (
    CELL_BITS,
    CELL_FRAC,
    EW_LATENCY,
    MV_LATENCY,
    TABLE_IN_BITS,
    TABLE_IN_FRAC,
    TABLE_OUT_FRAC,
    sigmoid_table,
    tanh_table,
)
from sim.golden import round_shift

__all__ = ["SIGMOID", "TANH", "layer_forward", "linear_layer", "lstm_layer", "lstm_stack",
           "mv_cycles", "step_cycles", "table_index"]

SIGMOID = np.array(sigmoid_table(), dtype=np.int64)
TANH = np.array(tanh_table(), dtype=np.int64)
_TLO, _THI = -(1 << (TABLE_IN_BITS - 1)), (1 << (TABLE_IN_BITS - 1)) - 1
_CLO, _CHI = -(1 << (CELL_BITS - 1)), (1 << (CELL_BITS - 1)) - 1


def table_index(x, shift):
    """Table address of ``x`` shifted right by ``shift`` (rounded, clamped to 10 bits)."""
    i = np.clip(round_shift(np.asarray(x, dtype=np.int64), shift), _TLO, _THI)
    return i & ((1 << TABLE_IN_BITS) - 1)


def lstm_layer(x_seq, wx, wh, bias, gate_shift, *, return_cell=False):
    """One forward LSTM layer on integers.

    Parameters
    ----------
    x_seq : (T, I) int
        Input sequence (16-bit integers).
    wx : (4H, I) int, wh : (4H, H) int
        Quantized (pruned) weights, ONNX gate order i, o, f, c.
    bias : (4H,) int
        ``Wb + Rb`` at the accumulator scale.
    gate_shift : int
        Right shift from the accumulator scale to the Q3.8 table input.

    Returns
    -------
    (T, H) int64 hidden states (Q0.15), and the (T, H) cell states when ``return_cell``.
    """
    x_seq = np.asarray(x_seq, dtype=np.int64)
    wx = np.asarray(wx, dtype=np.int64)
    wh = np.asarray(wh, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    hidden = wh.shape[1]
    h = np.zeros(hidden, dtype=np.int64)
    c = np.zeros(hidden, dtype=np.int64)
    hs, cs = [], []
    for x in x_seq:
        s = wx @ x + wh @ h + bias
        si, so, sf, sg = (s[g * hidden:(g + 1) * hidden] for g in range(4))
        ti = SIGMOID[table_index(si, gate_shift)]
        to = SIGMOID[table_index(so, gate_shift)]
        tf = SIGMOID[table_index(sf, gate_shift)]
        tg = TANH[table_index(sg, gate_shift)]
        c = np.clip(round_shift(tf * c, TABLE_OUT_FRAC) + round_shift(ti * tg, TABLE_OUT_FRAC),
                    _CLO, _CHI)
        tc = TANH[table_index(c, CELL_FRAC - TABLE_IN_FRAC)]
        h = np.clip(round_shift(to * tc, TABLE_OUT_FRAC), -(1 << 15), (1 << 15) - 1)
        hs.append(h)
        cs.append(c)
    hs = np.array(hs, dtype=np.int64).reshape(len(x_seq), hidden)
    if return_cell:
        return hs, np.array(cs, dtype=np.int64).reshape(len(x_seq), hidden)
    return hs


def linear_layer(x_seq, w, bias, shift):
    """A linear layer on integers, per time step: ``clamp(round_shift(w @ x + bias, shift))``
    to 16 bits. ``w`` is ``(rows, I)`` (row ``r`` = output ``r``), ``bias`` ``(rows,)``."""
    x_seq = np.asarray(x_seq, dtype=np.int64)
    acc = x_seq @ np.asarray(w, dtype=np.int64).T + np.asarray(bias, dtype=np.int64)
    return np.clip(round_shift(acc, shift), -(1 << 15), (1 << 15) - 1)


def layer_forward(x_seq, layer):
    """One layer (a dict with ``wx, wh, bias, gate_shift`` and ``kind``: ``"lstm"`` by
    default, or ``"linear"``) on a ``(T, I)`` integer sequence."""
    if layer.get("kind", "lstm") == "linear":
        return linear_layer(x_seq, layer["wx"], layer["bias"], layer["gate_shift"])
    return lstm_layer(x_seq, layer["wx"], layer["wh"], layer["bias"], layer["gate_shift"])


def lstm_stack(x_seq, layers):
    """Run stacked layers (:func:`layer_forward`); the output sequence of each layer is
    the input of the next. Returns every layer's output."""
    outs = []
    for layer in layers:
        x_seq = layer_forward(x_seq, layer)
        outs.append(x_seq)
    return outs


def mv_cycles(counts, fifo_depth):
    """Cycles of the sparse matrix-vector phase, from the RTL's per-cycle behaviour.

    ``counts`` is an (N, C) array: CSC entries (padding included) of each PE and
    column. A broadcaster offers one column per cycle to every PE's activation FIFO
    (``fifo_depth`` entries) when all of them have room; a PE decodes one entry per
    cycle (one cycle for an empty column). Returns ``(cycles, busy)`` with ``busy``
    the decode cycles of each PE.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n, cols = counts.shape
    work = np.maximum(counts, 1)
    busy = work.sum(axis=1)
    # Column j enters the FIFOs at cycle push[j]; PE p starts it at max(push, its finish of
    # column j - 1) and needs work[p, j] cycles; FIFO room frees when a column is popped.
    push = np.zeros(cols, dtype=np.int64)
    finish = np.zeros((n, cols), dtype=np.int64)
    prev_finish = np.zeros(n, dtype=np.int64)
    t_offer = 1  # the first column is read from the activation buffer in cycle 0
    for j in range(cols):
        t = t_offer
        if j >= fifo_depth:
            # room in every FIFO: the column j - depth has been popped (pop at its last
            # decode cycle, room visible the cycle after)
            t = max(t, int(finish[:, j - fifo_depth].max()))
        push[j] = t
        start = np.maximum(prev_finish, t + 1)
        prev_finish = start + work[:, j]
        finish[:, j] = prev_finish
        t_offer = t + 1
    return int(prev_finish.max()), busy


def step_cycles(counts, fifo_depth, hidden):
    """Cycles of one time step: ``(matrix-vector phase, element-wise phase)``."""
    mv, _ = mv_cycles(counts, fifo_depth)
    return mv + MV_LATENCY, hidden + EW_LATENCY
