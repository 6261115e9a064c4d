"""Cycle model of the SEML core: per-instruction busy cycles and the issue timeline.

The SEML core (``hw/seml``) is deterministic; these figures are derived from its RTL with
cocotbext-axi's ``AxiRam`` as DDR (two cycles from an accepted read address to its first
beat, one beat per cycle, no pauses). Exact for COMPUTE and ADD; the DMA's figures include
the instruction-fetch bursts that share the read channel with LOAD. The constants live in
:mod:`hw.timing` (shared with the hardware generators), the COMPUTE models in the engine
kinds' descriptors (:mod:`hw.engine_kinds`).

:func:`instruction_cycles` is the cycle model of one instruction on its unit;
:func:`timeline` combines those with the execution model of ``docs/isa.md`` (in-order
issue, one instruction per unit at a time, SYNC stalls) into per-instruction start/finish
cycles and a total; :func:`accesses` and :func:`find_hazard` check that overlapping units
touch disjoint bytes.
"""

from __future__ import annotations

import functools
import math

from hw.arch import ArchConfig
from hw.engine_kinds import compute_cycles, engine_kind, weight_elements
from hw.isa import (
    INSTR_BYTES,
    PBUF_ENTRY_BYTES,
    Buffer,
    EltOp,
    Instruction,
    Opcode,
    Unit,
    element_bytes,
    table_entries,
    weight_element_bytes,
)
from hw.timing import (
    ADD_FETCH_CYCLES,
    ADD_JOB_CYCLES,
    ADD_TABLE_CYCLES,
    DDR_WRITE_AHEAD,
    DDR_WRITE_GAP,
    EXEC_GAP,
    FETCH_DEPTH,
    HEADER_LATENCY,
    ISSUE_BUSY_LAG,
    ISSUE_INTERVAL,
    ISSUE_LATENCY,
    LOAD_FETCH_AHEAD,
    LOAD_OVERHEAD_CYCLES,
    LOAD_START_CYCLES,
    MAX_BURST,
    PAGE_BYTES,
    SCAN_GAP,
    START_LAG,
    STORE_OVERHEAD_CYCLES,
    add_chunk_beats,
    add_lanes,
)

__all__ = [
    "ADD_FETCH_CYCLES",
    "ADD_JOB_CYCLES",
    "ADD_TABLE_CYCLES",
    "ISSUE_BUSY_LAG",
    "ISSUE_INTERVAL",
    "ISSUE_LATENCY",
    "LOAD_FETCH_AHEAD",
    "LOAD_OVERHEAD_CYCLES",
    "LOAD_START_CYCLES",
    "START_LAG",
    "STORE_OVERHEAD_CYCLES",
    "accesses",
    "dma_cycles",
    "fetch_cycles",
    "find_hazard",
    "instruction_cycles",
    "startup_cycles",
    "timeline",
    "unit_of",
]

_DDR_WRITE_AHEAD, _DDR_WRITE_GAP = DDR_WRITE_AHEAD, DDR_WRITE_GAP
_HEADER_LATENCY, _SCAN_GAP, _EXEC_GAP = HEADER_LATENCY, SCAN_GAP, EXEC_GAP

_UNIT_OF = {Opcode.LOAD: Unit.LOAD, Opcode.STORE: Unit.STORE, Opcode.COMPUTE: Unit.COMPUTE,
            Opcode.ADD: Unit.COMPUTE}



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
    first burst, and for one more (the read channel is shared with instruction fetch):
    after its first burst if it has several, before it if it has one (the LOAD's burst
    leaves a cycle after its issue, :data:`START_LAG`); :func:`timeline` replaces the
    former by the words actually requested.
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
    # A fetch burst requested meanwhile slips in: after the first burst of a LOAD with
    # several, before the only burst of one with one (its burst leaves START_LAG cycles
    # after the issue, behind the refill that follows the next word's pop).
    ahead = LOAD_FETCH_AHEAD + 1
    return LOAD_OVERHEAD_CYCLES + ahead * fetch_cycles(arch) + cycles


def _load_first_beat(arch):
    """Cycles from a LOAD's start to its first beat assumed by :func:`dma_cycles`."""
    return LOAD_OVERHEAD_CYCLES - 1 + LOAD_FETCH_AHEAD * fetch_cycles(arch)


def instruction_cycles(instr: Instruction, arch: ArchConfig) -> int:
    """Cycles ``instr`` keeps its unit busy, from its start to the first cycle another
    instruction (or a SYNC on the unit) can issue (0 for SYNC / END).

    * COMPUTE: the cycle model of its engine kind (:func:`hw.engine_kinds.compute_cycles`:
      :func:`~hw.engine_kinds.engine_unit_cycles` for the engines' jobs, one per group of
      output channels; :func:`~hw.engine_kinds.pool_unit_cycles` for POOL);
    * ADD: ``ceil(count / dw_channels)`` beats plus :data:`ADD_JOB_CYCLES` per engine job
      of at most ``max_width * max_height`` beats, plus :data:`ADD_FETCH_CYCLES` (the
      operands' first runs).
    * LOAD / STORE: :func:`dma_cycles`.
    """
    op = instr.opcode
    if op is Opcode.LOAD or op is Opcode.STORE:
        return dma_cycles(instr.rows, instr.row_bytes, arch, ddr_addr=instr.ddr_addr,
                          ddr_stride=instr.ddr_stride, write=op is Opcode.STORE)
    if op is Opcode.ADD:
        # MUL runs one element per beat (its broadcast operand changes at any element)
        lanes = 1 if instr.fields.get("op", EltOp.ADD) is EltOp.MUL else add_lanes(arch)
        beats = -(-instr.count // lanes)
        jobs = max(1, -(-beats // add_chunk_beats(arch)))
        # the table lookup: its read and the entries' register after the engine
        return (beats + ADD_JOB_CYCLES * jobs + ADD_FETCH_CYCLES
                + (ADD_TABLE_CYCLES if instr.fields.get("table") else 0))
    if op is not Opcode.COMPUTE:
        return 0
    return compute_cycles(instr, arch)


def timeline(instructions, arch: ArchConfig, instr_count=None):
    """Replay the SEML core's issue over ``instructions``.

    Issue is in program order: instruction ``k`` is issued :data:`ISSUE_LATENCY` cycles
    after the last beat of its word (at least :data:`ISSUE_INTERVAL` after the previous
    issue) and once the core sees its unit idle (the unit starts :data:`START_LAG` cycles
    after the issue, is busy :func:`instruction_cycles`, and the core sees it idle
    :data:`ISSUE_BUSY_LAG` cycles later); SYNC waits for the units in its mask and END for
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
            last_beats.append(max(request + 3, last_beats[-1] + 1) + w - 1)
        return last_beats[j]

    free = {Unit.LOAD: 0, Unit.COMPUTE: 0, Unit.STORE: 0}
    starts, finishes = [], []
    issued = -ISSUE_INTERVAL
    total = None
    for k, instr in enumerate(instructions):
        pop = max(word(k) + 2, issued + 1)
        pops.append(pop)
        t = pop + ISSUE_LATENCY - 2  # the decoder's stages, then ISSUE
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
            # burst. The refill that follows the next word's pop is not: its request
            # waits a cycle in the read arbiter's fetch slot, behind the LOAD's.
            ahead = word(k + FETCH_DEPTH)
            busy += (max(LOAD_START_CYCLES, ahead + 1 - t - START_LAG)
                     - _load_first_beat(arch))
        # the unit starts START_LAG cycles after the issue; the core sees it idle
        # ISSUE_BUSY_LAG cycles after it is
        free[unit] = t + START_LAG + busy + ISSUE_BUSY_LAG
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
        nb = (instr.b_count * e if instr.fields.get("op", EltOp.ADD) is EltOp.MUL else n)
        reads = [("IBUF", instr.a_addr, instr.a_addr + n),
                 ("IBUF", instr.b_addr, instr.b_addr + nb)]
        if instr.fields.get("table"):
            reads.append(("TBUF", 0, table_entries(arch.act_bits)))
        return reads, [("OBUF", instr.out_addr, instr.out_addr + n)]
    if op is Opcode.COMPUTE:
        reads = [("IBUF", instr.ibuf_addr,
                  instr.ibuf_addr + instr.in_c * instr.in_h * instr.in_w * e)]
        if engine_kind(instr.engine).weighted:
            reads.append(("WBUF", instr.wbuf_addr,
                          instr.wbuf_addr + weight_elements(instr) * weight_element_bytes(arch)))
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
