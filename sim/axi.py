"""cocotb helpers that drive the SEML core the way a Zynq PS does.

:class:`DdrModel` is cocotbext-axi's ``AxiRam`` (the DDR behind the core's AXI4
master) that can also answer ``SLVERR`` for chosen address windows, to test bus
errors. :class:`Host` is the processor side: it loads the program, weights and
input into DDR, programs the control registers through an ``AxiLiteMaster``,
starts the core, polls for done and reads results and counters back.
"""

from __future__ import annotations

import random

from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from hw.seml.csr import (CONTROL_CLEAR, CONTROL_START, REGISTERS, STATUS_BUSY, STATUS_DONE,
                         STATUS_ERROR, TRACE_BASE)

__all__ = ["DdrModel", "Host", "RunResult", "pause_pattern"]


def pause_pattern(seed: int, p_pause: float):
    """Endless 0/1 pattern for cocotbext-axi pause generators (1 = pause this cycle)."""
    rng = random.Random(seed)
    while True:
        yield 1 if rng.random() < p_pause else 0


class DdrModel(AxiRam):
    """``AxiRam`` on the ``m_axi`` bus of ``dut``, with optional faulty windows.

    Parameters
    ----------
    dut : cocotb handle
        Toplevel with ``m_axi_*`` ports, ``clk`` and ``rst``.
    size : int
        Bytes of memory (addresses wrap modulo ``size``, as in ``AxiRam``).
    pause : float
        Probability that each channel stalls in a given cycle (random back-pressure).
    seed : int
        Seed of the pause patterns.
    """

    def __init__(self, dut, size=1 << 22, pause=0.0, seed=0):
        super().__init__(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=size)
        self.faults = []
        read, write = self.read_if._read, self.write_if._write

        async def faulty_read(address, length):
            self._check(address, length)
            return await read(address, length)

        async def faulty_write(address, data):
            self._check(address, len(data))
            await write(address, data)

        self.read_if._read = faulty_read
        self.write_if._write = faulty_write
        if pause:
            channels = (self.write_if.aw_channel, self.write_if.w_channel,
                        self.write_if.b_channel, self.read_if.ar_channel,
                        self.read_if.r_channel)
            for i, channel in enumerate(channels):
                channel.set_pause_generator(pause_pattern(seed * 8 + i, pause))

    def add_fault(self, start: int, length: int):
        """Answer ``SLVERR`` for every access touching ``[start, start + length)``."""
        self.faults.append((start, start + length))

    def _check(self, address, length):
        for lo, hi in self.faults:
            if address < hi and address + length > lo:
                raise ValueError(f"bus error at {address:#x}")


class RunResult:
    """What the host reads back after a run: status, error, counters and trace."""

    def __init__(self, status, error_code, error_info, cycles, instr_count, trace):
        self.status = status
        self.error_code = error_code
        self.error_info = error_info
        self.cycles = cycles
        self.instr_count = instr_count
        self.trace = trace

    @property
    def error(self) -> bool:
        return bool(self.status & STATUS_ERROR)

    def __repr__(self):
        return (f"RunResult(error_code={self.error_code}, error_info={self.error_info:#x}, "
                f"cycles={self.cycles}, instr_count={self.instr_count})")


class Host:
    """The processor side of the core: ``AxiLiteMaster`` on ``s_axil`` plus DDR access.

    Parameters
    ----------
    dut : cocotb handle
        Toplevel with ``s_axil_*`` ports.
    ddr : DdrModel
        The memory the core's DMA reads and writes.
    """

    def __init__(self, dut, ddr: DdrModel):
        self.dut = dut
        self.ddr = ddr
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)

    async def reset(self, cycles: int = 4):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def load(self, address: int, blob: bytes):
        self.ddr.write(address, bytes(blob))

    def read_back(self, address: int, length: int) -> bytes:
        return bytes(self.ddr.read(address, length))

    async def read_reg(self, name: str) -> int:
        return await self.csr.read_dword(REGISTERS[name])

    async def write_reg(self, name: str, value: int):
        await self.csr.write_dword(REGISTERS[name], value & 0xFFFFFFFF)

    async def run(self, prog_base: int, data_base: int, *, timeout_cycles: int = 10_000_000,
                  poll_interval: int = 64, trace_entries: int = 0) -> RunResult:
        """Program the base addresses, start, poll ``STATUS.done``, read the counters."""
        await self.write_reg("PROG_BASE_LO", prog_base)
        await self.write_reg("PROG_BASE_HI", prog_base >> 32)
        await self.write_reg("DATA_BASE_LO", data_base)
        await self.write_reg("DATA_BASE_HI", data_base >> 32)
        await self.write_reg("CONTROL", CONTROL_START)
        waited = 0
        while True:
            status = await self.read_reg("STATUS")
            if status & STATUS_DONE:
                break
            if waited > timeout_cycles:
                raise TimeoutError(f"core still busy after {waited} cycles (status {status:#x})")
            await ClockCycles(self.dut.clk, poll_interval)
            waited += poll_interval
        assert not status & STATUS_BUSY
        cycles = await self.read_reg("CYCLES_LO") | (await self.read_reg("CYCLES_HI") << 32)
        count = await self.read_reg("TRACE_COUNT")
        trace = [await self.csr.read_dword(TRACE_BASE + 4 * i)
                 for i in range(min(count, trace_entries))]
        return RunResult(status, await self.read_reg("ERROR_CODE"),
                         await self.read_reg("ERROR_INFO"), cycles,
                         await self.read_reg("INSTR_COUNT"), trace)

    async def clear(self):
        await self.write_reg("CONTROL", CONTROL_CLEAR)

