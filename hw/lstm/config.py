"""Parameters, fixed-point formats, tables and descriptor format of the LSTM core.

Pure Python (no numpy): shared by the RTL generator, the golden model and the compiler.

Number formats (fixed by the hardware; all signed two's complement):

- activations ``x`` and ``h``: ``act_bits`` (16) integers; ``h`` is Q0.15, ``x`` has a
  per-layer power-of-two scale chosen by the compiler;
- weights: ``weight_bits`` (12) integers, stored with a ``index_bits`` (4) relative row
  index in one 16-bit CSC entry; the weights of ``x`` and of ``h`` are scaled so that
  both products land on the accumulator's scale ``2**-E``;
- gate accumulators: ``acc_bits`` (48), bias ``bias_bits`` (32) at the same scale;
- table input: ``TABLE_IN_BITS`` (12) bits, Q3.8 (``[-8, 8)``), taken from the gate sum by
  ``clamp(round_shift(acc + bias, gate_shift))``; table output Q0.15 (16 bits);
- cell state ``c``: ``CELL_BITS`` (24) bits, Q8.15.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass

__all__ = [
    "CELL_BITS",
    "CELL_FRAC",
    "DESC_BYTES",
    "DESC_WORDS",
    "EW_LATENCY",
    "HEADER_MAGIC",
    "KIND_LINEAR",
    "KIND_LSTM",
    "LAYER_FIELDS",
    "MV_LATENCY",
    "TABLE_IN_BITS",
    "TABLE_IN_FRAC",
    "TABLE_OUT_FRAC",
    "VERSION",
    "LstmArch",
    "pack_header",
    "pack_layer",
    "sigmoid_table",
    "tanh_table",
]

TABLE_IN_BITS = 12
TABLE_IN_FRAC = 8
TABLE_OUT_FRAC = 15
CELL_BITS = 24
CELL_FRAC = 15
H_FRAC = 15

#: ``b"LSTM"`` read as a little-endian 32-bit word.
HEADER_MAGIC = int.from_bytes(b"LSTM", "little")
#: 2: layer descriptors carry a ``kind`` (:data:`KIND_LSTM`, :data:`KIND_LINEAR`).
VERSION = 2
#: Header and each layer descriptor are 16 little-endian 32-bit words (64 bytes).
DESC_WORDS = 16
DESC_BYTES = 4 * DESC_WORDS
#: Fields of a layer descriptor, in word order (the remaining words are reserved, zero).
LAYER_FIELDS = ("input_size", "hidden", "steps", "entries", "gate_shift", "w_offset",
                "ptr_offset", "bias_offset", "x_offset", "h_offset", "kind")
#: Layer kinds. An LSTM layer: ``hidden`` units, columns ``[x; h]``. A linear layer
#: (``y_t = W x_t + b`` per time step, the Gemm / MatMul before or after an LSTM):
#: ``4 * hidden`` outputs (row ``r`` = output ``r``), columns ``x`` only, each output
#: ``clamp(round_shift(acc + bias, gate_shift))`` to 16 bits.
KIND_LSTM = 0
KIND_LINEAR = 1
#: Cycles of a time step beyond the matrix-vector decode (:func:`sim.lstm.mv_cycles`):
#: the pipeline tail and the hand-off to the element-wise unit (measured on the RTL).
MV_LATENCY = 5
#: Cycles of the element-wise phase beyond ``hidden`` (pipeline depth and hand-offs).
EW_LATENCY = 10


def _table(fn, lo, hi):
    out = []
    for i in range(1 << TABLE_IN_BITS):
        x = i - (1 << TABLE_IN_BITS) if i >= 1 << (TABLE_IN_BITS - 1) else i
        v = math.floor(fn(x / (1 << TABLE_IN_FRAC)) * (1 << TABLE_OUT_FRAC) + 0.5)
        out.append(max(lo, min(hi, v)))
    return out


def sigmoid_table():
    """Q0.15 sigmoid values, addressed by the two's-complement Q3.8 table input."""
    return _table(lambda x: 1.0 / (1.0 + math.exp(-x)), 0, (1 << TABLE_OUT_FRAC) - 1)


def tanh_table():
    """Q0.15 tanh values, addressed by the two's-complement Q3.8 table input."""
    lim = (1 << TABLE_OUT_FRAC) - 1
    return _table(math.tanh, -lim, lim)


@dataclass(frozen=True)
class LstmArch:
    """One Descartes core.

    Parameters
    ----------
    n_pe : int
        Processing elements (4, 8, 16, 32 or 64): PE ``p`` owns the gate rows
        ``r = 4 * k + gate`` with ``r % n_pe == p``.
    weight_depth : int
        CSC entries per PE (power of two).
    max_cols : int
        Largest ``input_size + hidden`` (pointer memory depth, power of two).
    max_hidden, max_input : int
        Largest hidden and input sizes (buffer depths, powers of two).
    fifo_depth : int
        Activation FIFO depth of each PE (columns a PE may run ahead of the slowest).
    data_bits, addr_bits : int
        AXI4 master data and address widths.
    """
    n_pe: int = 8
    weight_depth: int = 4096
    max_cols: int = 256
    max_hidden: int = 128
    max_input: int = 128
    fifo_depth: int = 8
    act_bits: int = 16
    weight_bits: int = 12
    index_bits: int = 4
    acc_bits: int = 48
    bias_bits: int = 32
    data_bits: int = 64
    addr_bits: int = 32
    clock_mhz: float = 200.0

    def __post_init__(self):
        def p2(name, lo, hi):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi or v & (v - 1):
                raise ValueError(f"LstmArch.{name} must be a power of two in [{lo}, {hi}], "
                                 f"not {v!r}")
        if not isinstance(self.n_pe, int) or self.n_pe not in (4, 8, 16, 32, 64):
            raise ValueError(f"LstmArch.n_pe must be a power of two in [4, 64], not {self.n_pe!r}")
        p2("weight_depth", 16, 1 << 16)
        p2("max_cols", 8, 1 << 16)
        p2("max_hidden", 4, 1 << 14)
        p2("max_input", 4, 1 << 14)
        p2("fifo_depth", 2, 64)
        if self.max_cols < 2:
            raise ValueError("LstmArch.max_cols too small")
        if (self.act_bits, self.weight_bits, self.index_bits) != (16, 12, 4):
            raise ValueError("LstmArch: the CSC entry is 12-bit weight + 4-bit index and "
                             "activations are 16-bit (act_bits=16, weight_bits=12, "
                             "index_bits=4)")
        if self.data_bits != 64:
            raise ValueError(f"LstmArch.data_bits must be 64, not {self.data_bits!r}")
        if not 32 <= self.addr_bits <= 64:
            raise ValueError(f"LstmArch.addr_bits must be in [32, 64], not {self.addr_bits!r}")

    @property
    def acc_depth(self):
        """Rows of each PE's activation (accumulator) buffer: ``4 * max_hidden / n_pe``."""
        return max(1, 4 * self.max_hidden // self.n_pe)

    @property
    def groups(self):
        """PE groups of four: hidden unit ``k`` lives in group ``k % groups``."""
        return self.n_pe // 4

    @property
    def config_hash(self) -> int:
        """32-bit hash of the configuration (checked against the descriptor header)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return zlib.crc32(text.encode())

    def to_json(self) -> str:
        return json.dumps({"kind": "lstm", **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> LstmArch:
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown LstmArch fields: {', '.join(unknown)}")
        return cls(**d)


def pack_header(arch: LstmArch, n_layers: int) -> bytes:
    words = [HEADER_MAGIC, VERSION, n_layers, arch.config_hash] + [0] * (DESC_WORDS - 4)
    return struct.pack(f"<{DESC_WORDS}I", *words)


def pack_layer(fields: dict) -> bytes:
    words = [int(fields[name]) for name in LAYER_FIELDS]
    words += [0] * (DESC_WORDS - len(words))
    return struct.pack(f"<{DESC_WORDS}I", *words)
