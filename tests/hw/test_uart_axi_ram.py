# amaranth: UnusedElaboratable=no
"""The ULX3S top's blocks under Verilator: the UART (transmitter into receiver at
several divisors, random bytes and random gaps; bit period measured on the line) and
the block-RAM AXI4 slave (cocotbext-axi ``AxiMaster`` with random bursts, alignments
and back-pressure against a byte-array model, ``SLVERR`` past the end, and the host
word port)."""

import random

import cocotb
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiResp

from hw.blocks.axi_ram import AxiRam
from hw.blocks.uart import UartRx, UartTx
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl


class _Loopback(wiring.Component):
    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__({"tx_data": In(8), "tx_valid": In(1), "tx_ready": Out(1),
                          "line": Out(1), "rx_data": Out(8), "rx_valid": Out(1),
                          "overrun": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.rx = rx = UartRx(self.divisor)
        m.d.comb += [tx.data.payload.eq(self.tx_data), tx.data.valid.eq(self.tx_valid),
                     self.tx_ready.eq(tx.data.ready), self.line.eq(tx.tx), rx.rx.eq(tx.tx),
                     self.rx_data.eq(rx.data.payload), self.rx_valid.eq(rx.data.valid),
                     rx.data.ready.eq(1), self.overrun.eq(rx.overrun),
                     self.framing_error.eq(rx.framing_error)]
        return m


@cocotb.test()
async def uart_loopback(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    div = args["divisor"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.tx_valid.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    sent = [rng.randrange(256) for _ in range(120)]
    got = []

    async def receive():
        while True:
            await RisingEdge(dut.clk)
            if int(dut.rx_valid.value):
                got.append(int(dut.rx_data.value))
                await RisingEdge(dut.clk)   # valid lasts one cycle (ready is tied high)

    async def start_bit_length():
        await FallingEdge(dut.line)
        start = cocotb.utils.get_sim_time("ns")
        await RisingEdge(dut.line)  # the first 1 data bit or the stop bit
        return cocotb.utils.get_sim_time("ns") - start

    cocotb.start_soon(receive())
    measure = cocotb.start_soon(start_bit_length())
    for byte in sent:
        for _ in range(rng.choice([0, 0, 1, 3 * div])):
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.tx_data.value = byte
        dut.tx_valid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if int(dut.tx_ready.value):
                break
        await FallingEdge(dut.clk)
        dut.tx_valid.value = 0
    await ClockCycles(dut.clk, 12 * div + 8)
    assert got == sent
    assert not int(dut.overrun.value) and not int(dut.framing_error.value)
    # the first byte's start bit, up to its first 1 bit, is a whole number of bit periods
    zeros = next(i for i in range(9) if (sent[0] >> i) & 1) + 1 if sent[0] else 9
    assert (await measure) in (zeros * div * 10, 10 * div * (zeros + 1))


@pytest.mark.parametrize("divisor", [1, 3, 8])
def test_uart_loopback(divisor):
    run_cocotb(_Loopback(divisor), test_module=__name__, build_name=f"uart-loop-{divisor}",
               test_args={"seed": divisor, "divisor": divisor}, testcase="uart_loopback")


def _pause(rng, p):
    while True:
        yield 1 if rng.random() < p else 0


@cocotb.test()
async def axi_ram_random(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    size, nbytes = args["size"], args["nbytes"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    master = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst, max_burst_len=16)
    for i, channel in enumerate((master.write_if.aw_channel, master.write_if.w_channel,
                                 master.write_if.b_channel, master.read_if.ar_channel,
                                 master.read_if.r_channel)):
        channel.set_pause_generator(_pause(random.Random(args["seed"] * 8 + i), 0.3))
    for name in ("host_sel", "host_we", "host_re", "host_addr", "host_wdata", "host_wstrb"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    model = bytearray(size)
    # host port: fill words, then check through AXI
    await FallingEdge(dut.clk)
    dut.host_sel.value = 1
    for word in range(size // nbytes):
        value = rng.getrandbits(8 * nbytes)
        dut.host_addr.value = word
        dut.host_wdata.value = value
        dut.host_wstrb.value = (1 << nbytes) - 1
        dut.host_we.value = 1
        model[word * nbytes:(word + 1) * nbytes] = value.to_bytes(nbytes, "little")
        await FallingEdge(dut.clk)
    dut.host_we.value = 0
    dut.host_sel.value = 0
    for _ in range(60):
        addr = rng.randrange(size)
        length = rng.randrange(1, min(300, size - addr) + 1)
        if rng.random() < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(length))
            resp = await master.write(addr, data)
            assert resp.resp == AxiResp.OKAY
            model[addr:addr + length] = data
        else:
            resp = await master.read(addr, length)
            assert resp.resp == AxiResp.OKAY
            assert bytes(resp.data) == bytes(model[addr:addr + length]), (addr, length)
    # past the end: SLVERR, nothing written inside
    resp = await master.read(size - nbytes, 2 * nbytes)
    assert resp.resp == AxiResp.SLVERR
    resp = await master.write(size, b"\xAA" * nbytes)
    assert resp.resp == AxiResp.SLVERR
    assert bytes((await master.read(0, size)).data) == bytes(model)
    # host port reads what AXI wrote
    await FallingEdge(dut.clk)
    dut.host_sel.value = 1
    for word in rng.sample(range(size // nbytes), 16):
        dut.host_addr.value = word
        dut.host_re.value = 1
        await FallingEdge(dut.clk)
        dut.host_re.value = 0
        await FallingEdge(dut.clk)
        want = int.from_bytes(model[word * nbytes:(word + 1) * nbytes], "little")
        assert int(dut.host_rdata.value) == want
    dut.host_sel.value = 0


@pytest.mark.parametrize("data_bits", [32, 64])
def test_axi_ram(data_bits):
    size = 2048
    run_cocotb(AxiRam(size, data_bits=data_bits, addr_bits=16, id_bits=1),
               test_module=__name__, build_name=f"axi-ram-{data_bits}",
               test_args={"seed": data_bits, "size": size, "nbytes": data_bits // 8},
               testcase="axi_ram_random")


def test_axi_ram_parameters():
    with pytest.raises(ValueError, match="multiple of 4"):
        AxiRam(1001)
    with pytest.raises(ValueError, match="data width"):
        AxiRam(1024, data_bits=24)
    with pytest.raises(ValueError, match="divisor"):
        UartTx(0)
