"""Run a compiled LSTM image on the Descartes core RTL (Verilator + cocotb).

:func:`run_lstm_rtl` builds the core for an arch (cached), loads the DDR image into
cocotbext-axi's ``AxiRam`` at :data:`IMAGE_BASE`, starts the core through
``AxiLiteMaster`` (the same :class:`sim.axi.Host` as the SEML core), polls for done and
returns the DDR image, the error code, the cycle counter and the cycle stamps (one at
each step start and one at each element-wise phase start).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
from cocotb.clock import Clock

from sim.axi import DdrModel, Host

__all__ = ["IMAGE_BASE", "LstmRtlRun", "run_lstm_rtl"]

IMAGE_BASE = 0x10000


@dataclass
class LstmRtlRun:
    image: bytes
    cycles: int
    error_code: int
    error_info: int
    steps: int
    marks: list = field(default_factory=list)
    wall_seconds: float = 0.0


def run_lstm_rtl(arch, image: bytes, *, pause=0.0, seed=0, faults=(), timeout_cycles=50_000_000,
                 prog_offset=0, build_name=None) -> LstmRtlRun:
    from hw.lstm.core import LstmCore
    from sim.rtl import run_cocotb

    with tempfile.TemporaryDirectory(prefix="convforge-lstm-") as tmp:
        tmp = Path(tmp)
        (tmp / "image.bin").write_bytes(bytes(image))
        args = {"image": str(tmp / "image.bin"), "result": str(tmp / "result.json"),
                "out": str(tmp / "out.bin"), "pause": pause, "seed": seed,
                "faults": [list(f) for f in faults], "timeout": timeout_cycles,
                "prog_offset": prog_offset}
        run_cocotb(LstmCore(arch), test_module="sim.lstm_rtl",
                   build_name=build_name or f"lstm-{arch.config_hash:08x}",
                   test_args=args, testcase="lstm_run")
        info = json.loads((tmp / "result.json").read_text())
        out = (tmp / "out.bin").read_bytes()
    return LstmRtlRun(out, info["cycles"], info["error_code"], info["error_info"],
                      info["steps"], info["marks"], info["wall_seconds"])


@cocotb.test()
async def lstm_run(dut):
    """Runs the image named by the test arguments and writes the DDR image back."""
    from sim.rtl import test_args

    args = test_args()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    image = Path(args["image"]).read_bytes()
    ddr = DdrModel(dut, size=1 << (len(image) + IMAGE_BASE - 1).bit_length(),
                   pause=args["pause"], seed=args["seed"])
    for start, length in args["faults"]:
        ddr.add_fault(IMAGE_BASE + start, length)
    host = Host(dut, ddr)
    await host.reset()
    host.load(IMAGE_BASE, image)
    t0 = time.perf_counter()
    result = await host.run(IMAGE_BASE + args["prog_offset"], IMAGE_BASE,
                            timeout_cycles=args["timeout"], poll_interval=128,
                            trace_entries=512)
    wall = time.perf_counter() - t0
    Path(args["out"]).write_bytes(host.read_back(IMAGE_BASE, len(image)))
    Path(args["result"]).write_text(json.dumps({
        "cycles": result.cycles, "error_code": result.error_code,
        "error_info": result.error_info, "steps": result.instr_count,
        "marks": result.trace, "wall_seconds": wall}))
