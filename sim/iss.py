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

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from hw import weight_codes
from hw.arch import ArchConfig
from hw.engines.datapath import TILE_BITS
from hw.isa import (
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
    engine_kernel,
    parse_program,
    weight_element_bytes,
)
from hw.seml.compute import DRAIN_CYCLES, POOL_LANES, pool_steps
from hw.seml.core import MAX_BURST
from hw.seml.dma import PAGE_BYTES
from hw.seml.engine_units import unit_cycles
from hw.seml.fetch import FETCH_DEPTH
from hw.seml.units import add_chunk_beats, add_lanes
from sim import golden

__all__ = [
    "ADD_JOB_CYCLES",
    "ISS",
    "ISSUE_INTERVAL",
    "ISSUE_LATENCY",
    "LOAD_FETCH_AHEAD",
    "LOAD_OVERHEAD_CYCLES",
    "LOAD_START_CYCLES",
    "PBUF_RECORD",
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
#
# The SEML core (``hw/seml``) is deterministic; these figures are derived from its RTL
# with cocotbext-axi's ``AxiRam`` as DDR (two cycles from an accepted read address to
# its first beat, one beat per cycle, no pauses). Exact for COMPUTE and ADD; the DMA's
# figures include the instruction-fetch bursts that share the read channel with LOAD.

_UNIT_OF = {Opcode.LOAD: Unit.LOAD, Opcode.STORE: Unit.STORE, Opcode.COMPUTE: Unit.COMPUTE,
            Opcode.ADD: Unit.COMPUTE}

#: Cycles a LOAD spends besides its data beats: command to the DMA, read address behind
#: the instruction-fetch bursts already queued in DDR, first-beat latency, hand-off.
LOAD_OVERHEAD_CYCLES = 14
#: Instruction-fetch bursts queued ahead of a LOAD's first burst in :func:`dma_cycles`
#: (:func:`timeline` counts the words actually requested then).
LOAD_FETCH_AHEAD = 2
#: Cycles from a LOAD's issue to its first beat when the read channel is idle.
LOAD_START_CYCLES = 4
#: Cycles a STORE spends besides its data beats: OBUF read, write address, response.
STORE_OVERHEAD_CYCLES = 7
#: A STORE burst starts at least ``_DDR_WRITE_GAP`` cycles after the last beat of the
#: burst ``_DDR_WRITE_AHEAD`` before it: ``AxiRam`` takes a write address only while
#: fewer than two wait behind the burst it is writing.
_DDR_WRITE_AHEAD, _DDR_WRITE_GAP = 3, 4
#: Cycles an ADD job spends besides its beats: command, engine pipeline, write-back.
ADD_JOB_CYCLES = 6
#: Cycles from the last beat of an instruction word to its issue (FIFO, FETCH, DECODE).
ISSUE_LATENCY = 4
#: Fewest cycles between two issues (FETCH, DECODE, ISSUE states).
ISSUE_INTERVAL = 3
#: Cycles from start to the first beat of the header, and from the header's last beat to
#: the first beat of the CRC pre-scan, and from the pre-scan's last beat to the first
#: beat of instruction 0.
_HEADER_LATENCY, _SCAN_GAP, _EXEC_GAP = 3, 7, 8


def unit_of(opcode: Opcode) -> Unit | None:
    """Unit executing ``opcode`` (``None`` for SYNC / END, handled by issue)."""
    return _UNIT_OF.get(opcode)


def fetch_cycles(arch: ArchConfig) -> int:
    """Bus beats of one instruction word: the issue interval while fetch is the bottleneck."""
    return math.ceil(INSTR_BYTES / arch.axi_data_bytes)


def startup_cycles(instr_count: int, arch: ArchConfig) -> int:
    """Cycles from start to the first beat of instruction 0: header read and check, CRC
    pre-scan of the header and the ``instr_count`` instruction words."""
    w = fetch_cycles(arch)
    header_last = _HEADER_LATENCY + w - 1
    scan_last = header_last + _SCAN_GAP + (instr_count + 1) * w
    return scan_last + _EXEC_GAP


def _row_cycles(addr, nbytes, nb, ends):
    """Time the W beats of one STORE row of ``nbytes`` bytes at DDR ``addr``.

    The row is split into bursts as the DMA does (at most ``MAX_BURST`` beats, never
    across a 4 KiB page). Beats follow one per cycle at any lane offset (the DMA's
    unpacking register takes the next stream word whenever a beat leaves at most a word
    behind), but a burst starts no earlier than :data:`_DDR_WRITE_GAP` cycles after the
    last beat of the burst :data:`_DDR_WRITE_AHEAD` before it. ``ends`` lists the cycles
    of the last beats of the bursts so far (the first beat of a STORE is cycle 0); the
    row's are appended.
    """
    span_max = MAX_BURST * nb
    while nbytes > 0:
        offset = addr % nb
        aligned = addr - offset
        span = min(PAGE_BYTES - aligned % PAGE_BYTES, span_max)
        take = min(nbytes, span - offset)
        start = ends[-1] + 1 if ends else 0
        if len(ends) >= _DDR_WRITE_AHEAD:
            start = max(start, ends[-_DDR_WRITE_AHEAD] + _DDR_WRITE_GAP)
        ends.append(start + (offset + take + nb - 1) // nb - 1)
        addr += take
        nbytes -= take


def _bursts(addr, nbytes, nb):
    """Bursts the DMA splits one row into (at most ``MAX_BURST`` beats, never across a
    4 KiB page)."""
    span_max = MAX_BURST * nb
    count = 0
    while nbytes > 0:
        offset = addr % nb
        aligned = addr - offset
        span = min(PAGE_BYTES - aligned % PAGE_BYTES, span_max)
        take = min(nbytes, span - offset)
        addr += take
        nbytes -= take
        count += 1
    return count


@functools.lru_cache(maxsize=1 << 14)
def dma_cycles(rows: int, row_bytes: int, arch: ArchConfig, *, ddr_addr: int = 0,
               ddr_stride: int | None = None, write: bool = False) -> int:
    """Busy cycles of a LOAD (``write=False``) or STORE of ``rows`` x ``row_bytes`` bytes
    from DDR offset ``ddr_addr`` (the image base is taken 4 KiB aligned), rows
    ``ddr_stride`` apart.

    Each row is its own run of bursts. A LOAD takes one beat per cycle at any lane
    offset (the DMA's packing register always has room for the next beat once a word
    leaves), plus one cycle at the end when the last beat brings more bytes than the
    final stream word holds (two words then leave after it). A STORE beat costs one
    cycle at any lane offset too, but the DDR (``AxiRam``) holds back a write burst that
    follows two single-beat ones by a cycle (:func:`_row_cycles`), so a run of
    single-beat bursts (rows within one bus word) moves three bursts every four cycles.
    A LOAD also waits for :data:`LOAD_FETCH_AHEAD` instruction words queued before its
    first burst, and for one more after its first burst if it has several (the read
    channel is shared with instruction fetch); :func:`timeline` replaces the former by
    the words actually requested.
    """
    nb = arch.axi_data_bytes
    stride = row_bytes if ddr_stride is None else ddr_stride
    if rows < 1 or row_bytes < 1:
        return 0
    if write:
        ends = []
        for r in range(rows):
            _row_cycles(ddr_addr + r * stride, row_bytes, nb, ends)
        return STORE_OVERHEAD_CYCLES + ends[-1] + 1
    # Lane offsets repeat every ``nb`` rows.
    offsets = [(ddr_addr + r * stride) % nb for r in range(min(rows, nb))]
    reps, extra = divmod(rows, len(offsets))
    period = [(offset + row_bytes + nb - 1) // nb for offset in offsets]
    cycles = reps * sum(period) + sum(period[:extra])
    # Bytes of the last beat against those of the last stream word.
    end = offsets[(rows - 1) % len(offsets)] + row_bytes
    last_beat = row_bytes if end <= nb else (end - 1) % nb + 1
    cycles += int(last_beat > (rows * row_bytes - 1) % nb + 1)
    # A fetch burst requested meanwhile slips in after the first burst.
    several = rows > 1 or _bursts(ddr_addr, row_bytes, nb) > 1
    ahead = LOAD_FETCH_AHEAD + several
    return LOAD_OVERHEAD_CYCLES + ahead * fetch_cycles(arch) + cycles


def _load_first_beat(arch):
    """Cycles from a LOAD's issue to its first beat assumed by :func:`dma_cycles`."""
    return LOAD_OVERHEAD_CYCLES - 1 + LOAD_FETCH_AHEAD * fetch_cycles(arch)


def _conv_geometry(i):
    hp = i.in_h + i.pad_top + i.pad_bottom
    wp = i.in_w + i.pad_left + i.pad_right
    oh = (hp - i.k_h) // i.stride_h + 1
    ow = (wp - i.k_w) // i.stride_w + 1
    return hp, wp, oh, ow


def instruction_cycles(instr: Instruction, arch: ArchConfig) -> int:
    """Cycles ``instr`` keeps its unit busy, from its issue to the first cycle another
    instruction (or a SYNC on the unit) can issue (0 for SYNC / END).

    * COMPUTE on CONV, DEPTHWISE, POINTWISE: :func:`hw.seml.engine_units.unit_cycles`
      (the engines' jobs, one per group of output channels);
    * COMPUTE on POOL: :func:`hw.seml.compute.pool_steps` (one step per cycle on 8
      output columns of one channel) plus :data:`hw.seml.compute.DRAIN_CYCLES`.
    * ADD: ``ceil(count / dw_channels)`` beats plus :data:`ADD_JOB_CYCLES` per engine job
      of at most ``max_width * max_height`` beats.
    * LOAD / STORE: :func:`dma_cycles`.
    """
    op = instr.opcode
    if op is Opcode.LOAD or op is Opcode.STORE:
        return dma_cycles(instr.rows, instr.row_bytes, arch, ddr_addr=instr.ddr_addr,
                          ddr_stride=instr.ddr_stride, write=op is Opcode.STORE)
    if op is Opcode.ADD:
        beats = -(-instr.count // add_lanes(arch))
        jobs = max(1, -(-beats // add_chunk_beats(arch)))
        return beats + ADD_JOB_CYCLES * jobs
    if op is not Opcode.COMPUTE:
        return 0
    if instr.engine is not Engine.POOL:
        return unit_cycles(instr, arch)
    return DRAIN_CYCLES + pool_steps(instr.in_c, instr.out_h, instr.out_w, instr.k_h,
                                     instr.k_w, POOL_LANES)


def timeline(instructions, arch: ArchConfig, instr_count=None):
    """Replay the SEML core's issue over ``instructions``.

    Issue is in program order: instruction ``k`` is issued :data:`ISSUE_LATENCY` cycles
    after the last beat of its word (at least :data:`ISSUE_INTERVAL` after the previous
    issue) and once its unit is idle; SYNC waits for the units in its mask and END for
    all of them. The fetch unit keeps ``FETCH_DEPTH`` words requested or buffered and
    reads a word in :func:`fetch_cycles` beats, so a run of short instructions issues one
    per word; a LOAD's first beat comes after the instruction words already requested.

    Returns
    -------
    (starts, finishes, total) : (list of int, list of int, int)
        Issue and finish cycle of every instruction (finish = issue for SYNC and END;
        counted from start, as the core's trace stamps) and the core's cycle count.
    """
    count = len(instructions) if instr_count is None else instr_count
    w = fetch_cycles(arch)
    first_beat = startup_cycles(count, arch)  # of word 0
    pops = []
    last_beats = []  # last beat of each instruction word

    def word(j):
        """Last beat of word ``j`` (its request follows the pop of word ``j - FETCH_DEPTH``)."""
        while len(last_beats) <= j:
            i = len(last_beats)
            if i == 0:
                last_beats.append(first_beat + w - 1)
                continue
            request = first_beat - 2 if i < FETCH_DEPTH else pops[i - FETCH_DEPTH] + 1
            last_beats.append(max(request + 2, last_beats[-1] + 1) + w - 1)
        return last_beats[j]

    free = {Unit.LOAD: 0, Unit.COMPUTE: 0, Unit.STORE: 0}
    starts, finishes = [], []
    issued = -ISSUE_INTERVAL
    total = None
    for k, instr in enumerate(instructions):
        pop = max(word(k) + 2, issued + 1)
        pops.append(pop)
        t = pop + 2
        op = instr.opcode
        if op is Opcode.SYNC or op is Opcode.END:
            for unit, busy_until in free.items():
                if op is Opcode.END or unit & instr.mask:
                    t = max(t, busy_until)
            starts.append(t)
            finishes.append(t)
            issued = t
            if op is Opcode.END:
                total = t + 2
                break
            continue
        unit = unit_of(op)
        t = max(t, free[unit])
        busy = instruction_cycles(instr, arch)
        if op is Opcode.LOAD:
            # The instruction words requested so far are read before the LOAD's first
            # burst, including the refill that follows the next word's pop if that pop
            # comes at once (the fetch wins the read-address arbitration).
            ahead = word(k + FETCH_DEPTH)
            if word(k + 1) + 2 <= t + 1:
                ahead = max(t + 4, ahead + 1) + w - 1
            busy += max(LOAD_START_CYCLES, ahead + 1 - t) - _load_first_beat(arch)
        free[unit] = t + busy
        issued = t
        starts.append(t)
        finishes.append(free[unit])
    if total is None:
        total = max([issued + 2] + list(free.values()))
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

#: Most input-channel tiles a CONV / POINTWISE engine job counts (its ``cin_tiles`` field).
_CIN_TILES_MAX = (1 << TILE_BITS) - 1


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
        # The buffer bytes (PBUF entries) instructions have written (``check_written``).
        self._written = {"IBUF": np.zeros(arch.ibuf_bytes, dtype=bool),
                         "OBUF": np.zeros(arch.obuf_bytes, dtype=bool),
                         "WBUF": np.zeros(arch.wbuf_bytes, dtype=bool),
                         "PBUF": np.zeros(arch.pbuf_entries, dtype=bool)}

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

        def illegal(message):
            self._fail(index, i, message, ErrorCode.ILLEGAL_INSTRUCTION)

        # Every legality check comes before the buffer ranges, as in the core's decoder
        # (an illegal instruction is reported as such even if it also leaves a buffer).
        if min(i.in_c, i.out_c, i.in_h, i.in_w, i.k_h, i.k_w, i.stride_h, i.stride_w) < 1:
            illegal("channels, sizes, kernel and stride must be at least 1")
        pads = (i.pad_top, i.pad_left, i.pad_bottom, i.pad_right)
        if max(i.pad_top, i.pad_bottom) >= i.k_h or max(i.pad_left, i.pad_right) >= i.k_w:
            illegal(f"pads {pads} must be smaller than the kernel {i.k_h}x{i.k_w}")
        hp, wp, oh, ow = _conv_geometry(i)
        if oh < 1 or ow < 1:
            illegal("kernel larger than the padded tile")
        engine = i.engine
        if engine is Engine.CONV or engine is Engine.DEPTHWISE:
            if max(i.k_h, i.k_w) > arch.conv_k_max:
                illegal(f"kernel {i.k_h}x{i.k_w} exceeds conv_k_max {arch.conv_k_max}")
            if i.stride_h != i.stride_w or i.stride_h > 2:
                illegal(f"stride_h x stride_w is {i.stride_h}x{i.stride_w}; the {engine.name} "
                        f"engine runs stride 1 or 2, equal on both axes")
            k = engine_kernel(i.k_h, i.k_w)
            frame_h, frame_w = hp + k - i.k_h, wp + k - i.k_w
            if frame_w > arch.max_width or frame_h > arch.max_height:
                illegal(f"engine frame {frame_h}x{frame_w} (padded tile {hp}x{wp}, the "
                        f"{i.k_h}x{i.k_w} kernel run as {k}x{k}) exceeds max_height x "
                        f"max_width {arch.max_height}x{arch.max_width}")
        elif engine is Engine.POOL and (wp > arch.max_width or hp > arch.max_height):
            illegal(f"padded tile {hp}x{wp} exceeds max_height x max_width "
                    f"{arch.max_height}x{arch.max_width}")
        fh = fw = 1
        if engine is Engine.POOL:
            if i.pool is not Pool.MAX and i.pool is not Pool.AVG:
                illegal("the POOL engine needs pool MAX or AVG")
            if i.pool is Pool.AVG and (i.shift >= 1 << arch.shift_bits
                                       or i.mult >= 1 << arch.mult_bits):
                illegal("mult / shift wider than mult_bits / shift_bits")
        else:
            if i.pool is Pool.AVG:
                illegal("only a max pool can be fused into an engine")
            if i.pool is Pool.MAX:
                if engine is not Engine.CONV:
                    illegal(f"the {engine.name} engine has no fused pool: pool must be NONE, "
                            f"not MAX")
                if (i.fpool_h, i.fpool_w) != (2, 2):
                    illegal(f"fused max pool fpool_h x fpool_w is {i.fpool_h}x{i.fpool_w}; the "
                            f"CONV engine fuses a 2x2 stride-2 max pool only")
                fh = fw = 2
                if oh < fh or ow < fw:
                    illegal(f"fused pool {fh}x{fw} does not fit the {oh}x{ow} result")
            if engine is Engine.DEPTHWISE and i.out_c != i.in_c:
                illegal("DEPTHWISE needs out_c == in_c")
            if engine is Engine.POINTWISE and ((i.k_h, i.k_w) != (1, 1) or any(pads)):
                illegal("POINTWISE needs a 1x1 kernel and no pads")
            if engine is Engine.CONV or engine is Engine.POINTWISE:
                pi, name = ((arch.conv_pi, "conv_pi") if engine is Engine.CONV
                            else (arch.pw_pi, "pw_pi"))
                tiles = -(-i.in_c // pi)
                if tiles > _CIN_TILES_MAX:
                    illegal(f"in_c {i.in_c} is {tiles} input-channel tiles of {name}={pi}; "
                            f"the {engine.name} engine counts at most {_CIN_TILES_MAX}")
        if (oh // fh, ow // fw) != (i.out_h, i.out_w):
            illegal(f"out_h x out_w is {i.out_h}x{i.out_w}, but the fields give "
                    f"{oh // fh}x{ow // fw}")
        if engine is Engine.POINTWISE and i.out_h * i.out_w > arch.max_width * arch.max_height:
            illegal(f"out_h x out_w {i.out_h}x{i.out_w} is {i.out_h * i.out_w} pixels, more than "
                    f"the max_width x max_height = {arch.max_width * arch.max_height} a "
                    f"POINTWISE job holds")

        e = self._act_e
        x = self._tile(index, i, self.ibuf, "IBUF", i.ibuf_addr, (1, i.in_c, i.in_h, i.in_w), e)
        stride = (i.stride_h, i.stride_w)
        if engine is Engine.POOL:
            if i.pool is Pool.MAX:
                y = np.clip(golden.max_pool2d(x, (i.k_h, i.k_w), stride, pads),
                            i.act_lo, i.act_hi)
            else:
                acc = golden.sum_pool2d(x, (i.k_h, i.k_w), stride, pads)
                y = golden.requantize(acc, i.mult, i.shift, i.act_lo, i.act_hi)
        else:
            self._range(index, i, "PBUF", i.pbuf_addr, i.out_c, self.pbuf.shape[0])
            params = self.pbuf[i.pbuf_addr:i.pbuf_addr + i.out_c]
            if engine is Engine.DEPTHWISE:
                wshape, groups = (i.out_c, 1, i.k_h, i.k_w), i.in_c
            else:
                wshape, groups = (i.out_c, i.in_c, i.k_h, i.k_w), 1
            n = math.prod(wshape) * self._w_e
            self._range(index, i, "WBUF", i.wbuf_addr, n, self.wbuf.size)
            w = decode_weights(self.wbuf[i.wbuf_addr:i.wbuf_addr + n], arch).reshape(wshape)
            acc = golden.conv2d(x, w, params[:, 0], stride, pads, groups)
            y = golden.requantize(acc, params[:, 1], params[:, 2], i.act_lo, i.act_hi)
            if i.pool is Pool.MAX:
                y = golden.max_pool2d(y, (fh, fw), (fh, fw))
        self._write_obuf(index, i, i.obuf_addr, y)

    def _add(self, index, i):
        self._check_act(index, i)
        arch = self.arch
        if i.shift > min(62, (1 << arch.shift_bits) - 1):
            self._fail(index, i, f"shift {i.shift} exceeds the element-wise engine's "
                                 f"{min(62, (1 << arch.shift_bits) - 1)} (shift_bits="
                                 f"{arch.shift_bits})", ErrorCode.ILLEGAL_INSTRUCTION)
        for name in ("mult_a", "mult_b"):
            if getattr(i, name) >= 1 << arch.mult_bits:
                self._fail(index, i, f"{name} {getattr(i, name)} is wider than mult_bits="
                                     f"{arch.mult_bits}", ErrorCode.ILLEGAL_INSTRUCTION)
        e = self._act_e
        a = self._tile(index, i, self.ibuf, "IBUF", i.a_addr, (i.count,), e)
        b = self._tile(index, i, self.ibuf, "IBUF", i.b_addr, (i.count,), e)
        y = golden.add(a, b, i.mult_a, i.mult_b, i.shift, i.act_lo, i.act_hi, axis=0)
        self._write_obuf(index, i, i.out_addr, y)
