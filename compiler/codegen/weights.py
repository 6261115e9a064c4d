"""The weight image (``weights.bin``): every layer's weights, PBUF records and constants.

Weights of a layer are stored in the order its engine's WBUF expects
(``docs/isa.md``: CONV ``m, c, kh, kw``; DEPTHWISE ``c, kh, kw``; POINTWISE and
fully connected ``m, c``), which for every engine is the ONNX layout, so the
weights of an output-channel tile are one contiguous slice. PBUF records follow,
one 16-byte record per output channel (:func:`hw.isa.pack_pbuf_entry`).
"""

from __future__ import annotations

import numpy as np

from compiler.errors import QuantizationError
from hw.arch import ArchConfig
from sim.golden import qrange
from sim.iss import PBUF_RECORD, encode_weights

__all__ = ["ALIGN", "WeightImage"]

#: Alignment of every block in the image (one AXI burst line on the widest bus).
ALIGN = 64


class WeightImage:
    """An append-only byte image with aligned blocks.

    Parameters
    ----------
    arch : ArchConfig
    """

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        self._chunks: list[bytes] = []
        self.size = 0
        self.blocks: list[dict] = []

    def _append(self, data: bytes, what: str) -> int:
        pad = -self.size % ALIGN
        if pad:
            self._chunks.append(bytes(pad))
            self.size += pad
        offset = self.size
        self._chunks.append(bytes(data))
        self.size += len(data)
        self.blocks.append({"what": what, "offset": offset, "bytes": len(data)})
        return offset

    def add_weights(self, layer: str, values: np.ndarray) -> int:
        """Append integer weights (already in WBUF order); returns their offset."""
        try:
            data = encode_weights(values, self.arch)
        except ValueError as e:
            raise QuantizationError(
                f"Layer {layer!r}: weights cannot be stored with weight_scheme="
                f"{self.arch.weight_scheme!r}, weight_bits={self.arch.weight_bits}: {e}; "
                f"quantize the model for this arch") from None
        return self._append(data.tobytes(), f"{layer}.weights")

    def add_params(self, layer: str, bias, mult, shift) -> int:
        """Append one PBUF record per output channel; returns their offset."""
        arch = self.arch
        bias = np.asarray(bias, dtype=np.int64)
        mult = np.broadcast_to(np.asarray(mult, dtype=np.int64), bias.shape)
        shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), bias.shape)
        lo, hi = qrange(arch.bias_bits)
        checks = (("bias", bias, lo, hi, "bias_bits"),
                  ("multiplier", mult, 0, (1 << arch.mult_bits) - 1, "mult_bits"),
                  ("shift", shift, 0, (1 << arch.shift_bits) - 1, "shift_bits"))
        for what, arr, a, b, param in checks:
            if arr.size and (arr.min() < a or arr.max() > b):
                raise QuantizationError(
                    f"Layer {layer!r}: {what} range [{arr.min()}, {arr.max()}] does not fit "
                    f"{param} ([{a}, {b}]); quantize the model for this arch")
        records = np.zeros(bias.size, dtype=PBUF_RECORD)
        records["bias"] = bias
        records["mult"] = mult
        records["shift"] = shift
        return self._append(records.tobytes(), f"{layer}.params")

    def add_bytes(self, what: str, data: bytes) -> int:
        """Append a constant region (an activation table, a row of ones); returns its
        offset."""
        return self._append(bytes(data), what)

    def add_zeros(self, what: str, size: int) -> int:
        """Append a zero-filled constant region (e.g. a padded tensor's border)."""
        return self._append(bytes(size), what)

    def tobytes(self) -> bytes:
        return b"".join(self._chunks)
