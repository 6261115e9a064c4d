"""AXI4-Lite control and status registers of the SEML core.

The host (a Zynq PS, or cocotb's ``AxiLiteMaster`` in simulation) writes the
program base address, starts the core, polls ``STATUS.done`` (or waits for ``irq``)
and reads the error code and the cycle counter. The register map is documented in
``docs/host_interface.md``; :data:`REGISTERS` holds the byte offsets.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..isa import INSTR_BYTES, ErrorCode

__all__ = [
    "CONTROL_CLEAR",
    "CONTROL_START",
    "CORE_ID",
    "PROG_BASE_MISALIGNED",
    "REGISTERS",
    "STATUS_BUSY",
    "STATUS_DONE",
    "STATUS_ERROR",
    "TRACE_BASE",
    "ControlStatusRegisters",
]

#: Byte offsets of the 32-bit registers.
REGISTERS = {
    "ID": 0x00,
    "CONTROL": 0x04,
    "STATUS": 0x08,
    "ERROR_CODE": 0x0C,
    "PROG_BASE_LO": 0x10,
    "PROG_BASE_HI": 0x14,
    "DATA_BASE_LO": 0x18,
    "DATA_BASE_HI": 0x1C,
    "CYCLES_LO": 0x20,
    "CYCLES_HI": 0x24,
    "INSTR_COUNT": 0x28,
    "TRACE_COUNT": 0x2C,
    "ERROR_INFO": 0x30,
}
#: Byte offset of cycle-stamp entry 0; entry ``i`` is at ``TRACE_BASE + 4 * i``.
TRACE_BASE = 0x400
#: Value of the read-only ``ID`` register: ASCII "SEML".
CORE_ID = 0x53454D4C

CONTROL_START = 1 << 0
CONTROL_CLEAR = 1 << 1
STATUS_DONE = 1 << 0
STATUS_BUSY = 1 << 1
STATUS_ERROR = 1 << 2
#: Error code of a start with ``PROG_BASE`` not aligned to an instruction word (64
#: bytes): no program header can sit there, so the run ends at once without a bus access.
PROG_BASE_MISALIGNED = ErrorCode.BAD_MAGIC

_ADDR_BITS = 12


class ControlStatusRegisters(wiring.Component):
    """AXI4-Lite slave holding the host-visible state of the core.

    One transaction at a time per direction: a write is accepted once both its
    address and data have arrived, and answered with ``bresp = OKAY`` (``SLVERR``
    for an address outside the map); a read answers one cycle after the address.

    The cycle counter restarts on every start and counts while the core is busy.
    Each ``mark`` pulse stores the current cycle count in the next trace entry
    (entries past ``trace_depth`` are dropped; ``TRACE_COUNT`` keeps counting).

    A start while ``PROG_BASE`` is not 64-byte aligned does not reach the core: the
    run ends at once, as if the core had reported done with
    :data:`PROG_BASE_MISALIGNED` (``ERROR_INFO``, ``CYCLES``, ``INSTR_COUNT`` and
    ``TRACE_COUNT`` read 0).

    Parameters
    ----------
    addr_bits : int
        Width of the DDR addresses held in ``PROG_BASE`` and ``DATA_BASE`` (16..64).
    trace_depth : int
        Number of cycle-stamp entries (power of two, 1..512).
    error_bits : int
        Width of the error code (1..32).

    Members
    -------
    s_axil_* : AXI4-Lite slave, 32-bit data, 12-bit address (cocotbext-axi names).
    start : Out(1)
        One-cycle pulse (a register) in the cycle after the host's write of
        ``CONTROL.start`` while the core is idle and ``PROG_BASE`` is 64-byte aligned.
    prog_base, data_base : Out(addr_bits)
        DDR base addresses of the program image and of the data (weights, feature maps).
    busy : In(1)
        The core is running.
    done : In(1)
        One-cycle pulse when the core stops; ``error_code`` (0 = success) and
        ``error_info`` are sampled with it.
    error_code : In(error_bits)
    error_info : In(32)
        Detail for the error (the failing program counter).
    instr_count : In(32)
        Instructions executed since the last start.
    mark : In(1)
        Store a cycle stamp in the trace.
    irq : Out(1)
        Level interrupt: ``STATUS.done``, high from done until the next start or
        ``CONTROL.clear``.
    """

    def __init__(self, *, addr_bits=32, trace_depth=256, error_bits=8):
        if not isinstance(addr_bits, int) or isinstance(addr_bits, bool):
            raise TypeError(f"Address width must be an integer, not {addr_bits!r}")
        if not 16 <= addr_bits <= 64:
            raise ValueError(f"Address width must be between 16 and 64, not {addr_bits!r}")
        if not isinstance(trace_depth, int) or isinstance(trace_depth, bool):
            raise TypeError(f"Trace depth must be an integer, not {trace_depth!r}")
        if not 1 <= trace_depth <= 512 or trace_depth & (trace_depth - 1):
            raise ValueError(
                f"Trace depth must be a power of two between 1 and 512, not {trace_depth!r}")
        if not isinstance(error_bits, int) or isinstance(error_bits, bool):
            raise TypeError(f"Error code width must be an integer, not {error_bits!r}")
        if not 1 <= error_bits <= 32:
            raise ValueError(f"Error code width must be between 1 and 32, not {error_bits!r}")
        self._addr_bits = addr_bits
        self._trace_depth = trace_depth
        self._error_bits = error_bits
        super().__init__({
            "s_axil_awaddr": In(_ADDR_BITS),
            "s_axil_awprot": In(3),
            "s_axil_awvalid": In(1),
            "s_axil_awready": Out(1),
            "s_axil_wdata": In(32),
            "s_axil_wstrb": In(4),
            "s_axil_wvalid": In(1),
            "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2),
            "s_axil_bvalid": Out(1),
            "s_axil_bready": In(1),
            "s_axil_araddr": In(_ADDR_BITS),
            "s_axil_arprot": In(3),
            "s_axil_arvalid": In(1),
            "s_axil_arready": Out(1),
            "s_axil_rdata": Out(32),
            "s_axil_rresp": Out(2),
            "s_axil_rvalid": Out(1),
            "s_axil_rready": In(1),
            "start": Out(1),
            "prog_base": Out(addr_bits),
            "data_base": Out(addr_bits),
            "busy": In(1),
            "done": In(1),
            "error_code": In(error_bits),
            "error_info": In(32),
            "instr_count": In(32),
            "mark": In(1),
            "irq": Out(1),
        })

    @property
    def trace_depth(self):
        return self._trace_depth

    def elaborate(self, platform):
        m = Module()

        prog_base = Signal(64)
        data_base = Signal(64)
        m.d.comb += [
            self.prog_base.eq(prog_base[:self._addr_bits]),
            self.data_base.eq(data_base[:self._addr_bits]),
        ]
        done = Signal()
        error = Signal()
        error_code = Signal(self._error_bits)
        error_info = Signal(32)
        cycles = Signal(64)
        trace_count = Signal(32)
        # The last start was refused (misaligned PROG_BASE): the core did not run.
        refused = Signal()
        m.d.comb += self.irq.eq(done)

        m.submodules.trace = trace = Memory(shape=32, depth=self._trace_depth, init=[])
        trace_wr = trace.write_port()
        trace_rd = trace.read_port(domain="comb")

        # Status, cycle counter and trace -------------------------------------------------
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.done):
            m.d.sync += [
                done.eq(1),
                error.eq(self.error_code != 0),
                error_code.eq(self.error_code),
                error_info.eq(self.error_info),
            ]
        # The trace entry is written a cycle after its mark, from registers: ``mark`` comes
        # from the core's issue logic (the units' busy flags), and the trace memory may be
        # far from it.
        tw_en = Signal()
        tw_addr = Signal.like(trace_wr.addr)
        tw_data = Signal(32)
        m.d.sync += [tw_en.eq(self.mark & (trace_count < self._trace_depth)),
                     tw_addr.eq(trace_count), tw_data.eq(cycles[:32])]
        m.d.comb += [trace_wr.en.eq(tw_en), trace_wr.addr.eq(tw_addr),
                     trace_wr.data.eq(tw_data)]
        with m.If(self.mark):
            m.d.sync += trace_count.eq(trace_count + 1)

        # Write channel ------------------------------------------------------------------
        aw_addr = Signal(_ADDR_BITS)
        aw_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        w_full = Signal()
        bvalid = Signal()
        bresp = Signal(2)
        m.d.comb += [
            self.s_axil_awready.eq(~aw_full),
            self.s_axil_wready.eq(~w_full),
            self.s_axil_bvalid.eq(bvalid),
            self.s_axil_bresp.eq(bresp),
        ]
        with m.If(self.s_axil_awvalid & ~aw_full):
            m.d.sync += [aw_addr.eq(self.s_axil_awaddr), aw_full.eq(1)]
        with m.If(self.s_axil_wvalid & ~w_full):
            m.d.sync += [w_data.eq(self.s_axil_wdata), w_strb.eq(self.s_axil_wstrb), w_full.eq(1)]
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)

        # ``start`` leaves from a register, a cycle after the CONTROL write: the write's
        # decode (the AXI4-Lite handshake, address and data) does not reach the core's
        # registers in the same cycle. STATUS shows the core busy from the write on.
        start = Signal()
        busy = Signal()
        m.d.sync += start.eq(0)
        m.d.comb += [self.start.eq(start), busy.eq(self.busy | start)]

        word = aw_addr[2:]
        with m.If(aw_full & w_full & ~bvalid):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(0)]
            with m.Switch(word):
                with m.Case(REGISTERS["CONTROL"] >> 2), m.If(w_strb[0] & ~busy):
                    with m.If(w_data[0]):
                        m.d.sync += [
                            error_info.eq(0), cycles.eq(0), trace_count.eq(0),
                        ]
                        with m.If((prog_base[:32] & (INSTR_BYTES - 1)) == 0):
                            m.d.sync += start.eq(1)
                            m.d.sync += [done.eq(0), error.eq(0), error_code.eq(0),
                                         refused.eq(0)]
                        with m.Else():
                            m.d.sync += [done.eq(1), error.eq(1),
                                         error_code.eq(PROG_BASE_MISALIGNED.value),
                                         refused.eq(1)]
                    with m.Elif(w_data[1]):
                        m.d.sync += [done.eq(0), error.eq(0), error_code.eq(0),
                                     error_info.eq(0)]
                for name, reg, lo in (("PROG_BASE_LO", prog_base, 0),
                                      ("PROG_BASE_HI", prog_base, 32),
                                      ("DATA_BASE_LO", data_base, 0),
                                      ("DATA_BASE_HI", data_base, 32)):
                    with m.Case(REGISTERS[name] >> 2):
                        for i in range(4):
                            with m.If(w_strb[i]):
                                m.d.sync += reg[lo + 8 * i:lo + 8 * i + 8].eq(
                                    w_data[8 * i:8 * i + 8])
                with m.Case(*[REGISTERS[n] >> 2 for n in REGISTERS
                              if n not in ("CONTROL", "PROG_BASE_LO", "PROG_BASE_HI",
                                           "DATA_BASE_LO", "DATA_BASE_HI")]):
                    # Read-only registers ignore writes, as AXI4-Lite peripherals customarily do.
                    pass
                with m.Default():
                    with m.If(word < (TRACE_BASE >> 2)):
                        m.d.sync += bresp.eq(0b10)
                    with m.Elif(word >= (TRACE_BASE >> 2) + self._trace_depth):
                        m.d.sync += bresp.eq(0b10)

        # Read channel -------------------------------------------------------------------
        rvalid = Signal()
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [
            self.s_axil_arready.eq(~rvalid),
            self.s_axil_rvalid.eq(rvalid),
            self.s_axil_rdata.eq(rdata),
            self.s_axil_rresp.eq(rresp),
        ]
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        rword = self.s_axil_araddr[2:]
        m.d.comb += trace_rd.addr.eq(rword - (TRACE_BASE >> 2))
        with m.If(self.s_axil_arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rresp.eq(0)]
            status = Cat(done, busy, error)
            values = {
                "ID": Const(CORE_ID, 32),
                "CONTROL": Const(0, 32),
                "STATUS": status,
                "ERROR_CODE": error_code,
                "PROG_BASE_LO": prog_base[:32],
                "PROG_BASE_HI": prog_base[32:],
                "DATA_BASE_LO": data_base[:32],
                "DATA_BASE_HI": data_base[32:],
                "CYCLES_LO": cycles[:32],
                "CYCLES_HI": cycles[32:],
                "INSTR_COUNT": Mux(refused, 0, self.instr_count),
                "TRACE_COUNT": trace_count,
                "ERROR_INFO": error_info,
            }
            with m.Switch(rword):
                for name, value in values.items():
                    with m.Case(REGISTERS[name] >> 2):
                        m.d.sync += rdata.eq(value)
                with m.Default():
                    in_trace = ((rword >= (TRACE_BASE >> 2))
                                & (rword < (TRACE_BASE >> 2) + self._trace_depth))
                    m.d.sync += [
                        rdata.eq(Mux(in_trace, trace_rd.data, 0)),
                        rresp.eq(Mux(in_trace, 0, 0b10)),
                    ]
        return m
