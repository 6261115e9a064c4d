"""Quantization, load-balance-aware pruning and CSC encoding of LSTM layers.

Gate rows are interleaved for the element-wise unit: ONNX row ``g * H + k`` (gate ``g``
of hidden unit ``k``) becomes row ``r = 4 * k + g``, owned by PE ``r % N`` at local row
``r // N``. The matrix is ``[W | R]`` (columns: the input, then the previous hidden state).
A linear layer's row ``r`` is output ``r`` (its outputs padded with zero rows to a multiple
of 4 and of ``N``); its columns are the input alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler import errors
from hw.lstm.config import H_FRAC, TABLE_IN_FRAC, LstmArch

__all__ = ["EncodedLayer", "QuantLayer", "csc_decode", "csc_encode", "linear_groups",
           "prune_mask", "quantize_layer", "quantize_linear"]

_WMAX = 2047
_GAP_MAX = 15


@dataclass
class QuantLayer:
    name: str
    input_size: int
    hidden: int
    x_frac: int
    acc_frac: int
    gate_shift: int
    wx: np.ndarray   # (4H, I) int64, pruned
    wh: np.ndarray   # (4H, H) int64, pruned
    bias: np.ndarray  # (4H,) int64
    mask: np.ndarray  # (4H, I + H) bool: kept weights (ONNX row order)
    kind: str = "lstm"   # "linear": hidden = row groups of 4, wh empty, outputs in rows
    out_frac: int = 15   # fraction bits of the layer's 16-bit outputs
    out_size: int = 0    # a linear layer's outputs before padding

    @property
    def width(self):
        """Values the layer writes per time step."""
        return 4 * self.hidden if self.kind == "linear" else self.hidden


@dataclass
class EncodedLayer:
    entries: np.ndarray   # (N, E) uint16 CSC entries, padded to E per PE
    pointers: np.ndarray  # (N, C) uint16 end pointer of each column
    counts: np.ndarray    # (N, C) entries (padding included) of each column
    nonzeros: np.ndarray  # (N,) kept weights per PE
    padding: np.ndarray   # (N,) padding entries per PE


def _perm(hidden, kind="lstm"):
    """``perm[r] =`` ONNX row of hardware row ``r = 4 * k + g`` (a linear layer: ``r``)."""
    r = np.arange(4 * hidden)
    return r if kind == "linear" else (r % 4) * hidden + r // 4


def linear_groups(out, n_pe):
    """Row groups of 4 of a linear layer with ``out`` outputs (a multiple of ``n_pe / 4``)."""
    step = max(1, n_pe // 4)
    groups = -(-out // 4)
    return -(-groups // step) * step


def prune_mask(w_cat, density, n_pe, *, balanced=True, kind="lstm"):
    """Magnitude pruning of the ``(4H, C)`` float matrix to ``density``.

    ``balanced`` (load-balance-aware): every PE's submatrix keeps the same number of
    weights, its largest ones; otherwise the largest weights of the whole matrix are kept.
    """
    if not 0 < density <= 1:
        raise errors.QuantizationError(f"density must be in (0, 1], not {density!r}")
    rows, _cols = w_cat.shape
    if density == 1:
        return np.ones_like(w_cat, dtype=bool)
    perm = _perm(rows // 4, kind)
    hw_rows = w_cat[perm]
    mask_hw = np.zeros(hw_rows.shape, dtype=bool)
    mag = np.abs(hw_rows)
    if balanced:
        for p in range(n_pe):
            sub = mag[p::n_pe]
            keep = max(1, round(density * sub.size))
            flat = np.argsort(-sub, axis=None, kind="stable")[:keep]
            m = np.zeros(sub.size, dtype=bool)
            m[flat] = True
            mask_hw[p::n_pe] = m.reshape(sub.shape)
    else:
        keep = max(1, round(density * mag.size))
        flat = np.argsort(-mag, axis=None, kind="stable")[:keep]
        m = np.zeros(mag.size, dtype=bool)
        m[flat] = True
        mask_hw = m.reshape(mag.shape)
    mask = np.zeros_like(mask_hw)
    mask[perm] = mask_hw
    return mask


def _exp_for(maxabs, limit):
    return 40 if maxabs == 0 else math.floor(math.log2(limit / maxabs))


def quantize_layer(spec, x_frac, density, n_pe, *, balanced=True, acc_bits=48) -> QuantLayer:
    """12-bit weights on a common accumulator scale ``2**-E`` for both products."""
    w_cat = np.concatenate([spec.w, spec.r], axis=1)
    mask = prune_mask(w_cat, density, n_pe, balanced=balanced)
    w = np.where(mask[:, :spec.input_size], spec.w, 0.0)
    r = np.where(mask[:, spec.input_size:], spec.r, 0.0)
    e = min(x_frac + _exp_for(np.abs(w).max(), _WMAX), H_FRAC + _exp_for(np.abs(r).max(), _WMAX),
            _exp_for(np.abs(spec.b).max(), 2**31 - 1), 40)
    shift = e - TABLE_IN_FRAC
    if shift < 1:
        raise errors.QuantizationError(
            f"LSTM {spec.name!r}: the weights are too large for 12 bits at this input scale "
            f"(accumulator fraction {e} < {TABLE_IN_FRAC + 1}); scale the input down")
    wx = np.clip(np.round(w * 2.0 ** (e - x_frac)), -_WMAX, _WMAX).astype(np.int64)
    wh = np.clip(np.round(r * 2.0 ** (e - H_FRAC)), -_WMAX, _WMAX).astype(np.int64)
    bias = np.round(spec.b * 2.0 ** e).astype(np.int64)
    bound = (np.abs(wx).sum(axis=1) + np.abs(wh).sum(axis=1)) * 32768 + np.abs(bias)
    if bound.max() + (1 << shift) >= 1 << (acc_bits - 1):
        raise errors.QuantizationError(
            f"LSTM {spec.name!r}: a gate sum could overflow the {acc_bits}-bit accumulator")
    return QuantLayer(spec.name, spec.input_size, spec.hidden, x_frac, e, shift, wx, wh, bias,
                      mask)


def quantize_linear(spec, x_frac, out_frac, density, n_pe, *, balanced=True,
                    acc_bits=48) -> QuantLayer:
    """A linear layer: 12-bit weights at ``2**-(E - x_frac)``, bias at ``2**-E``, outputs
    ``clamp(round_shift(acc + bias, E - out_frac))`` (16 bits at ``2**-out_frac``)."""
    groups = linear_groups(spec.out, n_pe)
    rows = 4 * groups
    w = np.zeros((rows, spec.input_size))
    w[:spec.out] = spec.w
    b = np.zeros(rows)
    b[:spec.out] = spec.b
    mask = prune_mask(w, density, n_pe, balanced=balanced, kind="linear")
    mask[spec.out:] = False
    w = np.where(mask, w, 0.0)
    e = min(x_frac + _exp_for(np.abs(w).max(), _WMAX), _exp_for(np.abs(b).max(), 2**31 - 1),
            40)
    shift = e - out_frac
    if shift < 1:
        raise errors.QuantizationError(
            f"Linear {spec.name!r}: the weights are too large for 12 bits at this input scale "
            f"(accumulator fraction {e} <= output fraction {out_frac})")
    wx = np.clip(np.round(w * 2.0 ** (e - x_frac)), -_WMAX, _WMAX).astype(np.int64)
    bias = np.round(b * 2.0 ** e).astype(np.int64)
    bound = np.abs(wx).sum(axis=1) * 32768 + np.abs(bias)
    if bound.max() + (1 << shift) >= 1 << (acc_bits - 1):
        raise errors.QuantizationError(
            f"Linear {spec.name!r}: a sum could overflow the {acc_bits}-bit accumulator")
    return QuantLayer(spec.name, spec.input_size, groups, x_frac, e, shift, wx,
                      np.zeros((rows, 0), dtype=np.int64), bias, mask, kind="linear",
                      out_frac=out_frac, out_size=spec.out)


def csc_encode(q: QuantLayer, arch: LstmArch) -> EncodedLayer:
    """Per-PE CSC: entry = 12-bit weight | 4-bit gap << 12, padding ``(0, 15)`` for gaps > 15."""
    n = arch.n_pe
    hidden = q.hidden
    if (4 * hidden) % n:
        raise errors.MappingError(f"LSTM {q.name!r}: hidden size {hidden} times 4 is not a "
                                  f"multiple of {n} PEs")
    perm = _perm(hidden, q.kind)
    w_cat = np.concatenate([q.wx, q.wh], axis=1)[perm]
    m_cat = q.mask[perm]
    cols = w_cat.shape[1]
    per_pe, ptrs, counts, nnz, pads = [], [], [], [], []
    for p in range(n):
        sub_w, sub_m = w_cat[p::n], m_cat[p::n]
        ent, ptr, cnt = [], [], []
        pad = 0
        for j in range(cols):
            prev = -1
            before = len(ent)
            for row in np.flatnonzero(sub_m[:, j]):
                gap = int(row) - prev - 1
                while gap > _GAP_MAX:
                    ent.append(_GAP_MAX << 12)
                    pad += 1
                    gap -= _GAP_MAX + 1
                ent.append((int(sub_w[row, j]) & 0xFFF) | (gap << 12))
                prev = int(row)
            ptr.append(len(ent))
            cnt.append(len(ent) - before)
        per_pe.append(ent)
        ptrs.append(ptr)
        counts.append(cnt)
        nnz.append(int(sub_m.sum()))
        pads.append(pad)
    e = max(1, max(len(x) for x in per_pe))
    if e > arch.weight_depth or e > 0xFFFF:
        raise errors.MappingError(
            f"LSTM {q.name!r}: {e} CSC entries per PE exceed the weight memory "
            f"(weight_depth {arch.weight_depth}); raise weight_depth or n_pe, or prune more")
    entries = np.zeros((n, e), dtype=np.uint16)
    for p, ent in enumerate(per_pe):
        entries[p, :len(ent)] = ent
    return EncodedLayer(entries, np.array(ptrs, dtype=np.uint16),
                        np.array(counts, dtype=np.int64), np.array(nnz), np.array(pads))


def csc_decode(enc: EncodedLayer, hidden: int, n_pe: int, kind: str = "lstm") -> np.ndarray:
    """The dense ``(4H, C)`` int matrix (ONNX row order) held by the CSC arrays."""
    cols = enc.pointers.shape[1]
    out = np.zeros((4 * hidden, cols), dtype=np.int64)
    perm = _perm(hidden, kind)
    for p in range(n_pe):
        start = 0
        for j in range(cols):
            row = -1
            for e in enc.entries[p, start:int(enc.pointers[p, j])]:
                e = int(e)
                row = row + 1 + (e >> 12)
                v = e & 0xFFF
                v = v - 0x1000 if v & 0x800 else v
                if v:
                    out[perm[row * n_pe + p], j] = v
            start = int(enc.pointers[p, j])
    return out
