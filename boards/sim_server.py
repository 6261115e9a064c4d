"""cocotb side of :class:`boards.driver.SimTransport`: executes the driver's requests.

Runs inside the simulator process. It connects to the driver's socket (named in
the test arguments) and serves requests one at a time; simulated time advances
only while a request waits on the design, so the host's own work costs no
simulated cycles.

``kind="core"``: the SEML core, cocotbext-axi ``AxiRam`` as DDR (with fault
windows, :class:`sim.axi.DdrModel`), ``AxiLiteMaster`` on the control registers.
``kind="ulx3s"``: the ULX3S system; a bit-level UART model drives ``uart_rx`` and
decodes ``uart_tx`` (sampling each bit in its middle, on falling clock edges).
"""

from __future__ import annotations

import socket
from collections import deque
from multiprocessing.connection import Connection

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["serve"]


class _UartModel:
    """8N1 at ``divisor`` clock cycles per bit, synchronous to the testbench clock."""

    def __init__(self, dut, divisor):
        self.dut = dut
        self.div = divisor
        self.received = deque()
        self.framing_errors = 0
        dut.uart_rx.value = 1

    async def send(self, data: bytes):
        clk = self.dut.clk
        await FallingEdge(clk)
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.uart_rx.value = bit
                await ClockCycles(clk, self.div, rising=False)

    async def monitor(self):
        clk, tx, div = self.dut.clk, self.dut.uart_tx, self.div
        while True:
            await FallingEdge(tx)
            await ClockCycles(clk, 1 + div // 2, rising=False)   # middle of the start bit
            byte = 0
            for i in range(8):
                await ClockCycles(clk, div, rising=False)
                byte |= int(tx.value) << i
            await ClockCycles(clk, div, rising=False)
            if int(tx.value) != 1:
                self.framing_errors += 1
            self.received.append(byte)

    async def receive(self, n, max_cycles):
        waited = 0
        while len(self.received) < n and waited < max_cycles:
            step = min(64, max_cycles - waited)
            await ClockCycles(self.dut.clk, step)
            waited += step
        out = bytes(self.received.popleft() for _ in range(min(n, len(self.received))))
        return out


@cocotb.test()
async def serve(dut):
    """Serve the driver's requests until it closes the link."""
    from sim.axi import DdrModel, Host
    from sim.rtl import test_args

    args = test_args()
    clock_ns = args["clock_ns"]
    cocotb.start_soon(Clock(dut.clk, clock_ns, unit="ns").start())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args["socket"])
    conn = Connection(sock.detach())

    host = uart = None
    if args["kind"] == "core":
        size = 1 << max(args["ddr_bytes"] - 1, 1).bit_length()
        ddr = DdrModel(dut, size=size)
        host = Host(dut, ddr)
        await host.reset()
    else:
        uart = _UartModel(dut, args["uart_divisor"])
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 4)
        cocotb.start_soon(uart.monitor())

    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        op, *params = request
        if op == "close":
            break
        try:
            if op == "write_mem":
                host.load(params[0], params[1])
                value = None
            elif op == "read_mem":
                value = host.read_back(params[0], params[1])
            elif op == "write_reg":
                await host.csr.write_dword(params[0], params[1])
                value = None
            elif op == "read_reg":
                value = await host.csr.read_dword(params[0])
            elif op == "fault":
                host.ddr.add_fault(params[0], params[1])
                value = None
            elif op == "clear_faults":
                host.ddr.faults.clear()
                value = None
            elif op == "wait":
                await ClockCycles(dut.clk, params[0])
                value = None
            elif op == "wait_irq":
                # up to params[0] cycles for the core's irq (level) to be high
                if not int(dut.irq.value) and params[0] > 0:
                    await First(RisingEdge(dut.irq), ClockCycles(dut.clk, params[0]))
                value = bool(int(dut.irq.value))
            elif op == "now":
                value = int(get_sim_time("ns")) // clock_ns
            elif op == "uart_write":
                await uart.send(params[0])
                value = None
            elif op == "uart_read":
                value = await uart.receive(params[0], params[1])
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as e:  # noqa: BLE001 -- the driver raises it as TransportError
            conn.send(("error", f"{type(e).__name__}: {e}"))
            continue
        conn.send(("ok", value))
    conn.close()
    if uart is not None:
        assert uart.framing_errors == 0, f"{uart.framing_errors} UART framing errors"
