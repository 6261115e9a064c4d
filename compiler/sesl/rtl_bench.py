"""The cocotb side of :func:`compiler.sesl.rtl.run_pipeline_rtl` (runs inside the
simulator): streams the input words, collects the output words with their cycles,
and stops after ``max_cycles`` cycles at the latest."""

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.rtl import test_args


@cocotb.test()
async def sesl_stream(dut):
    args = test_args()
    data = json.loads(Path(args["data"]).read_text())
    words, n_out = data["inputs"], data["n_out"]
    rng_in = random.Random(args["seed"] * 2 + 1)
    rng_out = random.Random(args["seed"] * 2 + 2)
    p_idle, p_stall = args["p_idle"], args["p_stall"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    sent, out, cycles = 0, [], []
    start = None
    cycle = 0
    holding = False
    while cycle < args["max_cycles"] and len(out) < n_out:
        # drive this cycle's inputs
        if not holding:
            if sent < len(words) and rng_in.random() >= p_idle:
                dut.i__payload.value = words[sent]
                dut.i__valid.value = 1
            else:
                dut.i__valid.value = 0
        ready = 1 if rng_out.random() >= p_stall else 0
        dut.o__ready.value = ready
        await ReadOnly()
        if int(dut.i__valid.value):
            if start is None:
                start = cycle
            if int(dut.i__ready.value):
                sent += 1
                holding = False
            else:
                holding = True
        if ready and int(dut.o__valid.value):
            out.append(int(dut.o__payload.value))
            cycles.append(cycle - (start or 0))
        await RisingEdge(dut.clk)
        cycle += 1
    Path(args["result"]).write_text(json.dumps({"words": out, "cycles": cycles,
                                                "sent": sent}))
