"""The ULX3S (ECP5-85F) board top: SEML core + on-chip RAM + UART host link + LEDs.

The board has no processor and its SDRAM is not used: :class:`hw.blocks.axi_ram.AxiRam`
(block RAM) stands in for DDR behind the core's AXI4 master, and
:class:`UartHostBridge` turns the framed protocol of :mod:`boards.uart_link` into
RAM accesses and AXI4-Lite transactions on the core's control registers.

:class:`Ulx3sSystem` is everything clocked by one clock (simulated whole under
Verilator); :class:`Ulx3sTop` adds the platform: the 25 MHz oscillator, a PLL to
the arch's clock, the power-on reset, the FTDI UART pins and the LEDs
(0 busy, 1 done, 2 error, 3 UART activity).
"""

from __future__ import annotations

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.arch import ArchConfig
from hw.blocks.axi_ram import AxiRam
from hw.blocks.uart import UartRx, UartTx
from hw.seml.core import SemlCore
from hw.seml.csr import CONTROL_START, REGISTERS, STATUS_ERROR

from .uart_link import INFO_MAGIC, PROTOCOL_VERSION, SYNC, Command, LinkStatus

__all__ = ["ULX3S_ARCH", "UartHostBridge", "Ulx3sSystem", "Ulx3sTop", "pll_params"]


class UartHostBridge(wiring.Component):
    """Executes :mod:`boards.uart_link` requests: RAM word port + AXI4-Lite master.

    Parameters
    ----------
    ram_bytes : int
    bus_bytes : int
        RAM word width in bytes.
    idle_timeout : int
        Cycles without a byte after which a partial request is dropped.

    Members
    -------
    rx : In(stream.Signature(8)) as flat ``rx_data``/``rx_valid`` -- received bytes.
    tx_* : bytes to send (valid/ready).
    ram_* : the RAM's host word port.
    m_axil_* : AXI4-Lite master to the core's control registers.
    irq : In(1)
        The core's interrupt (its done flag).
    busy, error : Out(1)
        The core runs (started through this bridge, not yet done); the error bit of
        the last ``STATUS`` read through this bridge.
    """

    def __init__(self, *, ram_bytes: int, bus_bytes: int, idle_timeout: int = 1 << 20):
        self.ram_bytes = ram_bytes
        self.bus_bytes = bus_bytes
        self.words = ram_bytes // bus_bytes
        self.idle_timeout = idle_timeout
        super().__init__({
            "rx_data": In(8), "rx_valid": In(1),
            "tx_data": Out(8), "tx_valid": Out(1), "tx_ready": In(1),
            "ram_sel": Out(1), "ram_addr": Out(range(self.words)),
            "ram_wdata": Out(8 * bus_bytes), "ram_wstrb": Out(bus_bytes), "ram_we": Out(1),
            "ram_re": Out(1), "ram_rdata": In(8 * bus_bytes),
            "m_axil_awaddr": Out(12), "m_axil_awvalid": Out(1), "m_axil_awready": In(1),
            "m_axil_wdata": Out(32), "m_axil_wstrb": Out(4), "m_axil_wvalid": Out(1),
            "m_axil_wready": In(1),
            "m_axil_bresp": In(2), "m_axil_bvalid": In(1), "m_axil_bready": Out(1),
            "m_axil_araddr": Out(12), "m_axil_arvalid": Out(1), "m_axil_arready": In(1),
            "m_axil_rdata": In(32), "m_axil_rresp": In(2), "m_axil_rvalid": In(1),
            "m_axil_rready": Out(1),
            "irq": In(1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nb = self.bus_bytes
        lane_bits = max((nb - 1).bit_length(), 0)
        cmd = Signal(8)
        addr = Signal(32)
        length = Signal(32)
        chk = Signal(8)
        idx = Signal(4)
        status = Signal(8)
        value = Signal(32)
        tx_chk = Signal(8)
        idle = Signal(range(self.idle_timeout + 1))
        running = Signal()
        aw_done = Signal()
        w_done = Signal()

        byte = self.rx_data
        got = self.rx_valid
        m.d.comb += [self.busy.eq(running & ~self.irq), self.ram_addr.eq(addr[lane_bits:]),
                     self.m_axil_awaddr.eq(addr[:12]), self.m_axil_araddr.eq(addr[:12]),
                     self.m_axil_wdata.eq(length), self.m_axil_wstrb.eq(0xF)]
        with m.If(self.irq):
            m.d.sync += running.eq(0)
        lane = addr[:lane_bits] if lane_bits else Const(0, 1)
        m.d.comb += [self.ram_wdata.eq(byte.replicate(nb)),
                     self.ram_wstrb.eq(Const(1, nb) << lane)]
        ram_byte = (self.ram_rdata >> (lane * 8))[:8]
        # Memory commands are checked against the RAM and the core's state when their
        # header is complete.
        end = addr + length
        mem_status = Mux(self.busy, LinkStatus.BUSY,
                         Mux(end > self.ram_bytes, LinkStatus.RANGE,
                             LinkStatus.OK))
        info = Const.cast(int.from_bytes(
            INFO_MAGIC + bytes([PROTOCOL_VERSION, nb, 0, 0])
            + self.ram_bytes.to_bytes(4, "little"), "little"))
        info_bytes = 12

        def send(value_byte, next_state):
            m.d.comb += [self.tx_data.eq(value_byte), self.tx_valid.eq(1)]
            with m.If(self.tx_ready):
                m.d.sync += tx_chk.eq(tx_chk + value_byte)
                m.next = next_state

        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self.idle_timeout)

        def drop_on_timeout():
            with m.If(timed_out):
                m.next = "SYNC"

        with m.FSM() as fsm:
            with m.State("SYNC"), m.If(got & (byte == SYNC)):
                m.d.sync += [idx.eq(0), chk.eq(0)]
                m.next = "HEADER"
            with m.State("HEADER"):
                drop_on_timeout()
                with m.If(got):
                    m.d.sync += [chk.eq(chk + byte), idx.eq(idx + 1)]
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += cmd.eq(byte)
                        for i in range(4):
                            with m.Case(1 + i):
                                m.d.sync += addr.word_select(i, 8).eq(byte)
                            with m.Case(5 + i):
                                m.d.sync += length.word_select(i, 8).eq(byte)
                    with m.If(idx == 8):
                        m.next = "HEADER_DONE"
            with m.State("HEADER_DONE"):
                # One cycle to see the whole header (bytes are at least 10 cycles apart).
                with m.If(cmd == Command.WRITE_MEM):
                    m.d.sync += status.eq(mem_status)
                    with m.If(length == 0):
                        m.next = "WCHK"
                    with m.Else():
                        m.next = "WDATA"
                with m.Else():
                    m.next = "CHK"
            with m.State("WDATA"):
                drop_on_timeout()
                m.d.comb += self.ram_sel.eq(status == LinkStatus.OK)
                with m.If(got):
                    m.d.sync += [chk.eq(chk + byte), addr.eq(addr + 1), length.eq(length - 1)]
                    m.d.comb += self.ram_we.eq(status == LinkStatus.OK)
                    with m.If(length == 1):
                        m.next = "WCHK"
            with m.State("WCHK"):
                drop_on_timeout()
                with m.If(got):
                    with m.If((byte != chk) & (status == LinkStatus.OK)):
                        m.d.sync += status.eq(LinkStatus.BAD_CHECKSUM)
                    m.d.sync += tx_chk.eq(0)
                    m.next = "STATUS"
            with m.State("CHK"):
                drop_on_timeout()
                with m.If(got):
                    m.d.sync += [tx_chk.eq(0), idx.eq(0), aw_done.eq(0), w_done.eq(0)]
                    with m.If(byte != chk):
                        m.d.sync += status.eq(LinkStatus.BAD_CHECKSUM)
                        m.next = "STATUS"
                    with m.Else(), m.Switch(cmd):
                        with m.Case(Command.INFO):
                            m.d.sync += status.eq(LinkStatus.OK)
                            m.next = "STATUS"
                        with m.Case(Command.READ_MEM):
                            m.d.sync += status.eq(mem_status)
                            m.next = "STATUS"
                        with m.Case(Command.WRITE_REG):
                            m.next = "AXIL_W"
                        with m.Case(Command.READ_REG):
                            m.next = "AXIL_R"
                        with m.Default():
                            m.d.sync += status.eq(LinkStatus.BAD_COMMAND)
                            m.next = "STATUS"
            with m.State("AXIL_W"):
                m.d.comb += [self.m_axil_awvalid.eq(~aw_done), self.m_axil_wvalid.eq(~w_done),
                             self.m_axil_bready.eq(aw_done & w_done)]
                with m.If(self.m_axil_awvalid & self.m_axil_awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(self.m_axil_wvalid & self.m_axil_wready):
                    m.d.sync += w_done.eq(1)
                with m.If(self.m_axil_bready & self.m_axil_bvalid):
                    m.d.sync += status.eq(Mux(self.m_axil_bresp != 0, LinkStatus.CSR_ERROR,
                                              LinkStatus.OK))
                    with m.If((addr[:12] == REGISTERS["CONTROL"])
                              & (length & CONTROL_START).any() & (self.m_axil_bresp == 0)):
                        m.d.sync += running.eq(1)
                    m.next = "STATUS"
            with m.State("AXIL_R"):
                m.d.comb += [self.m_axil_arvalid.eq(~aw_done), self.m_axil_rready.eq(aw_done)]
                with m.If(self.m_axil_arvalid & self.m_axil_arready):
                    m.d.sync += aw_done.eq(1)
                with m.If(self.m_axil_rready & self.m_axil_rvalid):
                    m.d.sync += [value.eq(self.m_axil_rdata),
                                 status.eq(Mux(self.m_axil_rresp != 0, LinkStatus.CSR_ERROR,
                                               LinkStatus.OK))]
                    with m.If(addr[:12] == REGISTERS["STATUS"]):
                        m.d.sync += self.error.eq((self.m_axil_rdata & STATUS_ERROR).any())
                    m.next = "STATUS"
            with m.State("STATUS"):
                with m.If(status != LinkStatus.OK):
                    send(status, "TXCHK")
                with m.Else(), m.Switch(cmd):
                    with m.Case(Command.INFO):
                        send(status, "INFO")
                    with m.Case(Command.READ_REG):
                        send(status, "VALUE")
                    with m.Case(Command.READ_MEM):
                        with m.If(length == 0):
                            send(status, "TXCHK")
                        with m.Else():
                            send(status, "RD_ISSUE")
                    with m.Default():
                        send(status, "TXCHK")
            with m.State("INFO"):
                send(info.word_select(idx, 8), "INFO")
                with m.If(self.tx_ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == info_bytes - 1):
                        m.next = "TXCHK"
            with m.State("VALUE"):
                send(value.word_select(idx[:2], 8), "VALUE")
                with m.If(self.tx_ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.next = "TXCHK"
            with m.State("RD_ISSUE"):
                m.d.comb += [self.ram_sel.eq(1), self.ram_re.eq(1)]
                m.next = "RD_SEND"
            with m.State("RD_SEND"):
                m.d.comb += self.ram_sel.eq(1)
                with m.If(length == 1):
                    send(ram_byte, "TXCHK")
                with m.Else():
                    send(ram_byte, "RD_ISSUE")
                with m.If(self.tx_ready):
                    m.d.sync += [addr.eq(addr + 1), length.eq(length - 1)]
            with m.State("TXCHK"):
                send(tx_chk, "SYNC")
        receiving = (fsm.ongoing("HEADER") | fsm.ongoing("WDATA") | fsm.ongoing("WCHK")
                     | fsm.ongoing("CHK"))
        with m.If(receiving & ~got & ~timed_out):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)
        return m


class Ulx3sSystem(wiring.Component):
    """Core + RAM + UART bridge, in one clock domain (``clk``, ``rst``).

    Parameters
    ----------
    arch : ArchConfig
    ram_bytes : int
        On-chip RAM standing in for DDR (the compiled model's ``ddr_bytes`` must fit).
    uart_divisor : int
        Clock cycles per UART bit.
    idle_timeout : int
        Cycles after which a partial request is dropped.

    Members
    -------
    uart_rx : In(1), uart_tx : Out(1)
    led_busy, led_done, led_error, led_uart : Out(1)
    """

    def __init__(self, arch: ArchConfig, *, ram_bytes: int = 64 * 1024, uart_divisor: int = 50,
                 idle_timeout: int = 1 << 20):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self.arch = arch
        self.ram_bytes = ram_bytes
        self.uart_divisor = uart_divisor
        self.idle_timeout = idle_timeout
        super().__init__({
            "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
            "led_busy": Out(1), "led_done": Out(1), "led_error": Out(1), "led_uart": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        m.submodules.core = core = SemlCore(arch)
        m.submodules.ram = ram = AxiRam(self.ram_bytes, data_bits=arch.axi_data_bits,
                                        addr_bits=arch.axi_addr_bits, id_bits=1)
        m.submodules.rx = rx = UartRx(self.uart_divisor)
        m.submodules.tx = tx = UartTx(self.uart_divisor)
        m.submodules.bridge = bridge = UartHostBridge(
            ram_bytes=self.ram_bytes, bus_bytes=arch.axi_data_bytes,
            idle_timeout=self.idle_timeout)

        # Core AXI4 master -> RAM slave (the core drives no lock/cache/prot signals).
        for name, member in ram.signature.members.items():
            if not name.startswith("s_axi_"):
                continue
            core_name = "m_axi_" + name[len("s_axi_"):]
            if member.flow == In:
                m.d.comb += getattr(ram, name).eq(getattr(core, core_name))
            else:
                m.d.comb += getattr(core, core_name).eq(getattr(ram, name))
        # Bridge -> RAM word port and core AXI4-Lite slave.
        for name in ("sel", "addr", "wdata", "wstrb", "we", "re"):
            m.d.comb += getattr(ram, f"host_{name}").eq(getattr(bridge, f"ram_{name}"))
        m.d.comb += bridge.ram_rdata.eq(ram.host_rdata)
        for name, member in bridge.signature.members.items():
            if not name.startswith("m_axil_"):
                continue
            core_name = "s_axil_" + name[len("m_axil_"):]
            if member.flow == Out:
                m.d.comb += getattr(core, core_name).eq(getattr(bridge, name))
            else:
                m.d.comb += getattr(bridge, name).eq(getattr(core, core_name))
        m.d.comb += [core.s_axil_awprot.eq(0), core.s_axil_arprot.eq(0)]
        # UART.
        m.d.comb += [
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            bridge.rx_data.eq(rx.data.payload),
            bridge.rx_valid.eq(rx.data.valid),
            rx.data.ready.eq(1),
            tx.data.payload.eq(bridge.tx_data),
            tx.data.valid.eq(bridge.tx_valid),
            bridge.tx_ready.eq(tx.data.ready),
            bridge.irq.eq(core.irq),
        ]
        # LEDs.
        activity = Signal(range(1 << 20))
        with m.If(rx.data.valid | tx.busy):
            m.d.sync += activity.eq((1 << 20) - 1)
        with m.Elif(activity != 0):
            m.d.sync += activity.eq(activity - 1)
        m.d.comb += [self.led_busy.eq(bridge.busy), self.led_done.eq(core.irq),
                     self.led_error.eq(bridge.error), self.led_uart.eq(activity != 0)]
        return m


def pll_params(f_in_mhz: float, f_out_mhz: float) -> dict:
    """Dividers of an ECP5 ``EHXPLLL`` for ``f_out`` from ``f_in`` (VCO 400..800 MHz).

    Returns the closest achievable setting: ``{"clki_div", "clkfb_div", "clkop_div",
    "f_out", "f_vco"}``.
    """
    best = None
    for clki in range(1, 129):
        f_pfd = f_in_mhz / clki
        if not 3.125 <= f_pfd <= 400:
            continue
        for clkfb in range(1, 81):
            f_fb = f_pfd * clkfb
            for clkop in range(1, 129):
                f_vco = f_fb * clkop
                if not 400 <= f_vco <= 800:
                    continue
                err = (round(abs(f_fb - f_out_mhz), 6), abs(f_vco - 600))
                if best is None or err < best[0]:
                    best = (err, {"clki_div": clki, "clkfb_div": clkfb, "clkop_div": clkop,
                                  "f_out": f_fb, "f_vco": f_vco})
    if best is None:
        raise ValueError(f"No ECP5 PLL setting gives {f_out_mhz} MHz from {f_in_mhz} MHz")
    return best[1]


class Ulx3sTop(Elaboratable):
    """The board top for ``amaranth_boards.ulx3s.ULX3S_85F_Platform``.

    Parameters
    ----------
    arch : ArchConfig
        Its ``clock_mhz`` is the PLL's output clock.
    ram_bytes : int
    baud : int
        UART rate; the divisor is ``round(clock / baud)``.
    """

    def __init__(self, arch: ArchConfig, *, ram_bytes: int = 64 * 1024, baud: int = 1_000_000):
        self.arch = arch
        self.ram_bytes = ram_bytes
        self.pll = pll_params(25.0, arch.clock_mhz)
        self.clock_hz = self.pll["f_out"] * 1e6
        self.baud = baud
        self.uart_divisor = max(1, round(self.clock_hz / baud))

    def elaborate(self, platform):
        m = Module()
        clk25 = platform.request("clk25", 0)
        m.domains.sync = ClockDomain("sync")
        locked = Signal()
        clk = Signal()
        platform.add_clock_constraint(clk, frequency=self.clock_hz)
        p = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=f"{p['f_out']:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["clki_div"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["clkop_div"],
            p_CLKOP_CPHASE=p["clkop_div"] - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p["clkfb_div"],
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=clk,
            i_CLKFB=clk, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_LOCK=locked)
        # Reset held until the PLL locks, then for a few more cycles.
        hold = Signal(4, init=15)
        with m.If(~locked):
            m.d.sync += hold.eq(15)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(0)]
        # The core's reset reaches every flip-flop of the system: it leaves a register
        # through a clock buffer (DCCA) onto a global network instead of the fabric's
        # routing, where its fan-out made it the top's critical path.
        rst = Signal(init=1)
        rst_global = Signal()
        m.d.sync += rst.eq(hold != 0)
        m.submodules.rst_buffer = Instance("DCCA", i_CLKI=rst, i_CE=Const(1), o_CLKO=rst_global)
        m.domains.core = ClockDomain("core", local=True)
        m.d.comb += [ClockSignal("core").eq(ClockSignal("sync")),
                     ResetSignal("core").eq(rst_global)]

        from amaranth.hdl import DomainRenamer
        system = Ulx3sSystem(self.arch, ram_bytes=self.ram_bytes,
                             uart_divisor=self.uart_divisor,
                             idle_timeout=int(self.clock_hz // 100))
        m.submodules.system = DomainRenamer("core")(system)
        uart = platform.request("uart", 0)
        m.d.comb += [system.uart_rx.eq(uart.rx.i), uart.tx.o.eq(system.uart_tx)]
        leds = [platform.request("led", i) for i in range(4)]
        for led, sig in zip(leds, (system.led_busy, system.led_done, system.led_error,
                                   system.led_uart)):
            m.d.comb += led.o.eq(sig)
        return m


#: The arch ``convforge build --board ULX3S-85F`` builds without ``--arch``: every engine,
#: small parallelism and small buffers, each engine unit with its own lane fetchers (as the
#: board's default arch); the bundled MobileNetV2-style model compiles for it.
ULX3S_ARCH = ArchConfig(name="ulx3s-small", ibuf_bytes=4096, obuf_bytes=2048, wbuf_bytes=2048,
                        pbuf_entries=128, max_width=34, max_height=34, conv_pi=1, conv_po=1,
                        dw_channels=2, pw_pi=2, pw_po=2, axi_data_bits=32, clock_mhz=50.0,
                        private_fetchers=True)
