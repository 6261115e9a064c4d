"""AXI4 master DMA of the SEML core: 2-D gathers from DDR and 2-D scatters to DDR.

A transfer is ``rows`` rows of ``row_bytes`` bytes, row ``r`` starting at DDR byte
address ``addr + r * stride``. Addresses, lengths and strides are arbitrary byte
values: the read side packs the bytes of all rows into one contiguous stream of
full bus words (the last one zero-padded), the write side takes such a stream and
spreads it over the rows with write strobes. Bursts are INCR, at most
``max_burst`` beats, and never cross a 4 KiB boundary (AXI4 rule).

Error responses (``SLVERR``, ``DECERR``) never stop a transfer: every burst is
still completed and every data word delivered, so nothing waits forever; the
error is latched in ``rd_error`` / ``wr_error`` until ``clear``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["PAGE_BYTES", "AxiDma", "DmaCommand", "axi_read_members", "burst_queue_bits"]

# As wide as the ISA's fields, so that no legal transfer can be truncated.
_ROWS_BITS = 32
_ROW_BYTES_BITS = 32
_PAGE = 4096
#: Stream words the write side holds.
_WR_WORDS = 4
#: Bursts never cross a boundary of this many bytes (AXI4 rule).
PAGE_BYTES = _PAGE


def axi_read_members(data_bits, addr_bits):
    """The AXI4 read address and read data channels of a manager (cocotbext-axi names, ID
    width 1), as component members."""
    return {
        "m_axi_arid": Out(1),
        "m_axi_araddr": Out(addr_bits),
        "m_axi_arlen": Out(8),
        "m_axi_arsize": Out(3),
        "m_axi_arburst": Out(2),
        "m_axi_arvalid": Out(1),
        "m_axi_arready": In(1),
        "m_axi_rid": In(1),
        "m_axi_rdata": In(data_bits),
        "m_axi_rresp": In(2),
        "m_axi_rlast": In(1),
        "m_axi_rvalid": In(1),
        "m_axi_rready": Out(1),
    }


def DmaCommand(addr_bits):
    """Layout of one 2-D transfer: base ``addr``, ``rows`` x ``row_bytes``, row ``stride``.

    ``stride`` wraps modulo ``2**addr_bits``, so a negative stride is its two's
    complement. A transfer with zero rows or zero bytes per row moves nothing.
    """
    return data.StructLayout({
        "addr": addr_bits,
        "rows": _ROWS_BITS,
        "row_bytes": _ROW_BYTES_BITS,
        "stride": addr_bits,
    })


def _descriptor_layout(bytes_per_beat, max_burst):
    return data.StructLayout({
        "offset": max(exact_log2(bytes_per_beat), 1),
        "nbytes": ceil_log2(max_burst * bytes_per_beat + 1),
        "last": 1,
    })


def burst_queue_bits(data_bits, max_burst):
    """``(descriptor, registers)``: the width of one direction's burst descriptor (its
    LUT-RAM FIFO holds ``outstanding - 1`` of them) and the flip-flops of that direction's
    head burst and beat registers (:class:`_BurstQueue`)."""
    nbytes = data_bits // 8
    layout = _descriptor_layout(nbytes, max_burst)
    offset = max(exact_log2(nbytes), 1)
    take = ceil_log2(nbytes + 1)
    burst = ceil_log2(max_burst * nbytes + 1)
    # head: valid, offset, first beat's bytes, bytes after it, its final flag, the
    # transfer's last flag, its byte mask; beat: first flag, bytes left, bytes, final
    # flag, byte mask
    head = 1 + offset + take + burst + 1 + 1 + nbytes
    beat = 1 + burst + take + 1 + nbytes
    return layout.size, head + beat


class _BurstQueue:
    """The bursts of one direction between its address and data sides.

    The address side writes each burst's lane offset, byte count and last-of-transfer
    flag into a LUT-RAM FIFO (``outstanding - 1`` entries) as it issues the address.
    The burst at the data side's head is held in registers, decoded as it leaves the
    FIFO: its first beat's byte count and byte mask, whether that beat is the burst's
    final one, and the bytes after it. Each next beat's count, mask and final flag are
    registered with the beat before it. So every quantity the data side uses per beat
    is a register or a two-way choice between registers, and no arithmetic lies between
    the FIFO and the data path.

    ``fire``: a beat of the head burst goes; ``pop``: it is the burst's final beat (the
    head then takes the next burst, in the same cycle if one is waiting).
    """

    def __init__(self, m, *, bytes_per_beat, max_burst, outstanding, prefix, strobes):
        n = bytes_per_beat
        lanes_log2 = exact_log2(n)
        layout = _descriptor_layout(n, max_burst)
        burst_bits = ceil_log2(max_burst * n + 1)
        fifo = SyncFIFO(width=layout.size, depth=max(outstanding - 1, 1))
        m.submodules[f"{prefix}_desc"] = fifo
        self.w_data = data.View(layout, fifo.w_data)
        self.w_en = fifo.w_en
        self.w_rdy = Signal(name=f"{prefix}_q_w_rdy")
        self.fire = Signal(name=f"{prefix}_q_fire")
        self.pop = Signal(name=f"{prefix}_q_pop")
        self.valid = Signal(name=f"{prefix}_head_valid")
        self.last = Signal(name=f"{prefix}_head_last")
        self.busy = Signal(name=f"{prefix}_q_busy")

        offset = Signal(max(lanes_log2, 1), name=f"{prefix}_head_offset")
        first_take = Signal(range(n + 1), name=f"{prefix}_head_take")
        rest = Signal(burst_bits, name=f"{prefix}_head_rest")
        single = Signal(name=f"{prefix}_head_single")
        first_mask = Signal(n, name=f"{prefix}_head_mask")
        first = Signal(init=1, name=f"{prefix}_first")
        left = Signal(burst_bits, name=f"{prefix}_beat_left")
        take = Signal(range(n + 1), name=f"{prefix}_beat_take")
        final = Signal(name=f"{prefix}_beat_final")
        mask = Signal(n, name=f"{prefix}_beat_mask")

        def thermometer(count):
            return (Const(1, n + 1) << count) - 1

        # per beat: the lane of its first byte, its byte count, its byte mask (on the bus
        # lanes with ``strobes``, else from lane 0), and whether it ends the burst
        self.lane = Signal(max(lanes_log2, 1), name=f"{prefix}_lane")
        self.take = Signal(range(n + 1), name=f"{prefix}_take")
        self.mask = Signal(n, name=f"{prefix}_mask")
        self.final = Signal(name=f"{prefix}_final")
        m.d.comb += [
            self.lane.eq(Mux(first, offset, 0)),
            self.take.eq(Mux(first, first_take, take)),
            self.mask.eq(Mux(first, first_mask, mask)),
            self.final.eq(Mux(first, single, final)),
        ]

        # head burst, decoded from the FIFO's output
        head = data.View(layout, fifo.r_data)
        room = Signal(range(n + 1), name=f"{prefix}_head_room")
        fits = Signal(name=f"{prefix}_head_fits")
        count = Signal(range(n + 1), name=f"{prefix}_head_count")
        m.d.comb += [
            room.eq(n - (head.offset if lanes_log2 else 0)),
            fits.eq(head.nbytes <= room),
            count.eq(Mux(fits, head.nbytes, room)),
        ]
        load = Signal(name=f"{prefix}_head_load")
        m.d.comb += [
            load.eq(fifo.r_rdy & (~self.valid | self.pop)),
            fifo.r_en.eq(load),
            self.busy.eq(self.valid | fifo.r_rdy),
        ]
        if outstanding > 1:
            m.d.comb += self.w_rdy.eq(fifo.w_rdy)
        else:
            m.d.comb += self.w_rdy.eq(fifo.w_rdy & ~self.valid)
        with m.If(load):
            m.d.sync += [
                self.valid.eq(1),
                offset.eq(head.offset if lanes_log2 else 0),
                first_take.eq(count),
                rest.eq(head.nbytes - count),
                single.eq(fits),
                self.last.eq(head.last),
                first_mask.eq(thermometer(count) << (head.offset if strobes and lanes_log2
                                                     else 0)),
            ]
        with m.Elif(self.pop):
            m.d.sync += self.valid.eq(0)

        # the next beat of the same burst
        after = Signal(burst_bits, name=f"{prefix}_beat_after")
        m.d.comb += after.eq(Mux(first, rest, left - n))
        with m.If(self.fire):
            m.d.sync += [
                first.eq(self.pop),
                left.eq(after),
                take.eq(Mux(after < n, after, n)),
                final.eq(after <= n),
                mask.eq(Mux(after < n, thermometer(after[:lanes_log2 + 1]), (1 << n) - 1)),
            ]


class _BurstSplitter:
    """Address-side walk of a 2-D transfer shared by the read and write halves.

    Builds, inside ``m``, a command register set that splits the current row
    into bursts; ``fire`` advances to the next burst. Exposes the burst's aligned
    address, beat count, first-lane offset and byte count, and ``last``.
    """

    def __init__(self, m, cmd, *, addr_bits, bytes_per_beat, max_burst, prefix,
                 size_bits=_ROW_BYTES_BITS):
        lanes_log2 = exact_log2(bytes_per_beat)
        self.active = Signal(name=f"{prefix}_active")
        self.fire = Signal(name=f"{prefix}_fire")
        row_addr = Signal(addr_bits, name=f"{prefix}_row_addr")
        cur_addr = Signal(addr_bits, name=f"{prefix}_cur_addr")
        row_left = Signal(size_bits, name=f"{prefix}_row_left")
        rows_left = Signal(size_bits, name=f"{prefix}_rows_left")
        row_bytes = Signal(size_bits, name=f"{prefix}_row_bytes")
        stride = Signal(addr_bits, name=f"{prefix}_stride")

        self.offset = Signal(lanes_log2 or 1, name=f"{prefix}_offset")
        self.aligned = Signal(addr_bits, name=f"{prefix}_aligned")
        self.beats = Signal(range(max_burst + 1), name=f"{prefix}_beats")
        self.nbytes = Signal(range(max_burst * bytes_per_beat + 1), name=f"{prefix}_nbytes")
        self.last = Signal(name=f"{prefix}_last")

        span_max = max_burst * bytes_per_beat
        # Bytes from the current address to the end of the burst: to the next 4 KiB page
        # or ``span_max`` bytes from the aligned address, whichever comes first. A
        # register, set with the address it belongs to: a burst's length is then one
        # compare away from the registers, and the next address's room is taken in
        # parallel with that compare.
        room = Signal(range(max(span_max, _PAGE) + 1), name=f"{prefix}_room")
        row_done = Signal(name=f"{prefix}_row_done")

        def room_of(addr):
            offset = addr[:lanes_log2] if lanes_log2 else 0
            if span_max <= _PAGE:
                # Both are powers of two: the page ends first only within the page's last
                # ``span_max`` bytes, and then it is ``span_max`` minus the address's low
                # bits away (one short subtraction instead of a chain of them).
                s = exact_log2(span_max)
                last_span = addr[s:12].all() if s < 12 else Const(1, 1)
                low = addr[:s] if s else Const(0, 1)
                return span_max - Mux(last_span, low, offset)
            to_page = _PAGE - (addr[:12] & ~Const(bytes_per_beat - 1, 12))
            return Mux(to_page < span_max, to_page, span_max) - offset

        m.d.comb += [
            self.offset.eq(cur_addr[:lanes_log2] if lanes_log2 else 0),
            self.aligned.eq(cur_addr & ~Const(bytes_per_beat - 1, addr_bits)),
            self.nbytes.eq(Mux(row_done, row_left, room)),
            self.beats.eq((self.offset + self.nbytes + bytes_per_beat - 1) >> lanes_log2),
            row_done.eq(row_left <= room),
            self.last.eq(row_done & (rows_left == 1)),
        ]
        self.cmd_ready = Signal(name=f"{prefix}_cmd_ready")
        m.d.comb += self.cmd_ready.eq(~self.active)
        nonempty = (cmd.payload.rows != 0) & (cmd.payload.row_bytes != 0)
        with m.If(cmd.valid & ~self.active & nonempty):
            m.d.sync += [
                self.active.eq(1),
                row_addr.eq(cmd.payload.addr),
                cur_addr.eq(cmd.payload.addr),
                room.eq(room_of(cmd.payload.addr)),
                row_left.eq(cmd.payload.row_bytes),
                row_bytes.eq(cmd.payload.row_bytes),
                rows_left.eq(cmd.payload.rows),
                stride.eq(cmd.payload.stride),
            ]
        with m.If(self.fire):
            with m.If(row_done):
                next_row = Signal(addr_bits, name=f"{prefix}_next_row")
                m.d.comb += next_row.eq(row_addr + stride)
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    row_addr.eq(next_row),
                    cur_addr.eq(next_row),
                    room.eq(room_of(next_row)),
                    row_left.eq(row_bytes),
                ]
                with m.If(rows_left == 1):
                    m.d.sync += self.active.eq(0)
            with m.Else():
                # the burst takes the whole room
                next_addr = Signal(addr_bits, name=f"{prefix}_next_addr")
                m.d.comb += next_addr.eq(cur_addr + room)
                m.d.sync += [
                    cur_addr.eq(next_addr),
                    room.eq(room_of(next_addr)),
                    row_left.eq(row_left - room),
                ]


class AxiDma(wiring.Component):
    """AXI4 master moving 2-D transfers between DDR and byte streams.

    Parameters
    ----------
    data_bits : int
        AXI data width (32, 64, 128, 256 or 512).
    addr_bits : int
        AXI address width (16..64).
    max_burst : int
        Largest burst in beats (power of two, 1..256).
    outstanding : int
        Bursts in flight per direction (power of two, 1..16).
    size_bits : int
        Bits kept of a command's ``rows`` and ``row_bytes`` (default 32, all of them): a
        user whose transfers are smaller (the SEML core's fit in a buffer) shortens the
        burst splitter's counters and compares.

    Members
    -------
    m_axi_* : AXI4 master (cocotbext-axi names), ID width 1, all IDs 0.
    rd_cmd : In(stream.Signature(DmaCommand(addr_bits)))
        Read (DDR to stream) transfers.
    rd_data : Out(stream.Signature({"data": data_bits, "last": 1}))
        Packed bytes of the current read transfer, byte 0 in the LSBs; ``last`` marks
        its final word, whose bytes past the transfer length are zero.
    wr_cmd : In(stream.Signature(DmaCommand(addr_bits)))
        Write (stream to DDR) transfers.
    wr_data : In(stream.Signature({"data": data_bits, "last": 1}))
        Packed bytes for the current write transfer, ``ceil(total / bytes)`` words,
        ``last`` set on the final one (its bytes past the transfer are ignored).
    rd_idle, wr_idle : Out(1)
        No transfer of that direction is in progress (for writes: every response
        has arrived, so the data is in DDR).
    rd_error, wr_error : Out(1)
        An error response arrived; held until ``clear``.
    clear : In(1)
        Drop the error flags.

    Throughput: one bus word per cycle in each direction when the slave and the
    stream partner keep up; the address of the next burst is issued while the
    current one transfers, up to ``outstanding`` bursts ahead. The read side takes
    one beat per cycle at any lane offset while ``rd_data`` is ready every cycle
    (``m_axi_rready`` follows ``rd_data.ready`` combinationally); the write side sends
    one beat per cycle at any lane offset while ``wr_data`` brings a word every cycle
    (``wr_data.ready`` is a function of registers only: up to four words are held).
    """

    def __init__(self, *, data_bits=64, addr_bits=32, max_burst=16, outstanding=4,
                 size_bits=_ROW_BYTES_BITS):
        if not isinstance(data_bits, int) or isinstance(data_bits, bool):
            raise TypeError(f"Data width must be an integer, not {data_bits!r}")
        if data_bits not in (32, 64, 128, 256, 512):
            raise ValueError(f"Data width must be one of 32, 64, 128, 256, 512, not {data_bits!r}")
        if not isinstance(addr_bits, int) or isinstance(addr_bits, bool):
            raise TypeError(f"Address width must be an integer, not {addr_bits!r}")
        if not 16 <= addr_bits <= 64:
            raise ValueError(f"Address width must be between 16 and 64, not {addr_bits!r}")
        if not isinstance(max_burst, int) or isinstance(max_burst, bool):
            raise TypeError(f"Maximum burst must be an integer, not {max_burst!r}")
        if not 1 <= max_burst <= 256 or max_burst & (max_burst - 1):
            raise ValueError(
                f"Maximum burst must be a power of two between 1 and 256, not {max_burst!r}")
        if not isinstance(outstanding, int) or isinstance(outstanding, bool):
            raise TypeError(f"Outstanding bursts must be an integer, not {outstanding!r}")
        if not 1 <= outstanding <= 16 or outstanding & (outstanding - 1):
            raise ValueError(
                f"Outstanding bursts must be a power of two between 1 and 16, not {outstanding!r}")
        if not isinstance(size_bits, int) or not 1 <= size_bits <= _ROW_BYTES_BITS:
            raise ValueError(f"Size bits must be an integer between 1 and {_ROW_BYTES_BITS}, "
                             f"not {size_bits!r}")
        self._size_bits = size_bits
        self._data_bits = data_bits
        self._addr_bits = addr_bits
        self._max_burst = max_burst
        self._outstanding = outstanding
        strb = data_bits // 8
        super().__init__({
            "m_axi_awid": Out(1),
            "m_axi_awaddr": Out(addr_bits),
            "m_axi_awlen": Out(8),
            "m_axi_awsize": Out(3),
            "m_axi_awburst": Out(2),
            "m_axi_awvalid": Out(1),
            "m_axi_awready": In(1),
            "m_axi_wdata": Out(data_bits),
            "m_axi_wstrb": Out(strb),
            "m_axi_wlast": Out(1),
            "m_axi_wvalid": Out(1),
            "m_axi_wready": In(1),
            "m_axi_bid": In(1),
            "m_axi_bresp": In(2),
            "m_axi_bvalid": In(1),
            "m_axi_bready": Out(1),
            **axi_read_members(data_bits, addr_bits),
            "rd_cmd": In(stream.Signature(DmaCommand(addr_bits))),
            "rd_data": Out(stream.Signature(data.StructLayout({"data": data_bits, "last": 1}))),
            "wr_cmd": In(stream.Signature(DmaCommand(addr_bits))),
            "wr_data": In(stream.Signature(data.StructLayout({"data": data_bits, "last": 1}))),
            "rd_idle": Out(1),
            "wr_idle": Out(1),
            "rd_error": Out(1),
            "wr_error": Out(1),
            "clear": In(1),
        })

    @property
    def data_bytes(self):
        return self._data_bits // 8

    def elaborate(self, platform):
        m = Module()
        nbytes = self.data_bytes
        lanes_log2 = exact_log2(nbytes)
        width = self._data_bits
        for prefix in ("aw", "ar"):
            m.d.comb += [
                getattr(self, f"m_axi_{prefix}id").eq(0),
                getattr(self, f"m_axi_{prefix}size").eq(lanes_log2),
                getattr(self, f"m_axi_{prefix}burst").eq(0b01),  # INCR
            ]

        with m.If(self.clear):
            m.d.sync += [self.rd_error.eq(0), self.wr_error.eq(0)]

        # Read: address side ---------------------------------------------------------------
        rq = _BurstQueue(m, bytes_per_beat=nbytes, max_burst=self._max_burst,
                         outstanding=self._outstanding, prefix="rd", strobes=False)
        rd = _BurstSplitter(m, self.rd_cmd, addr_bits=self._addr_bits, bytes_per_beat=nbytes,
                            max_burst=self._max_burst, prefix="rd",
                            size_bits=self._size_bits)
        m.d.comb += self.rd_cmd.ready.eq(rd.cmd_ready)
        m.d.comb += [
            self.m_axi_araddr.eq(rd.aligned),
            self.m_axi_arlen.eq(rd.beats - 1),
            self.m_axi_arvalid.eq(rd.active & rq.w_rdy),
            rq.w_data.offset.eq(rd.offset),
            rq.w_data.nbytes.eq(rd.nbytes),
            rq.w_data.last.eq(rd.last),
            rd.fire.eq(self.m_axi_arvalid & self.m_axi_arready),
            rq.w_en.eq(rd.fire),
        ]

        # Read: data side, packing each beat's valid bytes into whole words ----------------
        acc = Signal(2 * width)
        fill = Signal(range(2 * nbytes + 1))
        all_in = Signal()
        out_fire = Signal()
        # ``valid`` (a word or the transfer's rest is held) and ``last`` are registers,
        # set from the next ``fill`` and ``all_in``: the consumer's logic starts at
        # flip-flops, not at the fill level's compares
        out_valid = Signal()
        out_last = Signal()
        m.d.comb += [
            self.rd_data.valid.eq(out_valid),
            self.rd_data.payload.data.eq(acc[:width]),
            self.rd_data.payload.last.eq(out_last),
            out_fire.eq(self.rd_data.valid & self.rd_data.ready),
        ]
        # A beat is taken when a word leaves in this cycle (``fill >= nbytes`` then: room
        # for a whole beat after it) or when at most a word is held (``room``, a register
        # set with ``fill``), so with a ready consumer every beat is taken at once, at any
        # lane offset, and ``rready`` (which goes through the read arbiter and back into
        # the burst queue's head) starts at registers and the consumer's ``ready``, not
        # at the beat's byte count and an adder.
        in_ok = Signal()
        room = Signal(init=1)
        m.d.comb += [
            in_ok.eq(rq.valid & ~all_in & (out_fire | room)),
            self.m_axi_rready.eq(in_ok),
        ]
        beat = Signal()
        m.d.comb += [
            beat.eq(self.m_axi_rvalid & in_ok),
            rq.fire.eq(beat),
            rq.pop.eq(beat & self.m_axi_rlast),
        ]
        # Bytes past the transfer are zero: masked per beat before they enter ``acc``.
        shifted = Signal(width)
        m.d.comb += shifted.eq((self.m_axi_rdata >> (rq.lane * 8))
                               & Cat(*(b.replicate(8) for b in rq.mask)))
        base = Signal(2 * width)
        base_fill = Signal(range(2 * nbytes + 1))
        # ``fill`` less the word that leaves (``fill <= 2 * nbytes``, ``nbytes`` a power of
        # two): ``nbytes`` from a full ``2 * nbytes``, the low bits from ``nbytes`` or
        # more, none from less; bit selects, no subtraction before the shift.
        after_out = Signal.like(fill)
        m.d.comb += [
            after_out.eq(Mux(fill[lanes_log2 + 1], nbytes,
                             Mux(fill[lanes_log2], fill[:lanes_log2] if lanes_log2 else 0,
                                 0))),
            base.eq(Mux(out_fire, acc >> width, acc)),
            base_fill.eq(Mux(out_fire, after_out, fill)),
        ]
        fill_next = Signal.like(fill)
        all_in_next = Signal()
        m.d.comb += [fill_next.eq(base_fill), all_in_next.eq(all_in)]
        m.d.sync += acc.eq(base)
        with m.If(beat):
            m.d.comb += fill_next.eq(base_fill + rq.take)
            m.d.sync += acc.eq(base | (shifted << (base_fill * 8)))
            with m.If(self.m_axi_rresp != 0):
                m.d.sync += self.rd_error.eq(1)
            with m.If(self.m_axi_rlast & rq.last):
                m.d.comb += all_in_next.eq(1)
        with m.If(out_fire & self.rd_data.payload.last):
            m.d.comb += [all_in_next.eq(0), fill_next.eq(0)]
            m.d.sync += acc.eq(0)
        m.d.sync += [
            fill.eq(fill_next), all_in.eq(all_in_next), room.eq(fill_next <= nbytes),
            out_valid.eq((fill_next >= nbytes) | (all_in_next & (fill_next != 0))),
            out_last.eq(all_in_next & (fill_next <= nbytes)),
        ]
        m.d.comb += self.rd_idle.eq(~rd.active & ~rq.busy & ~all_in & (fill == 0))

        # Write: address side --------------------------------------------------------------
        wq = _BurstQueue(m, bytes_per_beat=nbytes, max_burst=self._max_burst,
                         outstanding=self._outstanding, prefix="wr", strobes=True)
        wr = _BurstSplitter(m, self.wr_cmd, addr_bits=self._addr_bits, bytes_per_beat=nbytes,
                            max_burst=self._max_burst, prefix="wr",
                            size_bits=self._size_bits)
        pending = Signal(range(2 * self._outstanding + 2))
        m.d.comb += self.wr_cmd.ready.eq(wr.cmd_ready)
        m.d.comb += [
            self.m_axi_awaddr.eq(wr.aligned),
            self.m_axi_awlen.eq(wr.beats - 1),
            self.m_axi_awvalid.eq(wr.active & wq.w_rdy & (pending < 2 * self._outstanding)),
            wq.w_data.offset.eq(wr.offset),
            wq.w_data.nbytes.eq(wr.nbytes),
            wq.w_data.last.eq(wr.last),
            wr.fire.eq(self.m_axi_awvalid & self.m_axi_awready),
            wq.w_en.eq(wr.fire),
        ]
        b_fire = Signal()
        m.d.comb += [self.m_axi_bready.eq(1), b_fire.eq(self.m_axi_bvalid)]
        with m.If(b_fire & (self.m_axi_bresp != 0)):
            m.d.sync += self.wr_error.eq(1)
        m.d.sync += pending.eq(pending + wr.fire - b_fire)

        # Write: data side, unpacking stream bytes onto each beat's lanes -------------------
        # Stream words wait in four word registers, written in turn. A beat's bytes are
        # the next ``take`` bytes from ``wpos`` in the oldest word and the one after it,
        # rotated onto the beat's lanes from ``lane``; a beat that reaches the oldest
        # word's end frees it. No register is shifted by a beat's byte count: the word
        # registers are written only by the stream and read through two pointers, so the
        # beat side moves a pointer and a byte position. A word is taken while a register
        # is free, whatever the beat of the same cycle does, so ``wr_data.ready`` comes
        # from flip-flops (no path from ``m_axi_wready`` back into the stream's
        # producer); while words come every cycle, one beat leaves per cycle at any lane
        # offset with a ready slave. After the transfer's ``last`` word no more are taken
        # until its final beat has gone, which also drops the padding.
        slots = Array(Signal(width, name=f"wword{i}") for i in range(_WR_WORDS))
        ptr_bits = exact_log2(_WR_WORDS)
        wp = Signal(ptr_bits)
        rp = Signal(ptr_bits)
        rp_next = Signal(ptr_bits, init=1)
        held = Signal(range(_WR_WORDS + 1))
        wpos = Signal(lanes_log2)
        avail = Signal(range(_WR_WORDS * nbytes + 1))
        avail_in = Signal(range(_WR_WORDS * nbytes + 1))
        got_last = Signal()
        w_fire = Signal()
        in_fire = Signal()
        window = Signal(2 * width)
        rot = Signal(lanes_log2 + 1)
        pos_sum = Signal(lanes_log2 + 1)
        word_done = Signal()
        m.d.comb += [
            window.eq(Cat(slots[rp], slots[rp_next])),
            rot.eq(wpos - wq.lane),
            self.m_axi_wvalid.eq(wq.valid & (avail >= wq.take)),
            self.m_axi_wdata.eq((Cat(window, window[:width]) >> (rot * 8))[:width]),
            self.m_axi_wstrb.eq(wq.mask),
            self.m_axi_wlast.eq(wq.final),
            w_fire.eq(self.m_axi_wvalid & self.m_axi_wready),
            wq.fire.eq(w_fire),
            wq.pop.eq(w_fire & wq.final),
            self.wr_data.ready.eq(~got_last & (held != _WR_WORDS)),
            in_fire.eq(self.wr_data.valid & self.wr_data.ready),
            pos_sum.eq(wpos + wq.take),
            word_done.eq(w_fire & pos_sum[lanes_log2]),
            avail_in.eq(avail + Mux(in_fire, nbytes, 0)),
        ]
        m.d.sync += [
            held.eq(held + in_fire - word_done),
            # the beat's handshake picks between sums taken beforehand
            avail.eq(Mux(w_fire, avail_in - wq.take, avail_in)),
        ]
        with m.If(in_fire):
            m.d.sync += [slots[wp].eq(self.wr_data.payload.data), wp.eq(wp + 1)]
            with m.If(self.wr_data.payload.last):
                m.d.sync += got_last.eq(1)
        with m.If(w_fire):
            m.d.sync += wpos.eq(pos_sum[:lanes_log2])
        with m.If(word_done):
            m.d.sync += [rp.eq(rp + 1), rp_next.eq(rp_next + 1)]
        with m.If(w_fire & wq.final & wq.last):
            m.d.sync += [wp.eq(0), rp.eq(0), rp_next.eq(1), held.eq(0), wpos.eq(0),
                         avail.eq(0), got_last.eq(0)]
        m.d.comb += self.wr_idle.eq(~wr.active & ~wq.busy & (pending == 0))
        return m
