# amaranth: UnusedElaboratable=no
"""PBUF's entry buffer under Verilator: reads of ``lanes`` consecutive entries at any
address against a list model."""

import random

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.seml.buffers import EntryBuffer
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl


@cocotb.test()
async def entry_buffer_random_access(dut):
    """Random writes of one entry and reads of ``lanes`` consecutive entries, in the
    same cycle or not, with idle cycles (``r_en`` low holds the last read)."""
    args = test_args()
    rng = random.Random(args["seed"])
    depth, lanes, width = args["depth"], args["lanes"], args["width"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.w_en.value = 0
    dut.r_en.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    model = [rng.getrandbits(width) for _ in range(depth)]
    for addr, value in enumerate(model):
        dut.w_addr.value, dut.w_data.value, dut.w_en.value = addr, value, 1
        await RisingEdge(dut.clk)
    dut.w_en.value = 0
    expect = None
    for _ in range(600):
        write = rng.random() < 0.5
        read = rng.random() < 0.6
        w_addr, value = rng.randrange(depth), rng.getrandbits(width)
        r_addr = rng.randrange(depth - lanes + 1)
        dut.w_addr.value, dut.w_data.value, dut.w_en.value = w_addr, value, int(write)
        dut.r_addr.value, dut.r_en.value = r_addr, int(read)
        if read:
            expect = model[r_addr:r_addr + lanes]      # old data: read before write
        if write:
            model[w_addr] = value
        await RisingEdge(dut.clk)
        dut.w_en.value = 0
        dut.r_en.value = 0
        await ReadOnly()
        if expect is not None:
            got = [getattr(dut, f"r{q}_data").value.to_unsigned() for q in range(lanes)]
            assert got == expect, (r_addr, got, expect)
        await RisingEdge(dut.clk)


@pytest.mark.parametrize("depth,lanes,seed", [(100, 3, 1), (64, 16, 2), (37, 1, 3), (90, 5, 4)])
def test_entry_buffer(depth, lanes, seed):
    width = 22
    run_cocotb(EntryBuffer(width, depth=depth, lanes=lanes), test_module=__name__,
               build_name=f"seml-entry-buffer-{depth}-{lanes}",
               test_args={"depth": depth, "lanes": lanes, "width": width, "seed": seed})


def test_entry_buffer_banks_and_parameters():
    assert [EntryBuffer(8, depth=64, lanes=n).banks for n in (1, 2, 3, 4, 5, 16)] == \
        [1, 2, 4, 4, 8, 16]
    with pytest.raises(ValueError, match=r"Lane count must be at least 1, not 0"):
        EntryBuffer(8, depth=64, lanes=0)
    with pytest.raises(ValueError, match=r"Buffer depth must be at least 1, not 0"):
        EntryBuffer(8, depth=0, lanes=2)
