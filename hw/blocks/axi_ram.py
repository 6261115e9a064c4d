"""Block RAM behind an AXI4 slave port, plus a word port for a local host.

:class:`AxiRam` stands in for DDR on boards without it (or without a processor to
fill it): the SEML core's AXI4 master reads and writes it like DDR, and a local
host (e.g. a UART bridge) loads and reads it through the word port while the core
is idle.

The memory is one simple dual-port RAM (one write port with byte enables, one
read port with registered data): it maps to block RAM. INCR bursts of full-width
beats are served at one beat per cycle in each direction; a beat outside the
memory is not performed and its burst is answered with ``SLVERR``. The R channel
leaves through a :class:`~hw.blocks.skid.SkidBuffer` beside the RAM: the master sees
its read data from flip-flops, not from the block RAM's output (a read beat takes one
cycle more), and the RAM's read enable no path from ``rready``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .skid import SkidBuffer

__all__ = ["AxiRam"]

_SLVERR = 0b10


class AxiRam(wiring.Component):
    """AXI4 slave over ``size`` bytes of block RAM, at addresses ``0 .. size - 1``.

    Parameters
    ----------
    size : int
        Bytes of memory (a multiple of the bus width).
    data_bits : int
        Bus width (32 .. 512, a power of two).
    addr_bits : int
        AXI address width.
    id_bits : int
        AXI ID width (IDs are returned with their responses).

    Members
    -------
    s_axi_* : AXI4 slave (cocotbext-axi / Xilinx names; no lock, cache, prot or qos).
        Only INCR bursts of full-width beats (``size`` = log2 of the bus bytes) are
        supported, which is what the SEML core's DMA issues.
    host_sel : In(1)
        The word port owns the memory; the AXI channels then stall. Raise it only
        while no AXI burst is in flight.
    host_addr : In(range(words))
        Word address of the local access.
    host_wdata, host_wstrb, host_we : In
        Write data, byte enables and write strobe.
    host_re : In(1)
        Read ``host_addr``; the word is on ``host_rdata`` the next cycle (and held).
    host_rdata : Out(data_bits)
    """

    def __init__(self, size: int, *, data_bits: int = 32, addr_bits: int = 32, id_bits: int = 1):
        if data_bits not in (32, 64, 128, 256, 512):
            raise ValueError(f"AXI RAM data width must be 32..512 (a power of two), "
                             f"not {data_bits!r}")
        nbytes = data_bits // 8
        if not isinstance(size, int) or isinstance(size, bool) or size < nbytes \
                or size % nbytes:
            raise ValueError(f"AXI RAM size must be a positive multiple of {nbytes} bytes, "
                             f"not {size!r}")
        if not isinstance(addr_bits, int) or not 12 <= addr_bits <= 64 or size > 1 << addr_bits:
            raise ValueError(f"AXI RAM address width must be 12..64 bits and cover the "
                             f"memory, not {addr_bits!r}")
        self.size = size
        self.data_bits = data_bits
        self.addr_bits = addr_bits
        self.words = size // nbytes
        super().__init__({
            "s_axi_awid": In(id_bits), "s_axi_awaddr": In(addr_bits), "s_axi_awlen": In(8),
            "s_axi_awsize": In(3), "s_axi_awburst": In(2), "s_axi_awvalid": In(1),
            "s_axi_awready": Out(1),
            "s_axi_wdata": In(data_bits), "s_axi_wstrb": In(nbytes), "s_axi_wlast": In(1),
            "s_axi_wvalid": In(1), "s_axi_wready": Out(1),
            "s_axi_bid": Out(id_bits), "s_axi_bresp": Out(2), "s_axi_bvalid": Out(1),
            "s_axi_bready": In(1),
            "s_axi_arid": In(id_bits), "s_axi_araddr": In(addr_bits), "s_axi_arlen": In(8),
            "s_axi_arsize": In(3), "s_axi_arburst": In(2), "s_axi_arvalid": In(1),
            "s_axi_arready": Out(1),
            "s_axi_rid": Out(id_bits), "s_axi_rdata": Out(data_bits), "s_axi_rresp": Out(2),
            "s_axi_rlast": Out(1), "s_axi_rvalid": Out(1), "s_axi_rready": In(1),
            "host_sel": In(1),
            "host_addr": In(range(self.words)),
            "host_wdata": In(data_bits),
            "host_wstrb": In(nbytes),
            "host_we": In(1),
            "host_re": In(1),
            "host_rdata": Out(data_bits),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self.data_bits // 8
        shift = exact_log2(nbytes)
        word_bits = max(ceil_log2(self.words), 1)
        m.submodules.mem = mem = Memory(shape=self.data_bits, depth=self.words, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port()
        m.d.comb += self.host_rdata.eq(rd.data)

        def in_range(word):
            return word < self.words

        # Write channel: AW, then the beats, then B.
        w_active = Signal()
        w_addr = Signal(self.addr_bits - shift)
        w_id = Signal.like(self.s_axi_awid)
        w_err = Signal()
        bvalid = Signal()
        m.d.comb += [
            self.s_axi_awready.eq(~w_active & ~bvalid & ~self.host_sel),
            self.s_axi_wready.eq(w_active & ~self.host_sel),
            self.s_axi_bvalid.eq(bvalid),
            self.s_axi_bid.eq(w_id),
            self.s_axi_bresp.eq(Mux(w_err, _SLVERR, 0)),
        ]
        with m.If(self.s_axi_awvalid & self.s_axi_awready):
            m.d.sync += [w_active.eq(1), w_addr.eq(self.s_axi_awaddr >> shift),
                         w_id.eq(self.s_axi_awid), w_err.eq(0)]
        beat = self.s_axi_wvalid & self.s_axi_wready
        with m.If(beat):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(in_range(w_addr)):
                m.d.comb += [wr.addr.eq(w_addr[:word_bits]), wr.data.eq(self.s_axi_wdata),
                             wr.en.eq(self.s_axi_wstrb)]
            with m.Else():
                m.d.sync += w_err.eq(1)
            with m.If(self.s_axi_wlast):
                m.d.sync += [w_active.eq(0), bvalid.eq(1)]
        with m.If(bvalid & self.s_axi_bready):
            m.d.sync += bvalid.eq(0)

        # Read channel: AR, then one beat per cycle while the skid buffer takes them. The
        # read port's output register holds a beat while the skid buffer is full; the
        # skid buffer's registers are the R channel's.
        r_left = Signal(9)
        r_addr = Signal(self.addr_bits - shift)
        r_id = Signal.like(self.s_axi_arid)
        rvalid = Signal()
        rlast = Signal()
        rresp = Signal(2)
        m.submodules.r_skid = r_skid = SkidBuffer(self.data_bits + len(r_id) + 3)
        m.d.comb += [
            self.s_axi_arready.eq((r_left == 0) & ~rvalid & ~self.host_sel),
            r_skid.i_valid.eq(rvalid),
            r_skid.i_data.eq(Cat(rd.data, r_id, rresp, rlast)),
            r_skid.o_ready.eq(self.s_axi_rready),
            self.s_axi_rvalid.eq(r_skid.o_valid),
            Cat(self.s_axi_rdata, self.s_axi_rid, self.s_axi_rresp,
                self.s_axi_rlast).eq(r_skid.o_data),
        ]
        with m.If(self.s_axi_arvalid & self.s_axi_arready):
            m.d.sync += [r_left.eq(self.s_axi_arlen + 1), r_addr.eq(self.s_axi_araddr >> shift),
                         r_id.eq(self.s_axi_arid)]
        advance = ~rvalid | r_skid.i_ready
        m.d.comb += rd.en.eq(0)  # the port's enable defaults to 1: hold unless a read is issued
        with m.If(self.host_sel):
            m.d.comb += [rd.addr.eq(self.host_addr), rd.en.eq(self.host_re)]
            with m.If(self.host_we):
                m.d.comb += [wr.addr.eq(self.host_addr), wr.data.eq(self.host_wdata),
                             wr.en.eq(self.host_wstrb)]
        with m.Elif(advance):
            with m.If(r_left != 0):
                m.d.comb += [rd.addr.eq(r_addr[:word_bits]), rd.en.eq(1)]
                m.d.sync += [rvalid.eq(1), rlast.eq(r_left == 1),
                             rresp.eq(Mux(in_range(r_addr), 0, _SLVERR)),
                             r_addr.eq(r_addr + 1), r_left.eq(r_left - 1)]
            with m.Else():
                m.d.sync += rvalid.eq(0)
        return m
