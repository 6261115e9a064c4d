"""Execution units of the SEML core: LOAD, STORE and the element-wise ADD.

Each unit takes one instruction at a time (``start`` with the instruction word, only
while ``busy`` is low) and keeps ``busy`` high until it is finished. They sit between
the DMA (:mod:`hw.seml.dma`), the on-chip buffers (:mod:`hw.seml.buffers`) and the
engines, converting byte runs in buffers to the engines' lane streams and back.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..arch import ArchConfig
from ..blocks.skid import SkidBuffer
from ..engine_kinds import buffer_banks
from ..engines.eltwise import EltwiseAddEngine
from ..isa import (
    INSTRUCTION,
    PBUF_ENTRY_BYTES,
    PBUF_RECORD_LAYOUT,
    Buffer,
    EltOp,
    element_bytes,
    table_entries,
)
from ..timing import BUFFER_READ_STAGES
from .buffers import bank_select
from .decode import size_bits
from .dma import DmaCommand

__all__ = [
    "ADD_RUNS",
    "AddUnit",
    "LoadUnit",
    "StoreUnit",
    "add_chunk_beats",
    "add_lanes",
    "bytes_from_lanes",
    "ceil_div_const",
    "lanes_from_bytes",
    "pbuf_layout",
]


def add_lanes(arch: ArchConfig) -> int:
    """Elements per cycle of the core's :class:`AddUnit`."""
    return arch.dw_channels


def add_chunk_beats(arch: ArchConfig) -> int:
    """Beats of one :class:`EltwiseAddEngine` job: longer ADDs are split into such jobs."""
    return arch.max_width * arch.max_height


def pbuf_layout(arch: ArchConfig) -> data.StructLayout:
    """One PBUF entry: the per-output-channel bias, multiplier and shift."""
    return data.StructLayout({
        "bias": signed(arch.bias_bits),
        "mult": arch.mult_bits,
        "shift": arch.shift_bits,
    })


def ceil_div_const(value, d: int):
    """``ceil(value / d)`` for an unsigned ``value`` and a constant ``d`` without a divider:
    a shift when ``d`` is a power of two, else a multiplication by the rounded-up
    reciprocal ``ceil(2**s / d)`` and a shift (exact for every ``value`` of its width,
    Granlund and Montgomery 1994, theorem 4.2)."""
    n = value + (d - 1)
    if d & (d - 1) == 0:
        return n >> exact_log2(d)
    bits = len(value) + 1
    s = bits + (d - 1).bit_length()
    return (n * -(-(1 << s) // d)) >> s


def lanes_from_bytes(m, raw, lanes, act_bits, name):
    """Signed ``act_bits`` values of ``lanes`` consecutive elements in the bytes ``raw``."""
    e = element_bytes(act_bits)
    out = []
    for i in range(lanes):
        v = Signal(signed(act_bits), name=f"{name}_{i}")
        m.d.comb += v.eq(raw[8 * e * i:8 * e * i + act_bits])
        out.append(v)
    return out


def bytes_from_lanes(values, act_bits):
    """Little-endian element bytes of signed lane values (sign-extended to whole bytes)."""
    pad = 8 * element_bytes(act_bits) - act_bits
    return Cat(*[Cat(v, v[-1].replicate(pad)) if pad else v for v in values])


def _transfer_members(arch: ArchConfig, data_dir):
    """Ports shared by :class:`LoadUnit` and :class:`StoreUnit`: the instruction handshake
    and the DMA command stream, and the DMA data stream in direction ``data_dir``."""
    addr_bits = arch.axi_addr_bits
    return {
        "start": In(1),
        "instr": In(INSTRUCTION),
        "size": In(size_bits(arch)),
        "data_base": In(addr_bits),
        "busy": Out(1),
        "dma_cmd": Out(stream.Signature(DmaCommand(addr_bits))),
        "dma_data": data_dir(stream.Signature(data.StructLayout(
            {"data": 8 * arch.axi_data_bytes, "last": 1}))),
    }


def _dma_command(m, unit, d):
    """Latch the DMA command of the transfer fields ``d`` when ``unit.start`` is high and
    offer it on ``unit.dma_cmd`` until taken; returns the "command pending" flag."""
    cmd_pending = Signal(name="cmd_pending")
    with m.If(unit.start):
        m.d.sync += [
            cmd_pending.eq(1),
            unit.dma_cmd.payload.addr.eq(unit.data_base + d.ddr_addr),
            unit.dma_cmd.payload.rows.eq(d.rows),
            unit.dma_cmd.payload.row_bytes.eq(d.row_bytes),
            unit.dma_cmd.payload.stride.eq(d.ddr_stride),
        ]
    m.d.comb += unit.dma_cmd.valid.eq(cmd_pending)
    with m.If(unit.dma_cmd.ready & cmd_pending):
        m.d.sync += cmd_pending.eq(0)
    return cmd_pending


class LoadUnit(wiring.Component):
    """LOAD: a 2-D DMA read from DDR into IBUF, WBUF (bytes) or PBUF (entries).

    Members
    -------
    start : In(1)
    instr : In(INSTRUCTION)
        The LOAD instruction, sampled with ``start``.
    size : In(size_bits(arch))
        Its ``rows * row_bytes``, sampled with ``start`` (the decoder's registered
        product: no multiplier here).
    data_base : In(addr_bits)
        DDR address of the image base; the instruction's ``ddr_addr`` is an offset.
    busy : Out(1)
    dma_cmd : Out(stream.Signature(DmaCommand(addr_bits)))
    dma_data : In(stream.Signature({"data", "last"}))
    ibuf_w_*, wbuf_w_* : write ports of the byte buffers (address, data, count).
    tbuf_w_* : write port of the element-wise unit's activation table (address, data,
        count; runs start at a bus-word boundary).
    pbuf_w_addr, pbuf_w_data, pbuf_w_en : write port of PBUF.

    Throughput: one bus word per cycle into IBUF / WBUF; PBUF takes one 16-byte record
    per cycle.
    """

    def __init__(self, arch: ArchConfig):
        self._arch = arch
        nbytes = arch.axi_data_bytes
        super().__init__({
            **_transfer_members(arch, In),
            "ibuf_w_addr": Out(range(arch.ibuf_bytes)),
            "ibuf_w_data": Out(8 * nbytes),
            "ibuf_w_count": Out(range(nbytes + 1)),
            "wbuf_w_addr": Out(range(arch.wbuf_bytes)),
            "wbuf_w_data": Out(8 * nbytes),
            "wbuf_w_count": Out(range(nbytes + 1)),
            "tbuf_w_addr": Out(range(max(table_entries(arch.act_bits), 2))),
            "tbuf_w_data": Out(8 * nbytes),
            "tbuf_w_count": Out(range(nbytes + 1)),
            "pbuf_w_addr": Out(range(max(arch.pbuf_entries, 2))),
            "pbuf_w_data": Out(pbuf_layout(arch)),
            "pbuf_w_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        nbytes = arch.axi_data_bytes
        d = self.instr.dma

        buffer = Signal(Buffer)
        ptr = Signal(32)
        left = Signal(len(self.size))
        cmd_pending = _dma_command(m, self, d)
        receiving = Signal()
        m.d.comb += self.busy.eq(cmd_pending | receiving)
        with m.If(self.start):
            m.d.sync += [
                buffer.eq(d.buffer),
                ptr.eq(d.buf_addr),
                left.eq(self.size),
                receiving.eq(1),
            ]

        # The bytes of this beat: a whole word while ``left`` has bits above a word's
        # (an OR of them, no compare), else the rest. ``left`` steps by the constant
        # word, or to zero, so its update does not wait for ``count``.
        count = Signal(range(nbytes + 1))
        left_next = Signal.like(left)
        words = left[exact_log2(nbytes):].any()
        m.d.comb += [
            count.eq(Mux(words, nbytes, left)),
            left_next.eq(Mux(words, left - nbytes, 0)),
        ]
        word = self.dma_data.payload.data
        for name in ("ibuf", "wbuf", "tbuf"):
            m.d.comb += [
                getattr(self, f"{name}_w_addr").eq(ptr),
                getattr(self, f"{name}_w_data").eq(word),
            ]

        # PBUF records: 16 bytes each, assembled from (or split out of) bus words.
        rec_bytes = PBUF_ENTRY_BYTES
        record = Signal(8 * rec_bytes)

        def write_record(rec):
            fields = data.View(PBUF_RECORD_LAYOUT, rec)
            m.d.comb += [
                self.pbuf_w_en.eq(1),
                self.pbuf_w_addr.eq(ptr),
                self.pbuf_w_data.bias.eq(fields.bias[:arch.bias_bits]),
                self.pbuf_w_data.mult.eq(fields.mult[:arch.mult_bits]),
                self.pbuf_w_data.shift.eq(fields.shift[:arch.shift_bits]),
            ]
            m.d.sync += ptr.eq(ptr + 1)

        is_pbuf = buffer == Buffer.PBUF
        if nbytes <= rec_bytes:
            per = rec_bytes // nbytes
            part = Signal(range(max(per, 2)))
            m.d.comb += self.dma_data.ready.eq(1)
            with m.If(self.dma_data.valid & receiving):
                m.d.sync += left.eq(left_next)
                with m.If(self.dma_data.payload.last):
                    m.d.sync += receiving.eq(0)
                with m.If(is_pbuf):
                    assembled = (Cat(record[8 * nbytes:], word) if per > 1 else word)
                    m.d.sync += record.eq(assembled)
                    with m.If(part == per - 1):
                        write_record(assembled)
                        m.d.sync += part.eq(0)
                    with m.Else():
                        m.d.sync += part.eq(part + 1)
                with m.Else():
                    m.d.sync += ptr.eq(ptr + nbytes)
                    with m.If(buffer == Buffer.IBUF):
                        m.d.comb += self.ibuf_w_count.eq(count)
                    with m.If(buffer == Buffer.WBUF):
                        m.d.comb += self.wbuf_w_count.eq(count)
                    with m.If(buffer == Buffer.TBUF):
                        m.d.comb += self.tbuf_w_count.eq(count)
        else:
            per = nbytes // rec_bytes
            held = Signal(8 * nbytes)
            index = Signal(range(per + 1))
            holding = Signal()
            records_left = Signal(len(self.size))
            held_last = Signal()
            m.d.comb += self.dma_data.ready.eq(~holding)
            with m.If(self.start):
                m.d.sync += records_left.eq(self.size >> exact_log2(rec_bytes))
            with m.If(self.dma_data.valid & ~holding & receiving):
                m.d.sync += left.eq(left_next)
                with m.If(is_pbuf):
                    m.d.sync += [held.eq(word), holding.eq(1), index.eq(0),
                                 held_last.eq(self.dma_data.payload.last)]
                with m.Else():
                    m.d.sync += ptr.eq(ptr + nbytes)
                    with m.If(self.dma_data.payload.last):
                        m.d.sync += receiving.eq(0)
                    with m.If(buffer == Buffer.IBUF):
                        m.d.comb += self.ibuf_w_count.eq(count)
                    with m.If(buffer == Buffer.WBUF):
                        m.d.comb += self.wbuf_w_count.eq(count)
                    with m.If(buffer == Buffer.TBUF):
                        m.d.comb += self.tbuf_w_count.eq(count)
            with m.If(holding):
                rec = held.word_select(index, 8 * rec_bytes)
                with m.If(records_left != 0):
                    write_record(rec)
                    m.d.sync += records_left.eq(records_left - 1)
                m.d.sync += index.eq(index + 1)
                with m.If((index == per - 1) | (records_left <= 1)):
                    m.d.sync += holding.eq(0)
                    with m.If(held_last):
                        m.d.sync += receiving.eq(0)
        return m


class StoreUnit(wiring.Component):
    """STORE: a 2-D DMA write of OBUF bytes to DDR.

    Members
    -------
    start, instr, size, data_base, busy : as :class:`LoadUnit`.
    dma_cmd : Out(stream.Signature(DmaCommand(addr_bits)))
    dma_data : Out(stream.Signature({"data", "last"}))
    dma_idle : In(1)
        The DMA's write side has every response (the data is in DDR).
    obuf_r_addr, obuf_r_en : Out; obuf_r_data : In(8 * banks)
        OBUF's raw read port (one cycle of latency): the ``banks`` banks' outputs in bank
        order (:class:`~hw.seml.buffers.ByteBuffer` with ``raw_reads``,
        ``banks = buffer_banks(arch)``); the bus word at the read address is selected
        after the unit's skid buffer.

    Throughput: one bus word per cycle.
    """

    def __init__(self, arch: ArchConfig):
        self._arch = arch
        self.banks = buffer_banks(arch)
        super().__init__({
            **_transfer_members(arch, Out),
            "dma_idle": In(1),
            "obuf_r_addr": Out(range(arch.obuf_bytes)),
            "obuf_r_en": Out(1),
            "obuf_r_data": In(8 * self.banks),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self._arch.axi_data_bytes
        d = self.instr.dma
        ptr = Signal(32)
        words = Signal(len(self.size))
        cmd_pending = _dma_command(m, self, d)
        sending = Signal()
        waiting = Signal()
        m.d.comb += self.busy.eq(cmd_pending | sending | waiting)
        with m.If(self.start):
            m.d.sync += [
                ptr.eq(d.buf_addr),
                words.eq((self.size + nbytes - 1) >> exact_log2(nbytes)),
                sending.eq(1),
            ]

        # Memory-to-stream with one cycle of read latency: the read data register
        # holds while the stream stalls, because the read is enabled only on advance.
        # The banks' raw outputs reach the DMA through a skid buffer with the read
        # address's low bits, so that OBUF's read data ends at flip-flops; the bus word
        # is selected after them.
        banks = self.banks
        lg = exact_log2(banks)
        low_bits = max(lg, 1)
        m.submodules.skid = skid = SkidBuffer(8 * banks + low_bits + 1)
        out_valid = Signal()
        out_last = Signal()
        out_low = Signal(low_bits)
        advance = ~out_valid | skid.i_ready
        o_word = skid.o_data[:8 * banks]
        o_low = skid.o_data[8 * banks:8 * banks + low_bits]
        m.d.comb += [
            skid.i_valid.eq(out_valid),
            skid.i_data.eq(Cat(self.obuf_r_data, out_low, out_last)),
            self.dma_data.valid.eq(skid.o_valid),
            self.dma_data.payload.data.eq(bank_select(o_word, banks, o_low, nbytes)),
            self.dma_data.payload.last.eq(skid.o_data[-1]),
            skid.o_ready.eq(self.dma_data.ready),
            self.obuf_r_addr.eq(ptr),
            self.obuf_r_en.eq(advance),
        ]
        with m.If(advance):
            with m.If(sending & (words != 0) & ~self.start):
                m.d.sync += [
                    out_valid.eq(1),
                    out_last.eq(words == 1),
                    out_low.eq(ptr[:lg] if lg else 0),
                    ptr.eq(ptr + nbytes),
                    words.eq(words - 1),
                ]
                with m.If(words == 1):
                    m.d.sync += [sending.eq(0), waiting.eq(1)]
            with m.Else():
                m.d.sync += out_valid.eq(0)
        # ``waiting`` lasts until the last word is gone and the DMA has every response.
        with m.If(waiting & ~cmd_pending & ~out_valid & ~skid.busy & self.dma_idle):
            m.d.sync += waiting.eq(0)
        return m


#: Runs each ADD operand holds (landed or in flight): two, and one per IBUF read stage,
#: so that with runs of four beats both operands' next runs land before they are needed.
ADD_RUNS = 2 + BUFFER_READ_STAGES


class AddUnit(wiring.Component):
    """The element-wise unit: ADD instructions (op ADD or MUL, optional table lookup).

    op ADD: ``out[i] = clamp(round_shift(a[i] * mult_a + b[i] * mult_b, shift), lo, hi)``;
    op MUL: ``out[i] = clamp(round_shift(a[i] * b[i // group] * mult_a, shift), lo, hi)``.
    With ``table`` set each result ``y`` is replaced by the activation table's entry
    ``y mod 2**act_bits`` (TBUF, written by LOAD).

    Streams ``a`` and ``b`` from IBUF, ``lanes`` elements per beat (one element per beat
    for MUL, whose ``b`` element may change at any element), through one wide IBUF read
    port (``banks`` bytes, :func:`hw.engine_kinds.buffer_banks`): each operand holds
    :data:`ADD_RUNS` runs of ``banks`` bytes (whole beats of them for ADD), read in order
    with a registered address, and reads the next as soon as one is used up. The first
    beat waits :data:`hw.timing.ADD_FETCH_CYCLES` cycles for both operands' first runs;
    with runs of at least four beats (``banks >= 4 * lanes * elem``) the reads then keep
    up. Through
    :class:`hw.engines.eltwise.EltwiseAddEngine` and writes the result into OBUF. Jobs
    longer than the engine's ``max_width * max_height`` beats are split.

    The activation table is one copy per lane of ``2**act_bits`` bytes (one write port
    from LOAD, one registered read port), stored as words of the bus width so that LOAD
    writes one bus word per cycle: 256 bytes per lane for 8-bit activations (LUT RAM or
    one block RAM each). No table is built for activations wider than
    :data:`hw.isa.TABLE_MAX_BITS`.

    Members
    -------
    start, instr, busy : as :class:`LoadUnit`.
    ibuf0_addr, ibuf0_en, ibuf0_data : the IBUF read port (``banks`` bytes, in bank
        order: :class:`~hw.seml.buffers.ByteBuffer` with ``raw_reads``); the address is
        0 while the unit does not read.
    obuf_w_addr, obuf_w_data, obuf_w_count : the OBUF write port.
    tbuf_w_addr, tbuf_w_data, tbuf_w_count : In; the table's write port (from LOAD).

    Throughput: ``lanes`` elements per cycle (one for MUL); the table lookup adds
    :data:`hw.timing.ADD_TABLE_CYCLES` cycles of latency (the read, and the entries'
    register).
    """

    def __init__(self, arch: ArchConfig, lanes=None):
        self._arch = arch
        self.lanes = add_lanes(arch) if lanes is None else lanes
        e = element_bytes(arch.act_bits)
        self.beat_bytes = self.lanes * e
        self.table_entries = table_entries(arch.act_bits)
        nbytes = arch.axi_data_bytes
        super().__init__({
            "start": In(1),
            "instr": In(INSTRUCTION),
            "busy": Out(1),
            "ibuf0_addr": Out(range(arch.ibuf_bytes)),
            "ibuf0_en": Out(1),
            "ibuf0_data": In(8 * buffer_banks(arch)),
            "obuf_w_addr": Out(range(arch.obuf_bytes)),
            "obuf_w_data": Out(8 * self.beat_bytes),
            "obuf_w_count": Out(range(self.beat_bytes + 1)),
            "tbuf_w_addr": In(range(max(self.table_entries, 2))),
            "tbuf_w_data": In(8 * nbytes),
            "tbuf_w_count": In(range(nbytes + 1)),
        })

    def _tables(self, m, values, lookup):
        """One table copy per lane: returns each lane's entry for ``values`` one cycle
        after ``lookup``."""
        arch = self._arch
        entries = self.table_entries
        word = min(arch.axi_data_bytes, entries)  # bytes per table word
        wbits = exact_log2(word)
        depth = entries // word
        mask = Signal(word, name="tbuf_mask")
        m.d.comb += mask.eq((Const(1, word + 1) << self.tbuf_w_count) - 1)
        out = []
        for i, v in enumerate(values):
            mem = Memory(shape=unsigned(8 * word), depth=depth, init=[])
            m.submodules[f"tbuf{i}"] = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            index = Signal(arch.act_bits, name=f"tbuf_index{i}")
            sel = Signal(max(wbits, 1), name=f"tbuf_sel{i}")
            m.d.comb += [
                wp.addr.eq(self.tbuf_w_addr >> wbits),
                wp.data.eq(self.tbuf_w_data[:8 * word]),
                wp.en.eq(mask),
                index.eq(v.as_unsigned()),
                rp.addr.eq(index >> wbits),
                rp.en.eq(lookup),
            ]
            if wbits:
                with m.If(lookup):
                    m.d.sync += sel.eq(index[:wbits])
            entry = Signal(signed(arch.act_bits), name=f"tbuf_entry{i}")
            m.d.comb += entry.eq(rp.data.word_select(sel, 8)[:arch.act_bits]
                                 if wbits else rp.data[:arch.act_bits])
            out.append(entry)
        return out

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        lanes = self.lanes
        bb = self.beat_bytes
        e = element_bytes(arch.act_bits)
        m.submodules.engine = engine = EltwiseAddEngine(arch, lanes=lanes, product=True)
        a = self.instr.add

        o_ptr = Signal.like(self.obuf_w_addr)
        beats_in = Signal(33)    # beats still to read
        reading = Signal()       # beats_in != 0, as a register
        beats_cmd = Signal(33)   # beats still to hand to the engine in commands
        bytes_out = Signal(34)   # result bytes still to write
        mul = Signal()           # op MUL: one element per beat, b broadcast over groups
        table = Signal()         # results go through the activation table
        group = Signal(32)
        in_group = Signal(32)    # elements of the current b element read so far
        group_end = Signal()     # in_group + 1 == group, as a register
        t_valid = Signal()       # the table stage holds a beat
        t_addr = Signal.like(self.obuf_w_addr)
        t_count = Signal(range(bb + 1))
        t2_valid = Signal()      # the entries' register holds a beat
        t2_addr = Signal.like(self.obuf_w_addr)
        t2_count = Signal(range(bb + 1))
        t2_data = Signal.like(self.obuf_w_data)
        with m.If(self.start):
            is_mul = a.op == EltOp.MUL
            beats = Mux(is_mul, a.count, ceil_div_const(a.count, lanes))
            m.d.sync += [
                o_ptr.eq(a.out_addr),
                beats_in.eq(beats),
                reading.eq(beats != 0),
                beats_cmd.eq(beats),
                bytes_out.eq(a.count * e),
                mul.eq(is_mul),
                table.eq(a.table if self.table_entries else 0),
                group.eq(a.group),
                in_group.eq(0),
                group_end.eq(a.group == 1),
                engine.cmd.payload.ma.eq(a.mult_a),
                engine.cmd.payload.mb.eq(a.mult_b),
                engine.cmd.payload.shift.eq(a.shift),
                engine.cmd.payload.lo.eq(a.act_lo),
                engine.cmd.payload.hi.eq(a.act_hi),
                engine.cmd.payload.mul.eq(is_mul),
            ]
        m.d.comb += self.busy.eq(reading | (beats_cmd != 0) | (bytes_out != 0) | t_valid
                                 | t2_valid)

        chunk = Signal(range(engine.max_count + 1))
        m.d.comb += [
            chunk.eq(Mux(beats_cmd < engine.max_count, beats_cmd, engine.max_count)),
            engine.cmd.payload.count.eq(chunk),
            # (no beats are left at ``start``: the unit is idle when ADD issues)
            engine.cmd.valid.eq(beats_cmd != 0),
        ]
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += beats_cmd.eq(beats_cmd - chunk)

        # Both operands come from the one IBUF read port, a run of ``banks`` bytes per
        # read: each operand holds up to ``ADD_RUNS`` runs (landed or in flight), read in
        # order and the next one issued as soon as one is used up. The issue looks at
        # registers only, and the read's address and enable are registers: a run lands ``2 +
        # BUFFER_READ_STAGES`` cycles after its issue, and no path runs from the operands'
        # positions into the banks.
        banks = buffer_banks(arch)
        step_add = banks // bb * bb     # the bytes of a run ADD uses: whole beats
        lg = max(exact_log2(banks), 1)
        out_valid = Signal()
        advance = ~out_valid | engine.a.ready
        S = ADD_RUNS
        ops = []

        def after(slot):
            return Mux(slot == S - 1, 0, slot + 1)

        for name, addr in (("a", a.a_addr), ("b", a.b_addr)):
            op = {"slots": [Signal(8 * banks, name=f"{name}_run{s}") for s in range(S)],
                  "v": [Signal(name=f"{name}_v{s}") for s in range(S)],
                  "head": Signal(range(S), name=f"{name}_head"),   # the run being read
                  # whether the run being read has landed (``v[head]``, as a register)
                  "head_v": Signal(name=f"{name}_head_v"),
                  "tail": Signal(range(S), name=f"{name}_tail"),   # where the next lands
                  "held": Signal(range(S + 1), name=f"{name}_held"),
                  "issue": Signal.like(self.ibuf0_addr, name=f"{name}_issue"),
                  "off": Signal(range(banks), name=f"{name}_off"),
                  # the bank of the element at ``off`` in the run being read, and that
                  # of the next run's first (runs start ``step`` bytes apart)
                  "first": Signal(lg, name=f"{name}_first"),
                  "next_first": Signal(lg, name=f"{name}_next_first"),
                  "start": addr}
            ops.append(op)
        ready = Signal()
        m.d.comb += ready.eq(ops[0]["head_v"] & ops[1]["head_v"])
        take = Signal()
        m.d.comb += take.eq(advance & reading & ready)
        # issue: the operand holding fewer runs, a first
        can = [reading & (op["held"] != S) for op in ops]
        pick_a = can[0] & (~can[1] | (ops[0]["held"] <= ops[1]["held"]))
        pick_b = can[1] & ~pick_a
        fl1_v, fl1_b, fl2_v, fl2_b = Signal(), Signal(), Signal(), Signal()
        # (the read address is 0 while the unit does not read: the core ORs its IBUF
        # readers)
        m.d.sync += [self.ibuf0_en.eq(pick_a | pick_b), self.ibuf0_addr.eq(0),
                     fl1_v.eq(pick_a | pick_b),
                     fl1_b.eq(pick_b), fl2_v.eq(fl1_v), fl2_b.eq(fl1_b)]
        # one more in-flight stage per IBUF read stage; the run lands from the last
        in_flight = [fl1_v, fl2_v]
        for k in range(BUFFER_READ_STAGES):
            st_v, st_b = Signal(name=f"fl{k + 3}_v"), Signal(name=f"fl{k + 3}_b")
            m.d.sync += [st_v.eq(fl2_v), st_b.eq(fl2_b)]
            fl2_v, fl2_b = st_v, st_b
            in_flight.append(st_v)
        last = Mux(mul, banks - e, step_add - bb)   # the offset of a run's last element
        run_step = Mux(mul, banks, step_add)        # bytes between two runs' starts
        elems = []
        for k, (op, picked) in enumerate(zip(ops, (pick_a, pick_b))):
            moves = take if k == 0 else take & (~mul | group_end)
            pop = Signal(name=f"pop_{'ab'[k]}")
            m.d.comb += pop.eq(moves & (op["off"] == last))
            with m.If(picked):
                m.d.sync += [self.ibuf0_addr.eq(op["issue"]),
                             op["issue"].eq(op["issue"] + run_step)]
            m.d.sync += op["held"].eq(op["held"] + picked - pop)
            with m.If(moves):
                m.d.sync += [op["off"].eq(Mux(pop, 0, op["off"] + Mux(mul, e, bb))),
                             op["first"].eq(Mux(pop, op["next_first"],
                                                op["first"] + Mux(mul, e, bb)))]
                with m.If(pop):
                    m.d.sync += op["next_first"].eq(op["next_first"] + run_step)
            lands = fl2_v & (fl2_b == k)
            # the next head's run: landed, or landing now
            head_next = after(op["head"])
            with m.If(pop):
                m.d.sync += [op["head"].eq(head_next),
                             op["head_v"].eq(Cat(*op["v"]).bit_select(head_next, 1)
                                             | (lands & (op["tail"] == head_next)))]
                for s in range(S):
                    with m.If(op["head"] == s):
                        m.d.sync += op["v"][s].eq(0)
            with m.Elif(lands & (op["tail"] == op["head"])):
                m.d.sync += op["head_v"].eq(1)
            with m.If(lands):   # the run lands
                m.d.sync += op["tail"].eq(after(op["tail"]))
                for s in range(S):
                    with m.If(op["tail"] == s):
                        m.d.sync += [op["slots"][s].eq(self.ibuf0_data), op["v"][s].eq(1)]
            run = Cat(*op["slots"]).word_select(op["head"], 8 * banks)
            el = Signal(8 * bb, name=f"{'ab'[k]}_el")
            m.d.comb += el.eq(bank_select(run, banks, op["first"], bb))
            elems.append(el)
        with m.If(self.start):
            for op in ops:
                m.d.sync += [op["head"].eq(0), op["head_v"].eq(0), op["tail"].eq(0),
                             op["held"].eq(0),
                             op["off"].eq(0), op["issue"].eq(op["start"]),
                             op["first"].eq(op["start"]),
                             op["next_first"].eq(op["start"] + Mux(a.op == EltOp.MUL, banks,
                                                                   step_add)),
                             *(v.eq(0) for v in op["v"])]
            m.d.sync += [v.eq(0) for v in in_flight]
        a_data = Signal(8 * bb)
        b_data = Signal(8 * bb)
        m.d.comb += [
            engine.a.valid.eq(out_valid),
            engine.b.valid.eq(out_valid),
        ]
        for i, v in enumerate(lanes_from_bytes(m, a_data, lanes, arch.act_bits, "a")):
            m.d.comb += engine.a.payload[i].eq(v)
        for i, v in enumerate(lanes_from_bytes(m, b_data, lanes, arch.act_bits, "b")):
            m.d.comb += engine.b.payload[i].eq(v)
        with m.If(advance):
            with m.If(take):
                m.d.sync += [
                    out_valid.eq(1),
                    a_data.eq(Mux(mul, elems[0][:8 * e], elems[0])),
                    b_data.eq(Mux(mul, elems[1][:8 * e], elems[1])),
                    beats_in.eq(beats_in - 1),
                    reading.eq(beats_in != 1),
                ]
                with m.If(mul & group_end):
                    m.d.sync += [in_group.eq(0), group_end.eq(group == 1)]
                with m.Elif(mul):
                    m.d.sync += [in_group.eq(in_group + 1),
                                 group_end.eq(in_group + 2 == group)]
            with m.Else():
                m.d.sync += out_valid.eq(0)

        results = [engine.o.payload[i] for i in range(lanes)]
        count = Signal(range(bb + 1))
        m.d.comb += [
            engine.o.ready.eq(1),
            count.eq(Mux(mul, e, Mux(bytes_out < bb, bytes_out, bb))),
        ]
        m.d.sync += t_valid.eq(engine.o.valid & table)
        with m.If(engine.o.valid):
            m.d.sync += [
                o_ptr.eq(o_ptr + Mux(mul, e, bb)),
                bytes_out.eq(bytes_out - count),
                t_addr.eq(o_ptr),
                t_count.eq(count),
            ]
        if self.table_entries:
            entries = self._tables(m, results, engine.o.valid & table)
            # the entries registered beside the tables (LUT RAM, read as it is): the
            # write to OBUF starts at flip-flops
            m.d.sync += t2_valid.eq(t_valid)
            with m.If(t_valid):
                m.d.sync += [t2_addr.eq(t_addr), t2_count.eq(t_count),
                             t2_data.eq(bytes_from_lanes(entries, arch.act_bits))]
            with m.If(t2_valid):
                m.d.comb += [
                    self.obuf_w_addr.eq(t2_addr),
                    self.obuf_w_data.eq(t2_data),
                    self.obuf_w_count.eq(t2_count),
                ]
        with m.If(~t2_valid):
            m.d.comb += [
                self.obuf_w_addr.eq(o_ptr),
                self.obuf_w_data.eq(bytes_from_lanes(results, arch.act_bits)),
            ]
            with m.If(engine.o.valid & ~table):
                m.d.comb += self.obuf_w_count.eq(count)
        return m
