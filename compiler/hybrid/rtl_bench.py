"""The cocotb side of :func:`compiler.hybrid.rtl.run_prefix_rtl` (runs inside the
simulator): streams the input frames back to back into the SESL prefix, and each time the
hand-off writer reports a frame written, copies the hand-off tensor out of the DDR model
(cocotbext-axi memory with random stalls). Bounded by ``max_cycles``."""

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.axi import DdrModel
from sim.rtl import test_args


@cocotb.test()
async def prefix_frames(dut):
    args = test_args()
    data = json.loads(Path(args["data"]).read_text())
    words, n_frames = data["inputs"], data["frames"]
    base, size = args["base"], args["bytes"]
    rng = random.Random(args["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = DdrModel(dut, size=args["ram_bytes"], pause=args["p_pause"], seed=args["seed"])
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.clear.value = 0
    dut.base.value = base
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    sent, cycle, start, holding = 0, 0, None, False
    tensors, done = [], []
    while cycle < args["max_cycles"] and len(tensors) < n_frames:
        if not holding:
            if sent < len(words) and rng.random() >= args["p_idle"]:
                dut.i__payload.value = words[sent]
                dut.i__valid.value = 1
            else:
                dut.i__valid.value = 0
        await ReadOnly()
        if int(dut.i__valid.value):
            if start is None:
                start = cycle
            holding = not int(dut.i__ready.value)
            if not holding:
                sent += 1
        if int(dut.frames.value) > len(tensors):
            tensors.append(list(ram.read(base, size)))
            done.append(cycle - (start or 0))
        await RisingEdge(dut.clk)
        cycle += 1
    Path(args["result"]).write_text(json.dumps({"tensors": tensors, "done": done,
                                                "error": int(dut.error.value)}))
