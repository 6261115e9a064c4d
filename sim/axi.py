"""cocotb helpers that drive the SEML core the way a Zynq PS does.

:class:`DdrModel` is the DDR behind the core's AXI4 master: cocotbext-axi's
``AxiSlave`` over its ``Memory``, answering ``SLVERR`` for chosen address windows to test
bus errors. :class:`Host` is the processor side: it loads the program, weights and
input into DDR, programs the control registers through an ``AxiLiteMaster``,
starts the core, polls for done and reads results and counters back.

:func:`run_program_rtl` does the whole round trip for a compiled program outside
cocotb (Verilator build, load, run, read back); it is the ``rtl`` simulation
backend of ``convforge simulate --rtl``. :func:`layer_cycles` sets the core's
per-instruction issue stamps against the compiler's per-layer cycle model.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiSlave
from cocotbext.axi.memory import Memory

from hw.seml.csr import (
    CONTROL_CLEAR,
    CONTROL_START,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    TRACE_BASE,
)

__all__ = [
    "IMAGE_BASE",
    "DdrModel",
    "Host",
    "RtlRun",
    "RunResult",
    "layer_cycles",
    "pause_pattern",
    "rtl_backend",
    "run_program_rtl",
]


def pause_pattern(seed: int, p_pause: float):
    """Endless 0/1 pattern for cocotbext-axi pause generators (1 = pause this cycle)."""
    rng = random.Random(seed)
    while True:
        yield 1 if rng.random() < p_pause else 0


class DdrModel(Memory):
    """DDR on the ``m_axi`` bus of ``dut``: cocotbext-axi's ``AxiSlave`` over a memory that
    can answer ``SLVERR`` for chosen address windows.

    The memory is cocotbext-axi's ``Memory`` (as in ``AxiRam``: ``read`` / ``write`` from
    the test bench, addresses wrap modulo ``size`` on the bus); the bus side is an
    ``AxiSlave`` whose target raises for a faulty access, which ``AxiSlave`` answers with
    ``SLVERR``.

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
        super().__init__(size=size)
        self.faults = []
        self.slave = AxiSlave(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                              target=_BusTarget(self))
        self.read_if, self.write_if = self.slave.read_if, self.slave.write_if
        if pause:
            channels = (self.write_if.aw_channel, self.write_if.w_channel,
                        self.write_if.b_channel, self.read_if.ar_channel,
                        self.read_if.r_channel)
            for i, channel in enumerate(channels):
                channel.set_pause_generator(pause_pattern(seed * 8 + i, pause))

    def add_fault(self, start: int, length: int):
        """Answer ``SLVERR`` for every access touching ``[start, start + length)``."""
        self.faults.append((start, start + length))

    def check(self, address, length):
        """Raise ``ValueError`` if ``[address, address + length)`` touches a faulty window."""
        for lo, hi in self.faults:
            if address < hi and address + length > lo:
                raise ValueError(f"bus error at {address:#x}")


class _BusTarget:
    """The ``AxiSlave`` target of a :class:`DdrModel`: its memory, with faults raised."""

    def __init__(self, ddr):
        self._ddr = ddr

    async def read(self, address, length):
        self._ddr.check(address, length)
        return self._ddr.read(address % self._ddr.size, length)

    async def write(self, address, data):
        self._ddr.check(address, len(data))
        self._ddr.write(address % self._ddr.size, data)


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



# Running a whole program on the RTL -------------------------------------------------------

#: DDR address at which the RTL runs place the image (program at its start).
IMAGE_BASE = 0x100000


@dataclass
class RtlRun:
    """Outcome of :func:`run_program_rtl`.

    Members
    -------
    cycles : int
        The core's cycle counter (start to done).
    error_code : int
        :class:`hw.isa.ErrorCode` value reported by the core.
    error_info : int
        Index of the failing (or next) instruction.
    instr_count : int
        Instructions issued.
    issue : list of int
        Cycle at which each instruction was issued (first ``trace_depth`` ones).
    wall_seconds : float
        Wall time of the simulation (build excluded).
    """
    cycles: int
    error_code: int
    error_info: int
    instr_count: int
    issue: list = field(default_factory=list)
    wall_seconds: float = 0.0


def run_program_rtl(arch, program: bytes, ddr, *, pause: float = 0.0, seed: int = 0,
                    timeout_cycles: int = 50_000_000, build_name: str | None = None) -> RtlRun:
    """Run ``program`` over the DDR image ``ddr`` (uint8 array, updated in place) on the RTL.

    Builds the core for ``arch`` with Verilator (cached), loads the image into an
    ``AxiRam`` at :data:`IMAGE_BASE`, starts the core through ``AxiLiteMaster``,
    polls for done and copies the DDR image back into ``ddr``.

    Raises
    ------
    hw.isa.ProgramFormatError
        The core stopped with an error code (the ISS raises the same for the same
        program).
    """
    import numpy as np

    from hw.isa import ErrorCode, ProgramFormatError
    from hw.seml.core import SemlCore
    from sim.rtl import run_cocotb

    if not isinstance(ddr, np.ndarray) or ddr.dtype != np.uint8 or ddr.ndim != 1:
        raise TypeError(f"ddr must be a 1-D uint8 numpy array, not {ddr!r}")
    image = ddr.copy()
    image[:len(program)] = np.frombuffer(program, dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="convforge-rtl-") as tmp:
        tmp = Path(tmp)
        (tmp / "image.bin").write_bytes(image.tobytes())
        args = {"image": str(tmp / "image.bin"), "result": str(tmp / "result.json"),
                "out": str(tmp / "out.bin"), "pause": pause, "seed": seed,
                "timeout": timeout_cycles}
        run_cocotb(SemlCore(arch), test_module="sim.axi",
                   build_name=build_name or f"seml-{arch.config_hash:016x}",
                   test_args=args, testcase="seml_run")
        info = json.loads((tmp / "result.json").read_text())
        ddr[:] = np.frombuffer((tmp / "out.bin").read_bytes(), dtype=np.uint8)
    run = RtlRun(info["cycles"], info["error_code"], info["error_info"], info["instr_count"],
                 info["issue"], info["wall_seconds"])
    if run.error_code:
        code = ErrorCode(run.error_code)
        raise ProgramFormatError(
            f"The core stopped with {code.name} at instruction {run.error_info}", code)
    return run


def layer_cycles(manifest: dict, iss_result, rtl_run: RtlRun, arch) -> list:
    """Per-layer cycles of a compiled model: the compiler's model, the ISS timeline and
    the RTL's issue stamps, with the MAC utilization of the RTL.

    A layer's span runs from the issue of its first instruction to the issue of the
    next layer's first one (to done for the last layer). ``rtl_cycles`` is ``None``
    for layers past the core's trace depth.
    """
    macs_of = {"conv": arch.conv_macs, "depthwise": arch.dw_macs, "pointwise": arch.pw_macs}
    starts = iss_result.start
    issue = rtl_run.issue
    rows = []
    first = 0
    for layer in manifest["layers"]:
        last = first + layer["instructions"]
        row = {"name": layer["name"], "kind": layer["kind"], "engine": layer["engine"],
               "macs": layer["macs"], "model_cycles": layer["cycles"]}
        end_iss = starts[last] if last < len(starts) else iss_result.cycles
        row["iss_cycles"] = end_iss - starts[first]
        if last < len(issue):
            row["rtl_cycles"] = issue[last] - issue[first]
        elif last == len(issue) == rtl_run.instr_count and first < len(issue):
            row["rtl_cycles"] = rtl_run.cycles - issue[first]
        else:
            row["rtl_cycles"] = None
        if row["rtl_cycles"]:
            row["rtl_over_iss"] = row["rtl_cycles"] / max(row["iss_cycles"], 1)
            units = macs_of.get(layer["engine"].rstrip("*").split(" (")[0])
            if units and layer["macs"]:
                row["mac_utilization"] = layer["macs"] / (row["rtl_cycles"] * units)
        rows.append(row)
        first = last
    return rows


def rtl_backend(arch, program: bytes, ddr):
    """``compiler.compile`` simulation backend: ``(cycles, RtlRun)``."""
    run = run_program_rtl(arch, program, ddr)
    return run.cycles, run


@cocotb.test()
async def seml_run(dut):
    """Runs the image named by the test arguments and writes the DDR image back."""
    import time

    from sim.rtl import test_args

    args = test_args()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    image = Path(args["image"]).read_bytes()
    ddr = DdrModel(dut, size=1 << (max(len(image) + IMAGE_BASE - 1, 1).bit_length()),
                   pause=args["pause"], seed=args["seed"])
    host = Host(dut, ddr)
    await host.reset()
    host.load(IMAGE_BASE, image)
    start = time.perf_counter()
    result = await host.run(IMAGE_BASE, IMAGE_BASE, timeout_cycles=args["timeout"],
                            poll_interval=256, trace_entries=512)
    wall = time.perf_counter() - start
    Path(args["out"]).write_bytes(host.read_back(IMAGE_BASE, len(image)))
    Path(args["result"]).write_text(json.dumps({
        "cycles": result.cycles, "error_code": result.error_code,
        "error_info": result.error_info, "instr_count": result.instr_count,
        "issue": result.trace, "wall_seconds": wall}))
