"""Instruction-set simulator: runs ``program.bin`` over a DDR image with the golden ops.

The ISS is the reference the RTL is compared with: it decodes the program with
:mod:`hw.isa`, keeps the four on-chip buffers of :class:`hw.arch.ArchConfig` as byte
arrays, and executes every instruction with the numerics of :mod:`sim.golden`, so a
compiled network run on the ISS equals the golden network runner bit for bit.

It also predicts time. :func:`instruction_cycles` is the cycle model of one
instruction on its unit; :class:`ISS` combines those with the execution model of
``docs/isa.md`` (in-order issue, one instruction per unit at a time, SYNC stalls)
into per-instruction start/finish cycles and a total.

Element codecs (:func:`decode_activations`, :func:`encode_activations`,
:func:`encode_weights`, :func:`decode_weights`) and :data:`PBUF_RECORD` are the one
definition of how activations, weights and per-channel parameters are stored in
buffers and DDR; the compiler's weight image uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hw import weight_codes
from hw.arch import ArchConfig
from hw.isa import (
    HEADER_BYTES,
    INSTR_BYTES,
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    ErrorCode,
    Instruction,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    crc32,
    element_bytes,
    parse_program,
    weight_element_bytes,
)
from sim import golden

__all__ = [
    "DMA_ROW_CYCLES",
    "DMA_SETUP_CYCLES",
    "ENGINE_PIPELINE_CYCLES",
    "ISS",
    "PBUF_RECORD",
    "RunResult",
    "accesses",
    "decode_activations",
    "decode_weights",
    "encode_activations",
    "encode_weights",
    "fetch_cycles",
    "find_hazard",
    "instruction_cycles",
    "startup_cycles",
    "timeline",
    "unit_of",
]

#: Cycles from issuing a DMA transfer to its first data beat (address phase + DDR latency).
DMA_SETUP_CYCLES = 16
#: Extra cycles per row of a 2-D transfer (a new burst).
DMA_ROW_CYCLES = 1
#: Fill/drain latency of an engine pipeline, paid once per COMPUTE / ADD.
ENGINE_PIPELINE_CYCLES = 12

#: A PBUF record (:func:`hw.isa.pack_pbuf_entry`) as a numpy structured type.
PBUF_RECORD = np.dtype([("bias", "<i8"), ("mult", "<u4"), ("shift", "u1"), ("pad", "V3")])
assert PBUF_RECORD.itemsize == PBUF_ENTRY_BYTES


# Element codecs -------------------------------------------------------------------------

def decode_activations(raw: np.ndarray, bits: int) -> np.ndarray:
    """Bytes (uint8) of ``element_bytes(bits)``-byte elements -> int64 values."""
    if element_bytes(bits) == 1:
        return raw.view(np.int8).astype(np.int64)
    return raw.view("<i2").astype(np.int64)


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
        lo, hi = golden.qrange(width)
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


# Cycle model ----------------------------------------------------------------------------

_UNIT_OF = {Opcode.LOAD: Unit.LOAD, Opcode.STORE: Unit.STORE, Opcode.COMPUTE: Unit.COMPUTE,
            Opcode.ADD: Unit.COMPUTE}


def unit_of(opcode: Opcode) -> Unit | None:
    """Unit executing ``opcode`` (``None`` for SYNC / END, handled by issue)."""
    return _UNIT_OF.get(opcode)


def fetch_cycles(arch: ArchConfig) -> int:
    """Issue cost of one instruction: fetching its word plus one decode cycle."""
    return math.ceil(INSTR_BYTES / arch.axi_data_bytes) + 1


def startup_cycles(instr_count: int, arch: ArchConfig) -> int:
    """Header check plus the CRC pre-scan of the instruction section."""
    beats = math.ceil((HEADER_BYTES + instr_count * INSTR_BYTES) / arch.axi_data_bytes)
    return DMA_SETUP_CYCLES + beats


def _conv_geometry(i):
    hp = i.in_h + i.pad_top + i.pad_bottom
    wp = i.in_w + i.pad_left + i.pad_right
    oh = (hp - i.k_h) // i.stride_h + 1
    ow = (wp - i.k_w) // i.stride_w + 1
    return hp, wp, oh, ow


def instruction_cycles(instr: Instruction, arch: ArchConfig) -> int:
    """Busy cycles of ``instr`` on its unit (0 for SYNC / END).

    * LOAD / STORE: ``DMA_SETUP_CYCLES + rows * (ceil(row_bytes / axi_bytes) +
      DMA_ROW_CYCLES)``.
    * CONV: line-buffered convolvers stream the padded tile once per block of
      ``conv_pi`` input x ``conv_po`` output channels, one pixel per cycle, after
      loading the block's ``k_h * k_w`` taps.
    * DEPTHWISE: the same with ``dw_channels`` channels per block.
    * POINTWISE: one output pixel per cycle per block of ``pw_pi x pw_po`` channels.
    * POOL: one input element per cycle.
    * ADD: one element per cycle.

    Engines add ``ENGINE_PIPELINE_CYCLES`` of fill/drain per instruction.
    """
    op = instr.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        beats = math.ceil(instr.row_bytes / arch.axi_data_bytes)
        return DMA_SETUP_CYCLES + instr.rows * (beats + DMA_ROW_CYCLES)
    if op is Opcode.ADD:
        return ENGINE_PIPELINE_CYCLES + instr.count
    if op is not Opcode.COMPUTE:
        return 0
    hp, wp, oh, ow = _conv_geometry(instr)
    engine = instr.engine
    if engine is Engine.CONV:
        blocks = math.ceil(instr.in_c / arch.conv_pi) * math.ceil(instr.out_c / arch.conv_po)
        return ENGINE_PIPELINE_CYCLES + blocks * (hp * wp + instr.k_h * instr.k_w)
    if engine is Engine.DEPTHWISE:
        blocks = math.ceil(instr.out_c / arch.dw_channels)
        return ENGINE_PIPELINE_CYCLES + blocks * (hp * wp + instr.k_h * instr.k_w)
    if engine is Engine.POINTWISE:
        blocks = math.ceil(instr.in_c / arch.pw_pi) * math.ceil(instr.out_c / arch.pw_po)
        return ENGINE_PIPELINE_CYCLES + blocks * oh * ow
    return ENGINE_PIPELINE_CYCLES + instr.in_c * hp * wp


def timeline(instructions, arch: ArchConfig, instr_count=None):
    """Replay the execution model of ``docs/isa.md`` over ``instructions``.

    Issue is in program order and costs :func:`fetch_cycles` per instruction; an
    instruction starts when its unit is idle (issue waits for that), SYNC waits for
    the units in its mask and END for all of them.

    Returns
    -------
    (starts, finishes, total) : (list of int, list of int, int)
        Start and finish cycle of every instruction (the issue cycle for SYNC and
        END) and the cycle at which the program is done.
    """
    count = len(instructions) if instr_count is None else instr_count
    t_issue = startup_cycles(count, arch)
    free = {Unit.LOAD: 0, Unit.COMPUTE: 0, Unit.STORE: 0}
    fetch = fetch_cycles(arch)
    starts, finishes = [], []
    for instr in instructions:
        t_issue += fetch
        op = instr.opcode
        if op is Opcode.SYNC or op is Opcode.END:
            for unit, busy_until in free.items():
                if op is Opcode.END or unit & instr.mask:
                    t_issue = max(t_issue, busy_until)
            starts.append(t_issue)
            finishes.append(t_issue)
            if op is Opcode.END:
                break
            continue
        unit = unit_of(op)
        start = max(t_issue, free[unit])
        free[unit] = start + instruction_cycles(instr, arch)
        t_issue = start
        starts.append(start)
        finishes.append(free[unit])
    total = max([t_issue] + list(free.values()))
    return starts, finishes, total


def accesses(instr: Instruction, arch: ArchConfig):
    """``(reads, writes)`` of ``instr``: lists of ``(space, lo, hi)`` half-open ranges.

    Spaces are buffer names (bytes; entries for PBUF) and ``"DDR"`` (bytes).
    """
    op = instr.opcode
    e = element_bytes(arch.act_bits)
    if op in (Opcode.LOAD, Opcode.STORE):
        span = (instr.rows - 1) * instr.ddr_stride + instr.row_bytes
        size = instr.rows * instr.row_bytes
        if instr.buffer is Buffer.PBUF:
            size //= PBUF_ENTRY_BYTES
        buf = (instr.buffer.name, instr.buf_addr, instr.buf_addr + size)
        ddr = ("DDR", instr.ddr_addr, instr.ddr_addr + span)
        return ([ddr], [buf]) if op is Opcode.LOAD else ([buf], [ddr])
    if op is Opcode.ADD:
        n = instr.count * e
        return ([("IBUF", instr.a_addr, instr.a_addr + n),
                 ("IBUF", instr.b_addr, instr.b_addr + n)],
                [("OBUF", instr.out_addr, instr.out_addr + n)])
    if op is Opcode.COMPUTE:
        reads = [("IBUF", instr.ibuf_addr,
                  instr.ibuf_addr + instr.in_c * instr.in_h * instr.in_w * e)]
        if instr.engine is not Engine.POOL:
            per = instr.k_h * instr.k_w * (1 if instr.engine is Engine.DEPTHWISE else instr.in_c)
            reads.append(("WBUF", instr.wbuf_addr,
                          instr.wbuf_addr + instr.out_c * per * weight_element_bytes(arch)))
            reads.append(("PBUF", instr.pbuf_addr, instr.pbuf_addr + instr.out_c))
        return reads, [("OBUF", instr.obuf_addr,
                        instr.obuf_addr + instr.out_c * instr.out_h * instr.out_w * e)]
    return [], []


def find_hazard(instructions, starts, finishes, arch: ArchConfig):
    """The first pair of instructions on different units that overlap in time and touch the
    same bytes (one writing), or ``None``: a SYNC is missing between them."""
    active = []  # (finish, index, unit, reads, writes)
    for j, instr in enumerate(instructions):
        unit = unit_of(instr.opcode)
        if unit is None:
            continue
        reads, writes = accesses(instr, arch)
        active = [a for a in active if a[0] > starts[j]]
        for finish, i, other, r_i, w_i in active:
            if other is unit:
                continue
            for (s1, a1, b1) in w_i:
                for (s2, a2, b2) in reads + writes:
                    if s1 == s2 and a1 < b2 and a2 < b1:
                        return i, j
            for (s1, a1, b1) in r_i:
                for (s2, a2, b2) in writes:
                    if s1 == s2 and a1 < b2 and a2 < b1:
                        return i, j
        active.append((finishes[j], j, unit, reads, writes))
    return None


# The simulator --------------------------------------------------------------------------

@dataclass
class RunResult:
    """Outcome of one :meth:`ISS.run`.

    Members
    -------
    cycles : int
        Predicted cycles from start to done (header check included).
    instructions : list of Instruction
        The decoded program.
    start, finish : list of int
        Predicted cycle at which each instruction started and finished on its unit
        (issue cycle for SYNC / END).
    busy : dict
        Busy cycles per unit name.
    """
    cycles: int
    instructions: list
    start: list = field(default_factory=list)
    finish: list = field(default_factory=list)
    busy: dict = field(default_factory=dict)


class ISS:
    """Executes ConvForge programs for one arch.

    Parameters
    ----------
    arch : ArchConfig
        The accelerator the program must have been compiled for; programs with
        another arch hash are refused.
    """

    def __init__(self, arch: ArchConfig):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self.arch = arch
        self.ibuf = np.zeros(arch.ibuf_bytes, dtype=np.uint8)
        self.obuf = np.zeros(arch.obuf_bytes, dtype=np.uint8)
        self.wbuf = np.zeros(arch.wbuf_bytes, dtype=np.uint8)
        self.pbuf = np.zeros((arch.pbuf_entries, 3), dtype=np.int64)
        self._act_e = element_bytes(arch.act_bits)
        self._w_e = weight_element_bytes(arch)

    # Checks ---------------------------------------------------------------------------

    @staticmethod
    def check_weights(program: bytes, weights: bytes) -> None:
        """Refuse a ``weights.bin`` that does not belong to ``program``."""
        header, _ = parse_program(program)
        if len(weights) != header.weights_bytes or crc32(weights) != header.weights_crc32:
            raise ProgramFormatError(
                f"weights.bin ({len(weights)} bytes, CRC-32 0x{crc32(weights):08x}) does not "
                f"match the program ({header.weights_bytes} bytes, CRC-32 "
                f"0x{header.weights_crc32:08x}); use the files of one compilation",
                ErrorCode.BAD_CRC)

    def _fail(self, index, instr, message, code=ErrorCode.BUFFER_RANGE):
        raise ProgramFormatError(f"Instruction {index} ({instr.opcode.name}): {message}", code)

    def _range(self, index, instr, name, start, size, limit):
        if start < 0 or start + size > limit:
            self._fail(index, instr, f"{name} range [{start}, {start + size}) is outside "
                                     f"0..{limit}")

    def _ddr_range(self, index, instr, ddr, addr, rows, row_bytes, stride):
        last = addr + (rows - 1) * stride + row_bytes
        if last > ddr.size:
            self._fail(index, instr, f"DDR range ends at {last}, past the {ddr.size}-byte image",
                       ErrorCode.BUS_ERROR)

    # Execution ------------------------------------------------------------------------

    def run(self, program: bytes, ddr: np.ndarray, *, check_hazards: bool = True) -> RunResult:
        """Check ``program`` and execute it over ``ddr`` (uint8, modified in place).

        The ISS executes instructions one after the other; with ``check_hazards`` it
        also verifies, on the predicted timeline, that no two instructions that run
        concurrently on different units touch the same bytes, i.e. that a core
        overlapping its units computes the same result.

        Raises
        ------
        ProgramFormatError
            The program is truncated, corrupted, for another arch, or executes an
            illegal instruction (its ``code`` says which, as the hardware would).
        """
        if not isinstance(ddr, np.ndarray) or ddr.dtype != np.uint8 or ddr.ndim != 1:
            raise TypeError(f"ddr must be a 1-D uint8 numpy array, not {ddr!r}")
        header, instructions = parse_program(program, self.arch.config_hash)
        executed = []
        for index, instr in enumerate(instructions):
            executed.append(instr)
            if instr.opcode is Opcode.END:
                break
            if instr.opcode is not Opcode.SYNC:
                self._execute(index, instr, ddr)
        else:
            raise ProgramFormatError(
                f"Program has no END instruction among its {len(instructions)} instructions; "
                f"recompile the model", ErrorCode.ILLEGAL_INSTRUCTION)
        starts, finishes, total = timeline(executed, self.arch, header.instr_count)
        if check_hazards:
            hazard = find_hazard(executed, starts, finishes, self.arch)
            if hazard is not None:
                i, j = hazard
                raise ProgramFormatError(
                    f"Instructions {i} ({executed[i].opcode.name}) and {j} "
                    f"({executed[j].opcode.name}) run concurrently on different units and "
                    f"touch the same bytes: a SYNC is missing between them",
                    ErrorCode.ILLEGAL_INSTRUCTION)
        busy = {u.name: 0 for u in (Unit.LOAD, Unit.COMPUTE, Unit.STORE)}
        for instr, start, finish in zip(executed, starts, finishes):
            unit = unit_of(instr.opcode)
            if unit is not None:
                busy[unit.name] += finish - start
        return RunResult(cycles=total, instructions=instructions, start=starts,
                         finish=finishes, busy=busy)

    def _execute(self, index, instr, ddr):
        op = instr.opcode
        if op is Opcode.LOAD:
            self._load(index, instr, ddr)
        elif op is Opcode.STORE:
            self._store(index, instr, ddr)
        elif op is Opcode.COMPUTE:
            self._compute(index, instr)
        else:
            self._add(index, instr)

    def _rows_view(self, ddr, addr, rows, row_bytes, stride):
        return np.lib.stride_tricks.as_strided(ddr[addr:], shape=(rows, row_bytes),
                                               strides=(stride, 1), writeable=False)

    def _load(self, index, i, ddr):
        if i.rows < 1 or i.row_bytes < 1:
            self._fail(index, i, "rows and row_bytes must be at least 1",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        self._ddr_range(index, i, ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride)
        block = self._rows_view(ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride).reshape(-1)
        if i.buffer is Buffer.IBUF or i.buffer is Buffer.WBUF:
            buf = self.ibuf if i.buffer is Buffer.IBUF else self.wbuf
            self._range(index, i, i.buffer.name, i.buf_addr, block.size, buf.size)
            buf[i.buf_addr:i.buf_addr + block.size] = block
        elif i.buffer is Buffer.PBUF:
            if i.row_bytes % PBUF_ENTRY_BYTES:
                self._fail(index, i, f"PBUF rows must be a multiple of {PBUF_ENTRY_BYTES} bytes, "
                                     f"not {i.row_bytes}", ErrorCode.ILLEGAL_INSTRUCTION)
            records = np.ascontiguousarray(block).view(PBUF_RECORD)
            n = records.size
            self._range(index, i, "PBUF", i.buf_addr, n, self.pbuf.shape[0])
            arch = self.arch
            bias = records["bias"].astype(np.int64)
            # keep the widths the hardware stores: sign-extend bias, truncate the others
            half = 1 << (arch.bias_bits - 1)
            bias = ((bias + half) & ((1 << arch.bias_bits) - 1)) - half
            mult = records["mult"].astype(np.int64) & ((1 << arch.mult_bits) - 1)
            shift = records["shift"].astype(np.int64) & ((1 << arch.shift_bits) - 1)
            self.pbuf[i.buf_addr:i.buf_addr + n] = np.stack([bias, mult, shift], axis=1)
        else:
            self._fail(index, i, f"LOAD cannot target {i.buffer.name}",
                       ErrorCode.ILLEGAL_INSTRUCTION)

    def _store(self, index, i, ddr):
        if i.buffer is not Buffer.OBUF:
            self._fail(index, i, f"STORE reads OBUF, not {i.buffer.name}",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        if i.rows < 1 or i.row_bytes < 1:
            self._fail(index, i, "rows and row_bytes must be at least 1",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        size = i.rows * i.row_bytes
        self._range(index, i, "OBUF", i.buf_addr, size, self.obuf.size)
        self._ddr_range(index, i, ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride)
        src = self.obuf[i.buf_addr:i.buf_addr + size].reshape(i.rows, i.row_bytes)
        if i.ddr_stride >= i.row_bytes:
            dst = np.lib.stride_tricks.as_strided(ddr[i.ddr_addr:], shape=(i.rows, i.row_bytes),
                                                  strides=(i.ddr_stride, 1))
            dst[...] = src
        else:  # overlapping rows: later rows win, as the DMA writes them in order
            for r in range(i.rows):
                a = i.ddr_addr + r * i.ddr_stride
                ddr[a:a + i.row_bytes] = src[r]

    def _tile(self, index, i, buf, name, addr, shape, e):
        size = math.prod(shape) * e
        self._range(index, i, name, addr, size, buf.size)
        return decode_activations(buf[addr:addr + size], self.arch.act_bits).reshape(shape)

    def _write_obuf(self, index, i, addr, y):
        raw = encode_activations(y, self.arch.act_bits)
        self._range(index, i, "OBUF", addr, raw.size, self.obuf.size)
        self.obuf[addr:addr + raw.size] = raw

    def _check_act(self, index, i):
        lo, hi = golden.qrange(self.arch.act_bits)
        if not lo <= i.act_lo <= i.act_hi <= hi:
            self._fail(index, i, f"act_lo..act_hi [{i.act_lo}, {i.act_hi}] must lie in "
                                 f"[{lo}, {hi}] in order", ErrorCode.ILLEGAL_INSTRUCTION)

    def _compute(self, index, i):
        arch = self.arch
        self._check_act(index, i)
        if min(i.in_c, i.out_c, i.in_h, i.in_w, i.k_h, i.k_w, i.stride_h, i.stride_w) < 1:
            self._fail(index, i, "channels, sizes, kernel and stride must be at least 1",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        pads = (i.pad_top, i.pad_left, i.pad_bottom, i.pad_right)
        if max(i.pad_top, i.pad_bottom) >= i.k_h or max(i.pad_left, i.pad_right) >= i.k_w:
            self._fail(index, i, f"pads {pads} must be smaller than the kernel "
                                 f"{i.k_h}x{i.k_w}", ErrorCode.ILLEGAL_INSTRUCTION)
        hp, wp, oh, ow = _conv_geometry(i)
        if oh < 1 or ow < 1:
            self._fail(index, i, "kernel larger than the padded tile",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        engine = i.engine
        if engine in (Engine.CONV, Engine.DEPTHWISE, Engine.POOL) and \
                (wp > arch.max_width or hp > arch.max_height):
            self._fail(index, i, f"padded tile {hp}x{wp} exceeds max_height x max_width "
                                 f"{arch.max_height}x{arch.max_width}",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        if engine in (Engine.CONV, Engine.DEPTHWISE) and max(i.k_h, i.k_w) > arch.conv_k_max:
            self._fail(index, i, f"kernel {i.k_h}x{i.k_w} exceeds conv_k_max {arch.conv_k_max}",
                       ErrorCode.ILLEGAL_INSTRUCTION)
        e = self._act_e
        x = self._tile(index, i, self.ibuf, "IBUF", i.ibuf_addr, (1, i.in_c, i.in_h, i.in_w), e)
        if engine is Engine.POOL:
            if i.pool is Pool.MAX:
                y = golden.max_pool2d(x, (i.k_h, i.k_w), (i.stride_h, i.stride_w), pads)
                y = np.clip(y, i.act_lo, i.act_hi)
            elif i.pool is Pool.AVG:
                if i.shift >= 1 << arch.shift_bits or i.mult >= 1 << arch.mult_bits:
                    self._fail(index, i, "mult / shift wider than mult_bits / shift_bits",
                               ErrorCode.ILLEGAL_INSTRUCTION)
                acc = golden.sum_pool2d(x, (i.k_h, i.k_w), (i.stride_h, i.stride_w), pads)
                y = golden.requantize(acc, i.mult, i.shift, i.act_lo, i.act_hi)
            else:
                self._fail(index, i, "the POOL engine needs pool MAX or AVG",
                           ErrorCode.ILLEGAL_INSTRUCTION)
            fh = fw = 1
        else:
            if i.pool is Pool.AVG:
                self._fail(index, i, "only a max pool can be fused into an engine",
                           ErrorCode.ILLEGAL_INSTRUCTION)
            self._range(index, i, "PBUF", i.pbuf_addr, i.out_c, self.pbuf.shape[0])
            params = self.pbuf[i.pbuf_addr:i.pbuf_addr + i.out_c]
            if engine is Engine.DEPTHWISE:
                if i.out_c != i.in_c:
                    self._fail(index, i, "DEPTHWISE needs out_c == in_c",
                               ErrorCode.ILLEGAL_INSTRUCTION)
                wshape, groups = (i.out_c, 1, i.k_h, i.k_w), i.in_c
            else:
                if engine is Engine.POINTWISE and ((i.k_h, i.k_w) != (1, 1) or any(pads)):
                    self._fail(index, i, "POINTWISE needs a 1x1 kernel and no pads",
                               ErrorCode.ILLEGAL_INSTRUCTION)
                wshape, groups = (i.out_c, i.in_c, i.k_h, i.k_w), 1
            n = math.prod(wshape) * self._w_e
            self._range(index, i, "WBUF", i.wbuf_addr, n, self.wbuf.size)
            w = decode_weights(self.wbuf[i.wbuf_addr:i.wbuf_addr + n], arch).reshape(wshape)
            acc = golden.conv2d(x, w, params[:, 0], (i.stride_h, i.stride_w), pads, groups)
            y = golden.requantize(acc, params[:, 1], params[:, 2], i.act_lo, i.act_hi)
            fh, fw = (i.fpool_h, i.fpool_w) if i.pool is Pool.MAX else (1, 1)
            if i.pool is Pool.MAX:
                if fh < 1 or fw < 1 or fh > oh or fw > ow:
                    self._fail(index, i, f"fused pool {fh}x{fw} does not fit the {oh}x{ow} "
                                         f"result", ErrorCode.ILLEGAL_INSTRUCTION)
                y = golden.max_pool2d(y, (fh, fw), (fh, fw))
        if y.shape[2:] != (i.out_h, i.out_w):
            self._fail(index, i, f"out_h x out_w is {i.out_h}x{i.out_w}, but the fields give "
                                 f"{y.shape[2]}x{y.shape[3]}", ErrorCode.ILLEGAL_INSTRUCTION)
        self._write_obuf(index, i, i.obuf_addr, y)

    def _add(self, index, i):
        self._check_act(index, i)
        e = self._act_e
        a = self._tile(index, i, self.ibuf, "IBUF", i.a_addr, (i.count,), e)
        b = self._tile(index, i, self.ibuf, "IBUF", i.b_addr, (i.count,), e)
        y = golden.add(a, b, i.mult_a, i.mult_b, i.shift, i.act_lo, i.act_hi, axis=0)
        self._write_obuf(index, i, i.out_addr, y)
