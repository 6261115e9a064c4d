"""Storage codecs: how activations, weights and per-channel parameters are held in the
on-chip buffers and in DDR.

:func:`decode_activations`, :func:`encode_activations`, :func:`encode_weights`,
:func:`decode_weights` and :data:`PBUF_RECORD` are the one definition of the element
formats the instruction-set simulator reads and the compiler's weight image writes; the
parameter record's fields and offsets come from :data:`hw.isa.PBUF_RECORD_LAYOUT`.
"""

from __future__ import annotations

import numpy as np

from hw import weight_codes
from hw.arch import ArchConfig
from hw.isa import (
    PBUF_ENTRY_BYTES,
    element_bytes,
    pbuf_record_fields,
    qrange,
    weight_element_bytes,
)

__all__ = [
    "PBUF_RECORD",
    "decode_activations",
    "decode_weights",
    "encode_activations",
    "encode_weights",
]


def _record_dtype() -> np.dtype:
    fields = pbuf_record_fields()
    return np.dtype({"names": [name for name, *_ in fields],
                     "formats": [f"<{'i' if signed else 'u'}{size}"
                                 for _, _, size, signed in fields],
                     "offsets": [offset for _, offset, _, _ in fields],
                     "itemsize": PBUF_ENTRY_BYTES})


#: A PBUF record (:data:`hw.isa.PBUF_RECORD_LAYOUT`) as a numpy structured type.
PBUF_RECORD = _record_dtype()


# Element codecs -------------------------------------------------------------------------

def decode_activations(raw: np.ndarray, bits: int) -> np.ndarray:
    """Bytes (uint8) of ``element_bytes(bits)``-byte elements -> int64 values.

    An element's value is its low ``bits`` bits, two's complement, as the core's
    ``bits``-wide datapath reads it: the padding bits above them (``bits`` < 16 in
    two-byte elements) are ignored, so bytes that no encoder wrote (e.g. a 12-bit
    element stored as 0x0800) read as ``bits``-bit values (-2048), never beyond
    ``qrange(bits)``."""
    if element_bytes(bits) == 1:
        values = raw.view(np.int8).astype(np.int64)
    else:
        values = raw.view("<i2").astype(np.int64)
    pad = 8 * element_bytes(bits) - bits
    if pad:
        half = 1 << (bits - 1)
        values = ((values + half) & ((1 << bits) - 1)) - half
    return values


def encode_activations(values: np.ndarray, bits: int) -> np.ndarray:
    """int values (already within ``bits``) -> their bytes (uint8, flat)."""
    values = np.asarray(values).reshape(-1)
    if element_bytes(bits) == 1:
        return values.astype(np.int8).view(np.uint8)
    return values.astype("<i2").view(np.uint8)


def _code_tables(arch: ArchConfig):
    """Code width and the value of every code (0 for bit patterns that are no code)."""
    width = weight_codes.code_width(arch.weight_scheme, arch.weight_bits, arch.pot_exp_bits)
    values = np.zeros(1 << width, dtype=np.int64)
    for code in range(1 << width):
        try:
            values[code] = weight_codes.decode(arch.weight_scheme, code, arch.weight_bits,
                                               arch.pot_exp_bits)
        except ValueError:
            pass
    return width, values


_TABLES: dict = {}


def _tables(arch):
    key = (arch.weight_scheme, arch.weight_bits, arch.pot_exp_bits)
    if key not in _TABLES:
        _TABLES[key] = _code_tables(arch)
    return _TABLES[key]


def encode_weights(values: np.ndarray, arch: ArchConfig) -> np.ndarray:
    """Integer weights -> stored codes of ``arch``'s scheme, as bytes (uint8, flat).

    Raises ``ValueError`` if a value has no code in the scheme.
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    width = _tables(arch)[0]
    if arch.weight_scheme == "uniform":
        lo, hi = qrange(width)
        if values.size and (values.min() < lo or values.max() > hi):
            raise ValueError(f"weights must fit {width} signed bits, not range "
                             f"[{values.min()}, {values.max()}]")
        codes = values & ((1 << width) - 1)
    else:
        uniq, inverse = np.unique(values, return_inverse=True)
        table_codes = []
        for v in uniq.tolist():
            try:
                table_codes.append(weight_codes.encode(arch.weight_scheme, v, arch.weight_bits,
                                                       arch.pot_exp_bits))
            except ValueError:
                raise ValueError(f"weight {v} has no {arch.weight_scheme} code with "
                                 f"pot_exp_bits={arch.pot_exp_bits}") from None
        codes = np.array(table_codes, dtype=np.int64)[inverse.reshape(-1)]
    if weight_element_bytes(arch) == 1:
        return codes.astype(np.uint8)
    return codes.astype("<u2").view(np.uint8)


def decode_weights(raw: np.ndarray, arch: ArchConfig) -> np.ndarray:
    """Stored weight bytes (uint8) -> int64 weight values."""
    width, table = _tables(arch)
    codes = raw if weight_element_bytes(arch) == 1 else raw.view("<u2")
    return table[codes.astype(np.int64) & ((1 << width) - 1)]

