# amaranth: UnusedElaboratable=no
"""The hybrid hand-off writer under Verilator: SESL pixel stream -> SEML input planes in
DDR (cocotbext-axi memory with random stalls), several frames at changing addresses,
random input gaps, compared byte for byte with ``sim.iss.encode_activations``."""


import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.hybrid.handoff import HandoffWriter, handoff_cycles_per_frame
from sim.axi import DdrModel
from sim.cocotb_streams import StreamSource, pack_lanes, random_pattern
from sim.iss import encode_activations
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl
RAM_SIZE = 1 << 16


@cocotb.test()
async def handoff_frames(dut):
    args = test_args()
    c, h, w, seed = args["c"], args["h"], args["w"], args["seed"]
    rng = np.random.default_rng(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = DdrModel(dut, size=RAM_SIZE, pause=0.3, seed=seed)
    src = StreamSource(dut, "i", dut.clk, idle=random_pattern(seed + 1, 0.6))
    dut.clear.value = 0
    dut.base.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    frames = []
    size = c * h * w
    for f in range(args["frames"]):
        x = rng.integers(-128, 128, size=(1, c, h, w))
        base = int(rng.integers(0, (RAM_SIZE - size) // 8)) * 8 + int(rng.integers(0, 8))
        frames.append((x, base))
    for f, (x, base) in enumerate(frames):
        # the writer samples `base` when the frame's first row drains: wait for the frame
        # before to be written before changing it
        for _ in range(200000):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.frames.value) >= f - 1:
                break
        await RisingEdge(dut.clk)
        dut.base.value = base
        beats = [pack_lanes([int(v) for v in x[0, :, yy, xx]], 8)
                 for yy in range(h) for xx in range(w)]
        await src.send(beats)
        for _ in range(200000):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.frames.value) == f + 1:
                break
        else:
            raise AssertionError(f"frame {f} never completed")
        want = bytes(encode_activations(x, 8))
        assert ram.read(base, size) == want, f"frame {f} at {base:#x} differs"
    assert not int(dut.error.value)
    await ClockCycles(dut.clk, 5)
    assert int(dut.frames.value) == len(frames)


@pytest.mark.parametrize("c,h,w,data_bits,seed", [(5, 6, 7, 64, 1), (16, 3, 4, 32, 2)])
def test_handoff_writer(c, h, w, data_bits, seed):
    run_cocotb(HandoffWriter(c, h, w, data_bits=data_bits, addr_bits=32),
               test_module=__name__, build_name=f"hybrid-handoff-c{c}h{h}w{w}d{data_bits}",
               test_args={"c": c, "h": h, "w": w, "seed": seed, "frames": 3})


def test_handoff_parameters():
    with pytest.raises(ValueError, match="act_bits"):
        HandoffWriter(4, 4, 4, act_bits=16)
    with pytest.raises(ValueError, match="width"):
        HandoffWriter(4, 4, 0)
    assert handoff_cycles_per_frame(16, 8, 8, 64) == 8 * (2 * 128 + 16 + 2)
