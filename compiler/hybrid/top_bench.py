"""The cocotb side of :func:`compiler.hybrid.rtl.run_hybrid_rtl` (runs inside the
simulator): loads two copies of the SEML image into the DDR model (cocotbext-axi memory,
random stalls), programs the hybrid top through its one AXI4-Lite port the way a host
does, streams the input frames back to back (random gaps), and at each ``frame_done``
copies that frame's outputs out of its image. Bounded by ``max_cycles``."""

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from hw.hybrid.top import HYBRID_REGISTERS, HYBRID_START
from hw.seml.csr import REGISTERS
from sim.axi import DdrModel
from sim.rtl import test_args


@cocotb.test()
async def hybrid_frames(dut):
    args = test_args()
    data = json.loads(Path(args["data"]).read_text())
    words, n_frames = data["inputs"], data["frames"]
    per_frame = len(words) // n_frames
    bases = (args["image_a"], args["image_b"])
    rng = random.Random(args["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = DdrModel(dut, size=args["ram_bytes"], pause=args["p_pause"], seed=args["seed"])
    csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    image = Path(args["image"]).read_bytes()
    for base in bases:
        ram.write(base, image)
    dut.rst.value = 1
    dut.i__valid.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    async def write(name, value):
        offset = REGISTERS[name] if name in REGISTERS else HYBRID_REGISTERS[name]
        await csr.write_dword(offset, value & 0xFFFFFFFF)

    async def read(name):
        offset = REGISTERS[name] if name in REGISTERS else HYBRID_REGISTERS[name]
        return await csr.read_dword(offset)

    assert await read("ID") == 0x53454D4C          # the core's map, passed through
    await write("PROG_BASE_LO", args["prog_base"])
    await write("PROG_BASE_HI", 0)
    await write("FRAME_COUNT", n_frames)
    for k, ab in enumerate("AB"):
        await write(f"HANDOFF_{ab}_LO", bases[k] + data["handoff"])
        await write(f"HANDOFF_{ab}_HI", 0)
        await write(f"DATA_{ab}_LO", bases[k])
        await write(f"DATA_{ab}_HI", 0)
    assert await read("FRAME_COUNT") == n_frames
    await write("HYBRID_CONTROL", HYBRID_START)

    await RisingEdge(dut.clk)
    sent, cycle, start, holding = 0, 0, None, False
    outputs, done, first_beat = [], [], []
    while cycle < args["max_cycles"] and len(outputs) < n_frames:
        if not holding:
            if sent < len(words) and rng.random() >= args["p_idle"]:
                dut.i__payload.value = words[sent]
                dut.i__valid.value = 1
            else:
                dut.i__valid.value = 0
        await ReadOnly()
        if int(dut.i__valid.value):
            holding = not int(dut.i__ready.value)
            if not holding:
                if start is None:
                    start = cycle
                if sent % per_frame == 0:
                    first_beat.append(cycle - start)
                sent += 1
        if int(dut.frame_done.value):
            base = bases[len(outputs) % 2]
            outputs.append({spec["name"]: list(ram.read(base + spec["offset"], spec["bytes"]))
                            for spec in data["outputs"]})
            done.append(cycle - (start or 0))
        if int(dut.irq.value) and len(outputs) < n_frames:
            break           # the run stopped early (an error): report what there is
        await RisingEdge(dut.clk)
        cycle += 1
    await RisingEdge(dut.clk)
    dut.i__valid.value = 0
    registers = {name: await read(name) for name in HYBRID_REGISTERS}
    registers["CORE_CYCLES"] = await read("CYCLES_LO")
    Path(args["result"]).write_text(json.dumps({"outputs": outputs, "done": done,
                                                "first_beat": first_beat,
                                                "registers": registers}))
