# amaranth: UnusedElaboratable=no
"""The SEML core seen from the host under Verilator: a start with a misaligned
``PROG_BASE`` ends in an error and done without touching the bus, and the core runs
the next program at an aligned base."""

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.isa import Opcode, Unit, build_program, encode_instruction
from hw.seml.core import SemlCore
from hw.seml.csr import PROG_BASE_MISALIGNED, STATUS_DONE, STATUS_ERROR
from sim.axi import DdrModel, Host
from sim.rtl import run_cocotb, test_args
from tests.hw.test_seml_core import ARCH

pytestmark = pytest.mark.rtl

BASE = 0x10000
#: ``PROG_BASE`` offsets from a 64-byte boundary tried before the aligned run.
MISALIGNED = (1, 8, 32, 63)


async def _count_read_requests(dut, count):
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        count[0] += int(dut.m_axi_arvalid.value)


@cocotb.test()
async def host_misaligned_prog_base(dut):
    args = test_args()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ddr = DdrModel(dut, size=1 << 20)
    host = Host(dut, ddr)
    await host.reset()
    program = bytes.fromhex(args["program"])
    requests = [0]
    cocotb.start_soon(_count_read_requests(dut, requests))
    for offset in MISALIGNED:
        # The program sits at the misaligned address too: nothing is read from it.
        host.load(BASE + offset, program)
        result = await host.run(BASE + offset, BASE, timeout_cycles=1000, poll_interval=8)
        dut._log.info("PROG_BASE %#x: %s", BASE + offset, result)
        assert result.status == STATUS_DONE | STATUS_ERROR, result
        assert result.error_code == PROG_BASE_MISALIGNED.value, result
        assert (result.error_info, result.cycles, result.instr_count) == (0, 0, 0), result
        assert requests[0] == 0, "the core read from DDR"
        assert int(dut.irq.value) == 1, "irq must be high once done"
        await host.clear()
        assert await host.read_reg("STATUS") == 0
        assert int(dut.irq.value) == 0, "CLEAR must drop irq"
    # The core is untouched: the same program at an aligned base runs.
    host.load(BASE, program)
    result = await host.run(BASE, BASE, timeout_cycles=20_000)
    assert result.error_code == 0, result
    assert int(dut.irq.value) == 1
    assert result.instr_count == args["instr_count"], result
    assert requests[0] > 0


def test_misaligned_prog_base():
    instrs = [encode_instruction(Opcode.SYNC, mask=Unit.LOAD), encode_instruction(Opcode.END)]
    program = build_program(ARCH.config_hash, instrs)
    run_cocotb(SemlCore(ARCH), test_module=__name__, build_name="seml-core-small",
               test_args={"program": program.hex(), "instr_count": len(instrs)},
               testcase="host_misaligned_prog_base")
