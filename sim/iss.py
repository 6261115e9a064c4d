"""Instruction-set simulator: runs ``program.bin`` over a DDR image with the golden ops.

The ISS is the reference the RTL is compared with: it decodes the program with
:mod:`hw.isa`, keeps the four on-chip buffers of :class:`hw.arch.ArchConfig` as byte
arrays, and executes every instruction with the numerics of :mod:`sim.golden`, so a
compiled network run on the ISS equals the golden network runner bit for bit. A COMPUTE
is checked by the rules of its engine kind (:func:`hw.engine_kinds.check_compute`) and
executed by the kind's golden operation (:mod:`sim.engine_ops`).

It also predicts time with the cycle model of :mod:`sim.timing` (in-order issue, one
instruction per unit at a time, SYNC stalls). The storage formats are those of
:mod:`sim.codecs`. Both are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hw.arch import ArchConfig
from hw.engine_kinds import check_compute
from hw.isa import (
    PBUF_ENTRY_BYTES,
    Buffer,
    EltOp,
    ErrorCode,
    Opcode,
    ProgramFormatError,
    Unit,
    check_add,
    crc32,
    element_bytes,
    max_shift,
    parse_program,
    qrange,
    table_entries,
    weight_element_bytes,
)
from sim import golden
from sim.codecs import (
    PBUF_RECORD,
    decode_activations,
    decode_weights,
    encode_activations,
    encode_weights,
)
from sim.engine_ops import golden_op
from sim.timing import (
    ADD_JOB_CYCLES,
    ISSUE_BUSY_LAG,
    ISSUE_INTERVAL,
    ISSUE_LATENCY,
    LOAD_FETCH_AHEAD,
    LOAD_OVERHEAD_CYCLES,
    LOAD_START_CYCLES,
    START_LAG,
    STORE_OVERHEAD_CYCLES,
    accesses,
    dma_cycles,
    fetch_cycles,
    find_hazard,
    instruction_cycles,
    startup_cycles,
    timeline,
    unit_of,
)

__all__ = [
    "ADD_JOB_CYCLES",
    "ISS",
    "ISSUE_BUSY_LAG",
    "ISSUE_INTERVAL",
    "ISSUE_LATENCY",
    "LOAD_FETCH_AHEAD",
    "LOAD_OVERHEAD_CYCLES",
    "LOAD_START_CYCLES",
    "PBUF_RECORD",
    "START_LAG",
    "STORE_OVERHEAD_CYCLES",
    "RunResult",
    "accesses",
    "decode_activations",
    "decode_weights",
    "dma_cycles",
    "encode_activations",
    "encode_weights",
    "fetch_cycles",
    "find_hazard",
    "instruction_cycles",
    "startup_cycles",
    "timeline",
    "unit_of",
]


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
        self.tbuf = np.zeros(table_entries(arch.act_bits), dtype=np.uint8)
        self._act_e = element_bytes(arch.act_bits)
        self._w_e = weight_element_bytes(arch)
        # The buffer bytes (PBUF entries) instructions have written (``check_written``).
        self._written = {"IBUF": np.zeros(arch.ibuf_bytes, dtype=bool),
                         "OBUF": np.zeros(arch.obuf_bytes, dtype=bool),
                         "WBUF": np.zeros(arch.wbuf_bytes, dtype=bool),
                         "PBUF": np.zeros(arch.pbuf_entries, dtype=bool),
                         "TBUF": np.zeros(self.tbuf.size, dtype=bool)}

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

    def run(self, program: bytes, ddr: np.ndarray, *, check_hazards: bool = True,
            check_written: bool = False) -> RunResult:
        """Check ``program`` and execute it over ``ddr`` (uint8, modified in place).

        The ISS executes instructions one after the other; with ``check_hazards`` it
        also verifies, on the predicted timeline, that no two instructions that run
        concurrently on different units touch the same bytes, i.e. that a core
        overlapping its units computes the same result.

        With ``check_written`` it refuses an instruction that reads buffer bytes (PBUF
        entries) no instruction of this ISS wrote: the ISS's buffers start zeroed, the
        core's hold whatever an earlier run left there, so such a program has no defined
        result. Compiled programs never do it.

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
                if check_written:
                    self._check_written(index, instr)
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

    def _check_written(self, index, instr):
        """Refuse reads of buffer bytes no instruction wrote; record the writes (after the
        instruction: none reads and writes the same buffer)."""
        reads, writes = accesses(instr, self.arch)
        for space, lo, hi in reads:
            if space != "DDR" and not self._written[space][lo:hi].all():
                first = lo + int(np.argmin(self._written[space][lo:hi]))
                unit = "entry" if space == "PBUF" else "byte"
                self._fail(index, instr, f"reads {space} {unit} {first} (of [{lo}, {hi})), "
                                         f"which no instruction wrote: the buffer holds no "
                                         f"defined data there", ErrorCode.ILLEGAL_INSTRUCTION)
        for space, lo, hi in writes:
            if space != "DDR":
                self._written[space][lo:hi] = True

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
        size = i.rows * i.row_bytes
        # buffer ranges are checked before the block is gathered: with ddr_stride 0 a
        # short DDR range can describe a block far larger than memory
        if i.buffer is Buffer.IBUF or i.buffer is Buffer.WBUF:
            buf = self.ibuf if i.buffer is Buffer.IBUF else self.wbuf
            self._range(index, i, i.buffer.name, i.buf_addr, size, buf.size)
            block = self._rows_view(ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride)
            buf[i.buf_addr:i.buf_addr + size] = block.reshape(-1)
        elif i.buffer is Buffer.PBUF:
            if i.row_bytes % PBUF_ENTRY_BYTES:
                self._fail(index, i, f"PBUF rows must be a multiple of {PBUF_ENTRY_BYTES} bytes, "
                                     f"not {i.row_bytes}", ErrorCode.ILLEGAL_INSTRUCTION)
            n = size // PBUF_ENTRY_BYTES
            self._range(index, i, "PBUF", i.buf_addr, n, self.pbuf.shape[0])
            block = self._rows_view(ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride)
            records = np.ascontiguousarray(block.reshape(-1)).view(PBUF_RECORD)
            arch = self.arch
            bias = records["bias"].astype(np.int64)
            # keep the widths the hardware stores: sign-extend bias, truncate the others
            half = 1 << (arch.bias_bits - 1)
            bias = ((bias + half) & ((1 << arch.bias_bits) - 1)) - half
            mult = records["mult"].astype(np.int64) & ((1 << arch.mult_bits) - 1)
            shift = records["shift"].astype(np.int64) & ((1 << arch.shift_bits) - 1)
            self.pbuf[i.buf_addr:i.buf_addr + n] = np.stack([bias, mult, shift], axis=1)
        elif i.buffer is Buffer.TBUF:
            nb = self.arch.axi_data_bytes
            if i.buf_addr % nb:
                self._fail(index, i, f"TBUF loads start at a multiple of {nb} bytes (the "
                                     f"bus word), not {i.buf_addr}",
                           ErrorCode.ILLEGAL_INSTRUCTION)
            self._range(index, i, "TBUF", i.buf_addr, size, self.tbuf.size)
            block = self._rows_view(ddr, i.ddr_addr, i.rows, i.row_bytes, i.ddr_stride)
            self.tbuf[i.buf_addr:i.buf_addr + size] = block.reshape(-1)
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
        lo, hi = qrange(self.arch.act_bits)
        if not lo <= i.act_lo <= i.act_hi <= hi:
            self._fail(index, i, f"act_lo..act_hi [{i.act_lo}, {i.act_hi}] must lie in "
                                 f"[{lo}, {hi}] in order", ErrorCode.ILLEGAL_INSTRUCTION)

    def _compute(self, index, i):
        self._check_act(index, i)
        # Every legality check comes before the buffer ranges, as in the core's decoder
        # (an illegal instruction is reported as such even if it also leaves a buffer).
        message = check_compute(i, self.arch)
        if message is not None:
            self._fail(index, i, message, ErrorCode.ILLEGAL_INSTRUCTION)
        x = self._tile(index, i, self.ibuf, "IBUF", i.ibuf_addr, (1, i.in_c, i.in_h, i.in_w),
                       self._act_e)
        y = golden_op(i.engine)(_Operands(self, index, i), i, x)
        self._write_obuf(index, i, i.obuf_addr, y)

    def _add(self, index, i):
        self._check_act(index, i)
        arch = self.arch
        if i.shift > max_shift(arch.shift_bits):
            self._fail(index, i, f"shift {i.shift} exceeds the element-wise engine's "
                                 f"{max_shift(arch.shift_bits)} (shift_bits="
                                 f"{arch.shift_bits})", ErrorCode.ILLEGAL_INSTRUCTION)
        for name in ("mult_a", "mult_b"):
            if getattr(i, name) >= 1 << arch.mult_bits:
                self._fail(index, i, f"{name} {getattr(i, name)} is wider than mult_bits="
                                     f"{arch.mult_bits}", ErrorCode.ILLEGAL_INSTRUCTION)
        message = check_add(i, arch)
        if message is not None:
            self._fail(index, i, message, ErrorCode.ILLEGAL_INSTRUCTION)
        e = self._act_e
        a = self._tile(index, i, self.ibuf, "IBUF", i.a_addr, (i.count,), e)
        if i.op is EltOp.MUL:
            b = self._tile(index, i, self.ibuf, "IBUF", i.b_addr, (i.b_count,), e)
            y = golden.mul_broadcast(a, b, i.group, i.mult_a, i.shift, i.act_lo, i.act_hi)
        else:
            b = self._tile(index, i, self.ibuf, "IBUF", i.b_addr, (i.count,), e)
            y = golden.add(a, b, i.mult_a, i.mult_b, i.shift, i.act_lo, i.act_hi, axis=0)
        if i.table:
            bits = arch.act_bits
            table = self.tbuf.astype(np.int64)
            y = golden.table_lookup(y, np.where(table >= 1 << (bits - 1), table - (1 << bits),
                                                table))
        self._write_obuf(index, i, i.out_addr, y)


class _Operands:
    """The WBUF and PBUF operands of one COMPUTE, read with their ranges checked."""

    def __init__(self, iss, index, instr):
        self._iss, self._index, self._instr = iss, index, instr

    def params(self) -> np.ndarray:
        """``(out_c, 3)`` int64: bias, multiplier, shift of each output channel."""
        iss, i = self._iss, self._instr
        iss._range(self._index, i, "PBUF", i.pbuf_addr, i.out_c, iss.pbuf.shape[0])
        return iss.pbuf[i.pbuf_addr:i.pbuf_addr + i.out_c]

    def weights(self, shape) -> np.ndarray:
        """The weights at ``wbuf_addr`` decoded to int64, as an array of ``shape``."""
        iss, i = self._iss, self._instr
        n = math.prod(shape) * iss._w_e
        iss._range(self._index, i, "WBUF", i.wbuf_addr, n, iss.wbuf.size)
        return decode_weights(iss.wbuf[i.wbuf_addr:i.wbuf_addr + n], iss.arch).reshape(shape)
