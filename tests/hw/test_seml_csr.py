# amaranth: UnusedElaboratable=no
"""AXI4-Lite control/status registers under Verilator, driven by cocotbext-axi."""

import random

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw.seml.csr import (
    CONTROL_CLEAR,
    CONTROL_START,
    CORE_ID,
    PROG_BASE_MISALIGNED,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    TRACE_BASE,
    ControlStatusRegisters,
)
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl


def _pattern(rng, p_active):
    while True:
        yield 0 if rng.random() < p_active else 1


async def _setup(dut, rng):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    for channel in (master.write_if.aw_channel, master.write_if.w_channel,
                    master.write_if.b_channel, master.read_if.ar_channel,
                    master.read_if.r_channel):
        channel.set_pause_generator(_pattern(rng, 0.6))
    dut.busy.value = 0
    dut.done.value = 0
    dut.error_code.value = 0
    dut.error_info.value = 0
    dut.instr_count.value = 0
    dut.mark.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return master


async def _read(master, name_or_addr):
    addr = REGISTERS[name_or_addr] if isinstance(name_or_addr, str) else name_or_addr
    return await master.read_dword(addr)


@cocotb.test()
async def csr_registers(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    master = await _setup(dut, rng)
    addr_bits = args["addr_bits"]

    assert await _read(master, "ID") == CORE_ID
    assert await _read(master, "STATUS") == 0

    for lo, hi in (("PROG_BASE_LO", "PROG_BASE_HI"), ("DATA_BASE_LO", "DATA_BASE_HI")):
        value = rng.getrandbits(64)
        await master.write_dword(REGISTERS[lo], value & 0xFFFFFFFF)
        await master.write_dword(REGISTERS[hi], value >> 32)
        got = await _read(master, lo) | (await _read(master, hi) << 32)
        assert got == value
        port = dut.prog_base if lo.startswith("PROG") else dut.data_base
        assert int(port.value) == value & ((1 << addr_bits) - 1)
        # Byte strobes: rewrite byte 2 only.
        await master.write(REGISTERS[lo] + 2, bytes([0xA5]))
        got = await _read(master, lo)
        assert got == (value & 0xFF00FFFF) | 0x00A50000

    # Unmapped addresses answer SLVERR; the trace window answers OKAY.
    resp = await master.write(0x3F0, bytes(4))
    assert resp.resp == AxiResp.SLVERR
    resp = await master.read(0x3F0, 4)
    assert resp.resp == AxiResp.SLVERR
    resp = await master.read(TRACE_BASE + 4 * (args["trace_depth"] - 1), 4)
    assert resp.resp == AxiResp.OKAY
    resp = await master.read(TRACE_BASE + 4 * args["trace_depth"], 4)
    assert resp.resp == AxiResp.SLVERR


async def _core_model(dut, busy_cycles, error_code, error_info, marks, started):
    """Stands in for the core: waits for start, stays busy, marks, reports done."""
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.start.value):
            break
    started.append(True)
    await RisingEdge(dut.clk)
    dut.busy.value = 1
    for cycle in range(busy_cycles):
        dut.mark.value = int(cycle in marks)
        dut.instr_count.value = cycle // 3
        await RisingEdge(dut.clk)
    dut.mark.value = 0
    dut.busy.value = 0
    dut.done.value = 1
    dut.error_code.value = error_code
    dut.error_info.value = error_info
    await RisingEdge(dut.clk)
    dut.done.value = 0
    dut.error_code.value = 0


@cocotb.test()
async def csr_run(dut):
    args = test_args()
    rng = random.Random(args["seed"] + 1)
    master = await _setup(dut, rng)
    depth = args["trace_depth"]

    for run in range(3):
        busy_cycles = rng.randrange(40, 200)
        error_code = 0 if run == 0 else rng.randrange(1, 256)
        error_info = rng.getrandbits(32)
        marks = sorted(rng.sample(range(busy_cycles), min(busy_cycles, depth + 2)))
        started = []
        cocotb.start_soon(_core_model(dut, busy_cycles, error_code, error_info, set(marks),
                                      started))
        await master.write_dword(REGISTERS["CONTROL"], CONTROL_START)
        assert not int(dut.irq.value), "irq still high after start"
        while True:
            status = await _read(master, "STATUS")
            if status & STATUS_DONE:
                break
        assert started
        assert int(dut.irq.value), "irq low after done"
        assert status & STATUS_BUSY == 0
        assert bool(status & STATUS_ERROR) == (error_code != 0)
        assert await _read(master, "ERROR_CODE") == error_code
        assert await _read(master, "ERROR_INFO") == error_info
        cycles = await _read(master, "CYCLES_LO") | (await _read(master, "CYCLES_HI") << 32)
        assert cycles == busy_cycles
        assert await _read(master, "TRACE_COUNT") == len(marks)
        for i, mark in enumerate(marks[:depth]):
            # The stamp holds the cycles counted before the marking cycle.
            assert await _read(master, TRACE_BASE + 4 * i) == mark

        # A start while busy is ignored; clear drops done, the error and irq.
        if error_code:
            await master.write_dword(REGISTERS["CONTROL"], CONTROL_CLEAR)
            assert not int(dut.irq.value), "irq still high after clear"
            assert await _read(master, "STATUS") == 0
            assert await _read(master, "ERROR_CODE") == 0

    dut.busy.value = 1
    await master.write_dword(REGISTERS["CONTROL"], CONTROL_START)
    for _ in range(10):
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert not int(dut.start.value)
    await RisingEdge(dut.clk)
    dut.busy.value = 0


async def _count_starts(dut, starts):
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        starts[0] += int(dut.start.value)


@cocotb.test()
async def csr_misaligned_prog_base(dut):
    """A start with PROG_BASE off a 64-byte boundary never reaches the core: done at once
    with PROG_BASE_MISALIGNED, counters at 0, irq up until clear; an aligned base starts."""
    args = test_args()
    rng = random.Random(args["seed"] + 2)
    master = await _setup(dut, rng)
    starts = [0]
    cocotb.start_soon(_count_starts(dut, starts))
    dut.instr_count.value = 17  # the core's count of an earlier run
    await master.write_dword(REGISTERS["PROG_BASE_HI"], rng.getrandbits(32))
    for low in (1, 0x20, 0x3F, 0x1000 + rng.randrange(1, 64), rng.getrandbits(32) | 0x10):
        await master.write_dword(REGISTERS["PROG_BASE_LO"], low)
        await master.write_dword(REGISTERS["CONTROL"], CONTROL_START)
        assert int(dut.irq.value), "irq low after a refused start"
        assert await _read(master, "STATUS") == STATUS_DONE | STATUS_ERROR
        assert await _read(master, "ERROR_CODE") == PROG_BASE_MISALIGNED.value
        for name in ("ERROR_INFO", "CYCLES_LO", "CYCLES_HI", "INSTR_COUNT", "TRACE_COUNT"):
            assert await _read(master, name) == 0, name
        await master.write_dword(REGISTERS["CONTROL"], CONTROL_CLEAR)
        assert not int(dut.irq.value), "irq still high after clear"
        assert await _read(master, "STATUS") == 0
    assert starts[0] == 0, "start reached the core"

    # Aligned again (high word arbitrary): the core starts.
    await master.write_dword(REGISTERS["PROG_BASE_LO"], 0x1040)
    started = []
    cocotb.start_soon(_core_model(dut, 50, 0, 0, set(), started))
    await master.write_dword(REGISTERS["CONTROL"], CONTROL_START)
    while not await _read(master, "STATUS") & STATUS_DONE:
        pass
    assert started and starts[0] == 1
    assert await _read(master, "ERROR_CODE") == 0
    assert await _read(master, "CYCLES_LO") == 50
    assert await _read(master, "INSTR_COUNT") == int(dut.instr_count.value)


@pytest.mark.parametrize("addr_bits,trace_depth,seed", [(32, 4, 1), (40, 64, 2)])
def test_csr(addr_bits, trace_depth, seed):
    run_cocotb(ControlStatusRegisters(addr_bits=addr_bits, trace_depth=trace_depth),
               test_module=__name__, build_name=f"seml-csr-a{addr_bits}-t{trace_depth}",
               test_args={"seed": seed, "addr_bits": addr_bits, "trace_depth": trace_depth})


def test_csr_parameters():
    with pytest.raises(TypeError, match=r"Address width must be an integer, not '32'"):
        ControlStatusRegisters(addr_bits="32")
    with pytest.raises(ValueError, match=r"Address width must be between 16 and 64, not 8"):
        ControlStatusRegisters(addr_bits=8)
    with pytest.raises(ValueError, match=r"Trace depth must be a power of two .*, not 3"):
        ControlStatusRegisters(trace_depth=3)
    with pytest.raises(TypeError, match=r"Trace depth must be an integer, not 2.0"):
        ControlStatusRegisters(trace_depth=2.0)
    with pytest.raises(ValueError, match=r"Error code width must be between 1 and 32, not 0"):
        ControlStatusRegisters(error_bits=0)
    with pytest.raises(TypeError, match=r"Error code width must be an integer, not None"):
        ControlStatusRegisters(error_bits=None)
