# amaranth: UnusedElaboratable=no
"""The hybrid top's bus plumbing under Verilator: two AXI4 write managers merged burst by
burst onto one port (cocotbext-axi managers writing random blocks at once into a memory
with random stalls; every byte lands, responses go back to the right manager), a slow
manager's bursts released whole by the packer, and the AXI4-Lite link serving its clients
one transaction at a time."""

import random

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Combine, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteRam, AxiMasterWrite, AxiRamWrite, AxiWriteBus

from hw.hybrid.axi import AxiLiteLink, AxiWriteArbiter, AxiWritePacker
from sim.axi import pause_pattern
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl


@cocotb.test()
async def two_writers(dut):
    seed = test_args()["seed"]
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRamWrite(AxiWriteBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=1 << 16)
    for i, ch in enumerate((ram.aw_channel, ram.w_channel, ram.b_channel)):
        ch.set_pause_generator(pause_pattern(seed * 4 + i, 0.3))
    managers = [AxiMasterWrite(AxiWriteBus.from_prefix(dut, f"c{k}"), dut.clk, dut.rst,
                               max_burst_len=16) for k in range(2)]
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    want = {}

    async def writer(k):
        for j in range(12):
            # client k owns the half k of the memory; random offsets, lengths, IDs
            addr = k * 0x8000 + j * 0x800 + rng.randrange(0, 64)
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 700)))
            awid = rng.randrange(2)
            await managers[k].write(addr, data, awid=awid)
            want[addr] = data

    await Combine(cocotb.start_soon(writer(0)), cocotb.start_soon(writer(1)))
    for addr, data in want.items():
        assert ram.read(addr, len(data)) == data, hex(addr)
    await RisingEdge(dut.clk)


def test_write_arbiter_merges_two_managers():
    run_cocotb(AxiWriteArbiter(id_bits=1, data_bits=64, addr_bits=32), test_module=__name__,
               build_name="hybrid-axi-write-arbiter", test_args={"seed": 3},
               testcase="two_writers")


@cocotb.test()
async def lite_link(dut):
    rng = random.Random(test_args()["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiLiteRam(AxiLiteBus.from_prefix(dut, "m_axil"), dut.clk, dut.rst, size=1 << 12)
    for k in range(2):
        getattr(dut, f"req_valid_{k}").value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    model = {}
    # both clients ask at once, often: each waits for its own ack, data go to the right one
    pending = [None, None]
    done = [0, 0]
    for _ in range(4000):
        for k in range(2):
            if pending[k] is None and rng.random() < 0.5:
                write = rng.random() < 0.5 or not model
                addr = 4 * rng.randrange(0, 64) if write else rng.choice(sorted(model))
                value = rng.randrange(1 << 32)
                pending[k] = (write, addr, value)
                getattr(dut, f"req_valid_{k}").value = 1
                getattr(dut, f"req_write_{k}").value = int(write)
                getattr(dut, f"req_addr_{k}").value = addr
                getattr(dut, f"req_wdata_{k}").value = value
                getattr(dut, f"req_wstrb_{k}").value = 0xF
        await ReadOnly()
        acks = [int(getattr(dut, f"ack_{k}").value) for k in range(2)]
        assert sum(acks) <= 1
        rdata = int(dut.rdata.value)
        await RisingEdge(dut.clk)
        for k in range(2):
            if acks[k]:
                write, addr, value = pending[k]
                if write:
                    model[addr] = value
                else:
                    assert rdata == model[addr], (k, hex(addr))
                pending[k] = None
                done[k] += 1
                getattr(dut, f"req_valid_{k}").value = 0
    assert min(done) > 100, done
    for addr, value in model.items():
        assert int.from_bytes(ram.read(addr, 4), "little") == value


def test_lite_link_serves_two_clients():
    run_cocotb(AxiLiteLink(clients=2, addr_bits=12), test_module=__name__,
               build_name="hybrid-axil-link", test_args={"seed": 5}, testcase="lite_link")


@cocotb.test()
async def packed_bursts(dut):
    seed = test_args()["seed"]
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRamWrite(AxiWriteBus.from_prefix(dut, "m"), dut.clk, dut.rst, size=1 << 16)
    ram.b_channel.set_pause_generator(pause_pattern(seed, 0.3))
    manager = AxiMasterWrite(AxiWriteBus.from_prefix(dut, "s"), dut.clk, dut.rst,
                             max_burst_len=16)
    # the manager's data come slowly (a beat now and then)
    manager.w_channel.set_pause_generator(pause_pattern(seed + 1, 0.8))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    gaps = []

    async def watch():
        inside = False
        while True:
            await ReadOnly()
            valid, ready = int(dut.m_wvalid.value), int(dut.m_wready.value)
            if inside and not valid:
                gaps.append(1)
            if valid and ready:
                inside = not int(dut.m_wlast.value)
            await RisingEdge(dut.clk)

    cocotb.start_soon(watch())
    want = {}
    for j in range(10):
        addr = j * 0x1000 + rng.randrange(0, 64)
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        await manager.write(addr, data)
        want[addr] = data
    for addr, data in want.items():
        assert ram.read(addr, len(data)) == data, hex(addr)
    assert not gaps, f"{len(gaps)} cycles without data inside a released burst"


def test_write_packer_releases_whole_bursts():
    run_cocotb(AxiWritePacker(id_bits=1, data_bits=64, addr_bits=32, max_burst=16),
               test_module=__name__, build_name="hybrid-axi-write-packer",
               test_args={"seed": 4}, testcase="packed_bursts")
