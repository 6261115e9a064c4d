"""The ConvForge instruction set: the one definition of opcodes, fields and binary formats.

The compiler's encoder, the instruction-set simulator's decoder and the SEML core's
hardware decoder all read this module; ``docs/isa.md`` explains the semantics.

Every instruction is one 512-bit (64-byte) little-endian word with the opcode in the
low byte. Each format is a :class:`amaranth.lib.data.StructLayout` padded to
:data:`INSTR_BITS`; :data:`INSTRUCTION` overlays them as a
:class:`~amaranth.lib.data.UnionLayout` so that a decoder views one fetched word
through every format at once. :func:`encode_instruction` / :func:`decode_instruction`
are the pure-Python encoder and decoder over the same layouts (offsets and widths
are read from the layouts, never restated).

A program binary (``program.bin``) is a 64-byte :class:`ProgramHeader` followed by
the instruction words; :func:`parse_program` checks magic, version, arch hash, sizes
and the CRC-32 and raises :class:`ProgramFormatError` on any mismatch. The header and
the per-channel parameter record are layouts too (:data:`HEADER_LAYOUT`,
:data:`PBUF_RECORD_LAYOUT`), packed and parsed from their offsets.

The numeric limits shared by the instruction set, the hardware and the compiler are
defined once at the end of this module (:func:`qrange`, :data:`MAX_SHIFT`,
:data:`CIN_TILES_MAX`, :data:`ENGINE_STRIDES`, :func:`window_out`).
"""

from __future__ import annotations

import numbers
import zlib
from dataclasses import dataclass

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from hw.weight_codes import code_width

__all__ = [
    "ADD_LAYOUT",
    "CIN_TILES_MAX",
    "COMPUTE_LAYOUT",
    "DMA_LAYOUT",
    "END_LAYOUT",
    "ENGINE_STRIDES",
    "FORMATS",
    "HEADER_BYTES",
    "HEADER_LAYOUT",
    "INSTRUCTION",
    "INSTR_BITS",
    "INSTR_BYTES",
    "ISA_VERSION",
    "MAGIC",
    "MAX_SHIFT",
    "PBUF_ENTRY_BYTES",
    "PBUF_RECORD_LAYOUT",
    "SYNC_LAYOUT",
    "TABLE_MAX_BITS",
    "TILE_BITS",
    "Buffer",
    "EltOp",
    "Engine",
    "ErrorCode",
    "Instruction",
    "Opcode",
    "Pool",
    "ProgramFormatError",
    "ProgramHeader",
    "Unit",
    "build_program",
    "check_add",
    "compute_fields",
    "crc32",
    "decode_instruction",
    "element_bytes",
    "encode_instruction",
    "engine_kernel",
    "field_range",
    "header_field",
    "max_shift",
    "pack_pbuf_entry",
    "parse_program",
    "pbuf_record_fields",
    "qrange",
    "table_entries",
    "unpack_pbuf_entry",
    "weight_element_bytes",
    "window_out",
]

#: Version of the instruction set and binary formats; bumped on any incompatible change
#: (2: COMPUTE legality follows the limits of the streaming engines, ``docs/isa.md``).
ISA_VERSION = 2

#: Width of every instruction word.
INSTR_BITS = 512
INSTR_BYTES = INSTR_BITS // 8

#: Size of the ``program.bin`` header (one instruction word, so instructions stay aligned).
HEADER_BYTES = INSTR_BYTES

#: First four bytes of ``program.bin``.
MAGIC = b"CFPG"

#: Size of one per-output-channel parameter record (bias, multiplier, shift) in DDR.
PBUF_ENTRY_BYTES = 16


class Opcode(enum.Enum, shape=8):
    """Instruction opcodes (bits ``[7:0]`` of every word).

    Zero is deliberately not an opcode: executing zero-filled memory is an illegal
    instruction, not a silent no-op.
    """
    LOAD = 0x01     #: DMA DDR -> IBUF / WBUF / PBUF (2-D: rows x row_bytes, DDR stride)
    STORE = 0x02    #: DMA OBUF -> DDR (2-D)
    COMPUTE = 0x03  #: one output tile of a conv / depthwise / pointwise / pool layer
    ADD = 0x04      #: element-wise a*ma + b*mb, requantized (IBUF, IBUF -> OBUF)
    SYNC = 0x05     #: wait until the units in ``mask`` are idle
    END = 0x06      #: wait for all units, then stop and signal done


class Engine(enum.Enum, shape=4):
    """Engine selected by a COMPUTE instruction."""
    CONV = 0        #: k_h x k_w convolution (Pi x Po convolvers), fused 2x2 max pool
    DEPTHWISE = 1   #: k_h x k_w depthwise convolution (one filter per channel)
    POINTWISE = 2   #: 1x1 convolution; fully connected is the 1x1 case with H = W = 1
    POOL = 3        #: max / average pooling (no weights)


class Pool(enum.Enum, shape=4):
    """Pooling of a COMPUTE instruction.

    For the POOL engine it is the operation itself (``MAX`` or ``AVG``). For the CONV
    engine ``MAX`` fuses a 2x2 stride-2 max pool (``fpool_h = fpool_w = 2``) after
    requantization; DEPTHWISE and POINTWISE take ``NONE`` only, and ``AVG`` is illegal
    on every engine but POOL.
    """
    NONE = 0
    MAX = 1
    AVG = 2


class Buffer(enum.Enum, shape=4):
    """On-chip buffers (sizes from :class:`hw.arch.ArchConfig`)."""
    IBUF = 0  #: input feature-map tiles (bytes)
    WBUF = 1  #: weights of one output-channel tile (bytes)
    PBUF = 2  #: per-output-channel bias / multiplier / shift (entries)
    OBUF = 3  #: output feature-map tiles (bytes)
    TBUF = 4  #: activation table of the element-wise unit (:func:`table_entries` bytes)


class EltOp(enum.Enum, shape=4):
    """Operation of an ADD instruction (the element-wise unit)."""
    ADD = 0  #: ``a[i] * mult_a + b[i] * mult_b`` (residual add, concat, copy)
    MUL = 1  #: ``a[i] * b[i // group] * mult_a`` (``b`` broadcast over groups of ``a``)


class Unit(enum.Flag, shape=8):
    """Execution units, as named by the SYNC ``mask``."""
    LOAD = 1     #: DMA read channel (LOAD)
    COMPUTE = 2  #: engines (COMPUTE, ADD)
    STORE = 4    #: DMA write channel (STORE)


def engine_kernel(k_h: int, k_w: int) -> int:
    """Side ``K`` of the square kernel a CONV / DEPTHWISE engine runs a ``k_h x k_w`` one on.

    ``K`` is the smallest odd number at least ``max(k_h, k_w)``. The ``k_h x k_w``
    kernel sits in the top-left corner of the ``K x K`` one (zero taps elsewhere) and
    the bottom and right padding grow by ``K - k_h`` and ``K - k_w``, which gives the
    same windows; the engine therefore streams a frame of
    ``(in_h + pad_top + pad_bottom + K - k_h) x (in_w + pad_left + pad_right + K - k_w)``
    pixels.

    Raises
    ------
    ValueError
        If ``k_h`` or ``k_w`` is not a positive integer.
    """
    for name, value in (("k_h", k_h), ("k_w", k_w)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Kernel size {name} must be a positive integer, not {value!r}")
    return int(max(k_h, k_w)) | 1


def compute_fields(engine, in_hw, k, *, stride=(1, 1), pads=(0, 0, 0, 0), pool=None,
                   fpool=(1, 1), in_c=1, out_c=1, act=(-128, 127), **fields) -> dict:
    """Fields of a COMPUTE instruction whose ``out_h`` / ``out_w`` follow from its geometry.

    ``in_hw`` is ``(in_h, in_w)``, ``k`` ``(k_h, k_w)``, ``stride`` ``(stride_h,
    stride_w)``, ``pads`` ``(top, left, bottom, right)``, ``fpool`` the fused max-pool
    window (applied when ``pool`` is MAX on a weighted engine); ``fields`` adds or
    overrides any other field (addresses, ``mult``, ``shift``). The sizes are not checked:
    the result may describe an illegal instruction.
    """
    pool = Pool.NONE if pool is None else pool
    oh = window_out(in_hw[0], k[0], stride[0], pads[0], pads[2])
    ow = window_out(in_hw[1], k[1], stride[1], pads[1], pads[3])
    if pool is Pool.MAX and engine is not Engine.POOL:
        oh, ow = oh // fpool[0], ow // fpool[1]
    word = {"engine": engine, "pool": pool, "in_c": in_c, "out_c": out_c, "in_h": in_hw[0],
            "in_w": in_hw[1], "out_h": oh, "out_w": ow, "k_h": k[0], "k_w": k[1],
            "stride_h": stride[0], "stride_w": stride[1], "pad_top": pads[0],
            "pad_left": pads[1], "pad_bottom": pads[2], "pad_right": pads[3],
            "fpool_h": fpool[0], "fpool_w": fpool[1], "act_lo": act[0], "act_hi": act[1]}
    return {**word, **fields}


def _padded(fields: dict) -> data.StructLayout:
    layout = data.StructLayout(fields)
    if layout.size > INSTR_BITS:
        raise ValueError(f"Instruction format is {layout.size} bits, more than {INSTR_BITS}")
    return data.StructLayout({**fields, "reserved": unsigned(INSTR_BITS - layout.size)})


#: LOAD and STORE: a 2-D transfer of ``rows`` rows of ``row_bytes`` bytes. Row ``r``
#: comes from (goes to) DDR byte offset ``ddr_addr + r * ddr_stride`` and is packed
#: densely in the buffer from ``buf_addr``: on-chip byte ``buf_addr + r * row_bytes``.
#: For PBUF, ``row_bytes`` is a multiple of :data:`PBUF_ENTRY_BYTES` and ``buf_addr``
#: counts entries.
DMA_LAYOUT = _padded({
    "opcode": Opcode,
    "buffer": Buffer,
    "_pad0": unsigned(4),
    "_pad1": unsigned(16),
    "ddr_addr": unsigned(32),
    "ddr_stride": unsigned(32),
    "buf_addr": unsigned(32),
    "rows": unsigned(32),
    "row_bytes": unsigned(32),
})

#: COMPUTE: one output tile (``out_c`` channels x ``out_h`` rows x ``out_w`` columns)
#: from an input tile (``in_c`` x ``in_h`` x ``in_w``) in IBUF at ``ibuf_addr``,
#: weights in WBUF at ``wbuf_addr``, per-channel parameters in PBUF from entry
#: ``pbuf_addr``, result in OBUF at ``obuf_addr``. Pads are zero rows/columns added
#: around the tile; ``act_lo``/``act_hi`` clamp the requantized result. ``mult`` and
#: ``shift`` requantize the window sums of the POOL engine's ``AVG``.
COMPUTE_LAYOUT = _padded({
    "opcode": Opcode,
    "engine": Engine,
    "pool": Pool,
    "_pad0": unsigned(16),
    "in_c": unsigned(16),
    "out_c": unsigned(16),
    "in_h": unsigned(16),
    "in_w": unsigned(16),
    "out_h": unsigned(16),
    "out_w": unsigned(16),
    "k_h": unsigned(16),
    "k_w": unsigned(16),
    "stride_h": unsigned(8),
    "stride_w": unsigned(8),
    "pad_top": unsigned(8),
    "pad_left": unsigned(8),
    "pad_bottom": unsigned(8),
    "pad_right": unsigned(8),
    "fpool_h": unsigned(8),
    "fpool_w": unsigned(8),
    "act_lo": signed(16),
    "act_hi": signed(16),
    "mult": unsigned(32),
    "shift": unsigned(8),
    "_pad1": unsigned(24),
    "ibuf_addr": unsigned(32),
    "wbuf_addr": unsigned(32),
    "pbuf_addr": unsigned(32),
    "obuf_addr": unsigned(32),
})

#: ADD: ``count`` elements, ``out[i] = clamp(round_shift(a[i]*mult_a + b[i]*mult_b,
#: shift), act_lo, act_hi)`` with ``a``, ``b`` in IBUF and ``out`` in OBUF. With ``op``
#: MUL: ``out[i] = clamp(round_shift(a[i] * b[i // group] * mult_a, shift), ...)`` over
#: ``b_count`` elements of ``b`` (``mult_b`` 0); with ``table`` set, each result ``y`` is
#: then replaced by TBUF entry ``y mod 2**act_bits`` (the activation table).
ADD_LAYOUT = _padded({
    "opcode": Opcode,
    "shift": unsigned(8),
    "_pad0": unsigned(16),
    "a_addr": unsigned(32),
    "b_addr": unsigned(32),
    "out_addr": unsigned(32),
    "count": unsigned(32),
    "mult_a": unsigned(32),
    "mult_b": unsigned(32),
    "act_lo": signed(16),
    "act_hi": signed(16),
    "op": EltOp,
    "table": unsigned(1),
    "_pad1": unsigned(3),
    "b_count": unsigned(32),
    "group": unsigned(32),
})

#: SYNC: wait until every unit named in ``mask`` (:class:`Unit` bits) is idle.
SYNC_LAYOUT = _padded({
    "opcode": Opcode,
    "mask": Unit,
})

#: END: wait until all units are idle, then stop.
END_LAYOUT = _padded({
    "opcode": Opcode,
})

#: Format of each opcode.
FORMATS = {
    Opcode.LOAD: DMA_LAYOUT,
    Opcode.STORE: DMA_LAYOUT,
    Opcode.COMPUTE: COMPUTE_LAYOUT,
    Opcode.ADD: ADD_LAYOUT,
    Opcode.SYNC: SYNC_LAYOUT,
    Opcode.END: END_LAYOUT,
}

#: One instruction word seen through every format (opcode in the low byte of all).
INSTRUCTION = data.UnionLayout({
    "opcode": Opcode,
    "dma": DMA_LAYOUT,
    "compute": COMPUTE_LAYOUT,
    "add": ADD_LAYOUT,
    "sync": SYNC_LAYOUT,
    "end": END_LAYOUT,
})


def _shape_of(field):
    shape = field.shape
    if isinstance(shape, type) and issubclass(shape, (enum.Enum, enum.Flag)):
        return shape, shape.as_shape()
    return None, shape


class ErrorCode(enum.Enum, shape=8):
    """Why a run stopped early; reported by the core's status register and by the ISS."""
    NONE = 0
    BAD_MAGIC = 1           #: header magic is not ``b"CFPG"``
    BAD_VERSION = 2         #: header version / sizes differ from this ISA
    ARCH_MISMATCH = 3       #: header arch hash differs from the elaborated arch
    BAD_CRC = 4             #: CRC-32 of header and instructions does not match
    ILLEGAL_INSTRUCTION = 5  #: unknown opcode, illegal enum value, non-zero reserved bits
    BUFFER_RANGE = 6        #: an access falls outside an on-chip buffer or a field is out of range
    BUS_ERROR = 7           #: the AXI master received an error response


class ProgramFormatError(ValueError):
    """A program binary or instruction word is truncated, corrupted, or not for this arch.

    Parameters
    ----------
    message : str
    code : ErrorCode
        The error code the hardware reports for the same fault.

    The command line reports it as ``compiler.errors.ProgramFormatError``.
    """

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = ErrorCode.ILLEGAL_INSTRUCTION if code is None else code


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction: its opcode and the user fields of its format.

    Parameters
    ----------
    opcode : Opcode
    fields : dict
        Field name -> value (``int``, or the enum member for enum-shaped fields).
        Fields left out encode as zero.
    """
    opcode: Opcode
    fields: dict

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(f"{self.opcode.name} has no field {name!r}") from None

    def encode(self) -> bytes:
        return encode_instruction(self.opcode, **self.fields)


@dataclass(frozen=True)
class _Field:
    name: str
    offset: int
    width: int
    enum: type | None
    signed: bool
    lo: int
    hi: int
    reserved: bool


def _field_table(layout) -> tuple:
    table = []
    for name, field in layout:
        if name == "opcode":
            continue
        enum_type, shape = _shape_of(field)
        width = field.width
        lo, hi = ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if shape.signed
                  else (0, (1 << width) - 1))
        table.append(_Field(name, field.offset, width, enum_type, shape.signed, lo, hi,
                            name == "reserved" or name.startswith("_pad")))
    return tuple(table)


# Offsets and widths read once from the layouts: encoding and decoding are per word.
_TABLES = {opcode: _field_table(layout) for opcode, layout in FORMATS.items()}
_KNOWN = {opcode: frozenset(f.name for f in table if not f.reserved)
          for opcode, table in _TABLES.items()}


def _layout_table(layout) -> tuple:
    table = []
    for name, field in layout:
        shape = field.shape
        lo, hi = ((-(1 << (field.width - 1)), (1 << (field.width - 1)) - 1) if shape.signed
                  else (0, (1 << field.width) - 1))
        table.append(_Field(name, field.offset, field.width, None, shape.signed, lo, hi,
                            name == "reserved"))
    return tuple(table)


def _pack_layout(table, **fields) -> bytes:
    """Little-endian bytes of a plain (non-instruction) layout from its field values."""
    word = 0
    for f in table:
        if f.reserved:
            continue
        value = fields[f.name]
        if not f.lo <= value <= f.hi:
            raise ValueError(f"{f.name} must be between {f.lo} and {f.hi} ({f.width}-bit "
                             f"field), not {value!r}")
        word |= (value & ((1 << f.width) - 1)) << f.offset
    size = (table[-1].offset + table[-1].width) // 8
    return word.to_bytes(size, "little")


def _unpack_layout(table, blob: bytes) -> dict:
    value = int.from_bytes(blob, "little")
    fields = {}
    for f in table:
        if f.reserved:
            continue
        raw = (value >> f.offset) & ((1 << f.width) - 1)
        fields[f.name] = raw - (1 << f.width) if f.signed and raw >> (f.width - 1) else raw
    return fields


def field_range(opcode: Opcode, name: str) -> tuple[int, int]:
    """``(lo, hi)``: the values field ``name`` of ``opcode``'s format can hold."""
    for f in _TABLES[opcode]:
        if f.name == name and not f.reserved:
            return f.lo, f.hi
    raise ValueError(f"{opcode.name} has no field {name!r}")


def encode_instruction(opcode, **fields) -> bytes:
    """Encode one instruction to its 64-byte little-endian word.

    Raises
    ------
    TypeError
        If ``opcode`` is not an :class:`Opcode`.
    ValueError
        If a field is unknown for the format, or its value does not fit.
    """
    if not isinstance(opcode, Opcode):
        raise TypeError(f"Opcode must be an Opcode, not {opcode!r}")
    known = _KNOWN[opcode]
    if not known.issuperset(fields):
        unknown = sorted(set(fields) - known)
        names = [f.name for f in _TABLES[opcode] if not f.reserved]
        raise ValueError(
            f"{opcode.name} has no field(s) {', '.join(unknown)}; its fields are "
            f"{', '.join(names)}")
    word = opcode.value
    for f in _TABLES[opcode]:
        if f.reserved:
            continue
        value = fields.get(f.name, 0)
        if f.enum is not None:
            if isinstance(value, f.enum):
                value = value.value
            elif isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = f.enum(value).value
                except ValueError:
                    raise ValueError(
                        f"{opcode.name}.{f.name} must be a {f.enum.__name__}, "
                        f"not {value!r}") from None
            else:
                raise ValueError(
                    f"{opcode.name}.{f.name} must be a {f.enum.__name__}, not {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{opcode.name}.{f.name} must be an integer, not {value!r}")
        if not f.lo <= value <= f.hi:
            raise ValueError(
                f"{opcode.name}.{f.name} must be between {f.lo} and {f.hi} "
                f"({f.width}-bit field), not {value!r}")
        if value:
            word |= (value & ((1 << f.width) - 1)) << f.offset
    return word.to_bytes(INSTR_BYTES, "little")


def decode_instruction(word: bytes) -> Instruction:
    """Decode one 64-byte instruction word.

    Raises
    ------
    ProgramFormatError
        If the word has the wrong size, an unknown opcode, an out-of-range enum
        field, or non-zero reserved bits.
    """
    if len(word) != INSTR_BYTES:
        raise ProgramFormatError(
            f"An instruction word is {INSTR_BYTES} bytes, not {len(word)}")
    value = int.from_bytes(word, "little")
    try:
        opcode = Opcode(value & 0xFF)
    except ValueError:
        raise ProgramFormatError(f"Illegal opcode 0x{value & 0xFF:02x}") from None
    fields = {}
    for f in _TABLES[opcode]:
        raw = (value >> f.offset) & ((1 << f.width) - 1)
        if f.reserved:
            if raw:
                raise ProgramFormatError(
                    f"{opcode.name} has non-zero reserved bits at offset {f.offset}")
            continue
        if f.enum is not None:
            try:
                fields[f.name] = f.enum(raw)
            except ValueError:
                raise ProgramFormatError(
                    f"{opcode.name}.{f.name} has illegal value {raw}") from None
        elif f.signed and raw >> (f.width - 1):
            fields[f.name] = raw - (1 << f.width)
        else:
            fields[f.name] = raw
    return Instruction(opcode, fields)


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as ``zlib.crc32``."""
    return zlib.crc32(data, value) & 0xFFFFFFFF


#: The 64-byte program header as a 512-bit word (byte 0 in the low bits): the one
#: definition of its fields and offsets (:class:`ProgramHeader` documents them). The
#: encoder and parser here and the core's header check all read this layout.
HEADER_LAYOUT = data.StructLayout({
    "magic": unsigned(32),
    "version": unsigned(16),
    "header_bytes": unsigned(16),
    "arch_hash": unsigned(64),
    "instr_count": unsigned(32),
    "instr_bytes": unsigned(16),
    "flags": unsigned(16),
    "weights_offset": unsigned(32),
    "weights_bytes": unsigned(32),
    "weights_crc32": unsigned(32),
    "ddr_bytes": unsigned(32),
    "reserved": unsigned(160),
    "crc32": unsigned(32),
})
assert HEADER_LAYOUT.size == 8 * HEADER_BYTES
_HEADER_FIELDS = _layout_table(HEADER_LAYOUT)


def header_field(name: str) -> tuple[int, int]:
    """``(byte offset, bytes)`` of header field ``name`` (from :data:`HEADER_LAYOUT`)."""
    field = HEADER_LAYOUT[name]
    return field.offset // 8, field.width // 8


_MAGIC_VALUE = int.from_bytes(MAGIC, "little")


@dataclass(frozen=True)
class ProgramHeader:
    """The 64-byte header of ``program.bin`` (little endian).

    ============  ======  ====  ===============================================
    field         offset  size  meaning
    ============  ======  ====  ===============================================
    magic         0       4     ``b"CFPG"``
    version       4       2     :data:`ISA_VERSION`
    header_bytes  6       2     64
    arch_hash     8       8     :attr:`hw.arch.ArchConfig.config_hash`
    instr_count   16      4     number of instruction words that follow
    instr_bytes   20      2     64 (size of one instruction word)
    flags         22      2     0 (reserved)
    weights_offset 24     4     DDR offset where ``weights.bin`` is placed
    weights_bytes 28      4     size of ``weights.bin``
    weights_crc32 32      4     CRC-32 of ``weights.bin``
    ddr_bytes     36      4     size of the whole DDR image the program addresses
    (reserved)    40      20    zero
    crc32         60      4     CRC-32 of bytes 0..59 then all instruction words
    ============  ======  ====  ===============================================
    """
    arch_hash: int
    instr_count: int
    weights_offset: int = 0
    weights_bytes: int = 0
    weights_crc32: int = 0
    ddr_bytes: int = 0
    version: int = ISA_VERSION
    flags: int = 0


def build_program(arch_hash: int, instructions, *, weights_offset=0, weights=b"",
                  ddr_bytes=0, weights_bytes=None, weights_crc32=None) -> bytes:
    """Assemble ``program.bin``: header plus instruction words.

    ``instructions`` is an iterable of :class:`Instruction` or encoded words. The
    weight image's size and CRC are taken from ``weights``, or given directly
    (``weights_bytes``, ``weights_crc32``) when only the header is known.
    """
    words = b"".join(i.encode() if isinstance(i, Instruction) else bytes(i)
                     for i in instructions)
    if len(words) % INSTR_BYTES:
        raise ValueError(f"Instruction words must be {INSTR_BYTES} bytes each")
    if weights_bytes is None:
        weights_bytes = len(weights)
    if weights_crc32 is None:
        weights_crc32 = crc32(weights)
    head = _pack_layout(_HEADER_FIELDS, magic=_MAGIC_VALUE, version=ISA_VERSION,
                        header_bytes=HEADER_BYTES, arch_hash=arch_hash,
                        instr_count=len(words) // INSTR_BYTES, instr_bytes=INSTR_BYTES, flags=0,
                        weights_offset=weights_offset, weights_bytes=weights_bytes,
                        weights_crc32=weights_crc32, ddr_bytes=ddr_bytes, crc32=0)
    crc = crc32(words, crc32(head[:HEADER_BYTES - 4]))
    return head[:HEADER_BYTES - 4] + crc.to_bytes(4, "little") + words


def parse_program(blob: bytes, arch_hash: int | None = None):
    """Check and decode ``program.bin``.

    Parameters
    ----------
    blob : bytes
        The whole file.
    arch_hash : int or None
        ``config_hash`` of the arch that will run it; ``None`` skips the check.

    Returns
    -------
    (ProgramHeader, list of Instruction)

    Raises
    ------
    ProgramFormatError
        Truncated file, bad magic, unsupported version, arch mismatch, CRC mismatch,
        or an illegal instruction word.
    """
    blob = bytes(blob)
    if len(blob) < HEADER_BYTES:
        raise ProgramFormatError(
            f"Program is truncated: {len(blob)} bytes, shorter than its "
            f"{HEADER_BYTES}-byte header; recompile the model", ErrorCode.BAD_CRC)
    h = _unpack_layout(_HEADER_FIELDS, blob[:HEADER_BYTES])
    magic = h["magic"].to_bytes(4, "little")
    version, header_bytes, program_hash = h["version"], h["header_bytes"], h["arch_hash"]
    count, instr_bytes, flags = h["instr_count"], h["instr_bytes"], h["flags"]
    weights_offset, weights_bytes, weights_crc = (h["weights_offset"], h["weights_bytes"],
                                                  h["weights_crc32"])
    ddr_bytes, crc = h["ddr_bytes"], h["crc32"]
    if magic != MAGIC:
        raise ProgramFormatError(
            f"Not a ConvForge program: magic is {magic!r}, expected {MAGIC!r}",
            ErrorCode.BAD_MAGIC)
    if version != ISA_VERSION:
        raise ProgramFormatError(
            f"Program is for ISA version {version}, this tool implements version "
            f"{ISA_VERSION}; recompile the model", ErrorCode.BAD_VERSION)
    if header_bytes != HEADER_BYTES or instr_bytes != INSTR_BYTES:
        raise ProgramFormatError(
            f"Program header declares {header_bytes}-byte header and {instr_bytes}-byte "
            f"instructions, expected {HEADER_BYTES} and {INSTR_BYTES}", ErrorCode.BAD_VERSION)
    if arch_hash is not None and program_hash != arch_hash:
        raise ProgramFormatError(
            f"Program was compiled for arch hash 0x{program_hash:016x}, but this arch has "
            f"hash 0x{arch_hash:016x}; compile the model for this arch (its arch.json)",
            ErrorCode.ARCH_MISMATCH)
    expected = HEADER_BYTES + count * INSTR_BYTES
    if ddr_bytes and expected > ddr_bytes:
        raise ProgramFormatError(
            f"Program header declares {count} instructions ({expected} bytes), more than "
            f"the {ddr_bytes}-byte image it addresses; the header is corrupted, recompile "
            f"the model", ErrorCode.BAD_CRC)
    if len(blob) != expected:
        raise ProgramFormatError(
            f"Program is {'truncated' if len(blob) < expected else 'too long'}: "
            f"{len(blob)} bytes, its header declares {count} instructions "
            f"({expected} bytes); recompile the model", ErrorCode.BAD_CRC)
    actual = crc32(blob[HEADER_BYTES:], crc32(blob[:HEADER_BYTES - 4]))
    if actual != crc:
        raise ProgramFormatError(
            f"Program is corrupted: CRC-32 is 0x{actual:08x}, header says 0x{crc:08x}",
            ErrorCode.BAD_CRC)
    header = ProgramHeader(program_hash, count, weights_offset, weights_bytes, weights_crc,
                           ddr_bytes, version, flags)
    instructions = [decode_instruction(blob[HEADER_BYTES + i * INSTR_BYTES:
                                            HEADER_BYTES + (i + 1) * INSTR_BYTES])
                    for i in range(count)]
    return header, instructions


def element_bytes(bits: int) -> int:
    """Bytes per element in buffers and DDR: 1 up to 8 bits, else 2 (little endian)."""
    return 1 if bits <= 8 else 2


def weight_element_bytes(arch) -> int:
    """Bytes per stored weight (code) of ``arch`` (:class:`hw.arch.ArchConfig`)."""
    return element_bytes(code_width(arch.weight_scheme, arch.weight_bits, arch.pot_exp_bits))


#: One per-output-channel parameter record as stored in DDR and moved by LOAD into PBUF
#: (:data:`PBUF_ENTRY_BYTES`, little endian): the one definition of its fields and
#: offsets. The DMA keeps the low ``bias_bits`` / ``mult_bits`` / ``shift_bits`` of each
#: field (:class:`hw.arch.ArchConfig`); the compiler's weight image and the ISS read the
#: same layout (:func:`pbuf_record_fields`).
PBUF_RECORD_LAYOUT = data.StructLayout({
    "bias": signed(64),
    "mult": unsigned(32),
    "shift": unsigned(8),
    "reserved": unsigned(24),
})
assert PBUF_RECORD_LAYOUT.size == 8 * PBUF_ENTRY_BYTES
_PBUF_FIELDS = _layout_table(PBUF_RECORD_LAYOUT)


def pbuf_record_fields() -> list[tuple[str, int, int, bool]]:
    """``(name, byte offset, bytes, signed)`` of each field of :data:`PBUF_RECORD_LAYOUT`
    (the reserved bytes excluded)."""
    return [(f.name, f.offset // 8, f.width // 8, f.signed) for f in _PBUF_FIELDS
            if not f.reserved]


def pack_pbuf_entry(bias: int, mult: int, shift: int) -> bytes:
    """One 16-byte PBUF record: int64 bias, uint32 multiplier, uint8 shift, 3 zero bytes."""
    return _pack_layout(_PBUF_FIELDS, bias=bias, mult=mult, shift=shift)


def unpack_pbuf_entry(record: bytes):
    """Inverse of :func:`pack_pbuf_entry`: ``(bias, mult, shift)``."""
    f = _unpack_layout(_PBUF_FIELDS, record)
    return f["bias"], f["mult"], f["shift"]


# Limits ---------------------------------------------------------------------------------
#
# The one definition of each numeric limit the instruction set, the hardware and the
# compiler share.

#: Largest requantization shift any unit takes (the 64-bit datapath's rounding bound).
MAX_SHIFT = 62

#: Width of the engines' input-channel tile counter (a COMPUTE job's ``cin_tiles``).
TILE_BITS = 12

#: Most input-channel tiles (``ceil(in_c / lanes)``) one CONV or POINTWISE job counts.
CIN_TILES_MAX = (1 << TILE_BITS) - 1

#: Strides the CONV and DEPTHWISE engines run (equal on both axes).
ENGINE_STRIDES = (1, 2)


def qrange(bits):
    """Range of a signed two's-complement integer of ``bits`` bits.

    Parameters
    ----------
    bits : int
        Width in bits, 2 to 63.

    Returns
    -------
    (lo, hi) : tuple of int
        ``(-2**(bits-1), 2**(bits-1) - 1)``.
    """
    if not isinstance(bits, numbers.Integral) or isinstance(bits, bool):
        raise TypeError(f"bits must be an integer, not {bits!r}")
    if not 2 <= bits <= 63:
        raise ValueError(f"bits must be between 2 and 63, not {bits!r}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def max_shift(shift_bits: int) -> int:
    """Largest shift a ``shift_bits``-bit field carries that the units accept."""
    return min(MAX_SHIFT, (1 << shift_bits) - 1)


#: Widest activation an ADD with ``table`` set looks up (TBUF holds ``2**act_bits`` entries).
TABLE_MAX_BITS = 8


def table_entries(act_bits: int) -> int:
    """Entries (bytes) of TBUF for ``act_bits``-bit activations: ``2**act_bits``, or 0 when
    activations are wider than :data:`TABLE_MAX_BITS` (no table unit)."""
    return 1 << act_bits if act_bits <= TABLE_MAX_BITS else 0


def check_add(i, arch) -> str | None:
    """The first rule of an ADD ``i`` on ``arch`` beyond its shift, multipliers, clamp and
    buffer ranges that it breaks, as a message, or ``None``: the ``op`` / ``group`` /
    ``b_count`` / ``table`` rules the ISS and the core's decoder both check."""
    if i.op is EltOp.ADD:
        if i.group or i.b_count:
            return "ADD with op ADD needs group and b_count 0"
    else:
        if i.group < 1 or i.b_count < 1:
            return "ADD with op MUL needs group and b_count at least 1"
        if i.mult_b:
            return "ADD with op MUL needs mult_b 0"
        if i.b_count * i.group < i.count:
            return (f"ADD with op MUL: b_count x group = {i.b_count} x {i.group} covers fewer "
                    f"than its {i.count} elements")
    if i.table and not table_entries(arch.act_bits):
        return (f"ADD with table needs act_bits at most {TABLE_MAX_BITS}, not "
                f"{arch.act_bits}")
    return None


def window_out(size: int, k: int, stride: int, pad_before: int = 0, pad_after: int = 0) -> int:
    """Output size of a ``k``-wide window at ``stride`` over ``size`` padded by
    ``pad_before`` / ``pad_after``: ``(size + pads - k) // stride + 1``."""
    return (size + pad_before + pad_after - k) // stride + 1
