# amaranth: UnusedElaboratable=no
"""Pooling unit under Verilator, against ``sim.golden.max_pool2d`` / ``avg_pool2d``."""

import random

import cocotb
import numpy as np
import pytest
from amaranth.hdl import Shape
from cocotb.triggers import ClockCycles

from hw.blocks.pool import PoolMode, PoolUnit
from sim import golden
from sim.cocotb_streams import (
    StreamSink,
    StreamSource,
    pack_lanes,
    pack_struct,
    random_pattern,
    unpack_lanes,
)
from sim.rtl import run_cocotb, test_args
from tests.hw.bench import HandshakeLog, reset

pytestmark = pytest.mark.rtl


def _unit(args):
    return PoolUnit(args["lanes"], args["act_bits"], args["max_width"], args["max_height"],
                    args["mult_bits"], args["shift_bits"])


class Frame:
    """One frame: configuration word, input beats, golden output beats."""

    def __init__(self, rng, args, unit, mode, kernel=None, stride=None, size=None, pads=None,
                 ms=None, clamp=None):
        lanes, act_bits = args["lanes"], args["act_bits"]
        qlo, qhi = golden.qrange(act_bits)
        self.mode = mode
        self.kernel = kernel or rng.choice([2, 3])
        self.stride = stride or rng.choice([1, 2])
        k = self.kernel
        if pads is None:
            pads = [rng.randint(0, k - 1) for _ in range(4)] if rng.random() < 0.5 else [0] * 4
        self.pads = pads
        pt, pl, pb, pr = pads
        if size is None:
            # Odd and even sizes; the padded frame must hold at least one window.
            size = (rng.randint(max(1, k - pt - pb), args["max_height"]),
                    rng.randint(max(1, k - pl - pr), args["max_width"]))
        self.height, self.width = size
        max_m = (1 << args["mult_bits"]) - 1
        max_s = min((1 << args["shift_bits"]) - 1, golden.MAX_SHIFT)
        if ms is None:
            s = rng.randint(0, max_s)
            ms = (rng.choice([1, max_m, rng.randint(0, max_m),
                              min(max_m, round((1 << s) / (k * k)))]), s)
        self.m, self.s = ms
        if clamp is None:
            clamp = rng.choice([(qlo, qhi), (0, qhi), (0, rng.randint(0, qhi)),
                                tuple(sorted((rng.randint(qlo, qhi), rng.randint(qlo, qhi))))])
        self.lo, self.hi = clamp

        x = np.array([[[[rng.choice([qlo, qhi, rng.randint(qlo, qhi), rng.randint(qlo, qhi)])
                         for _ in range(self.width)] for _ in range(self.height)]
                       for _ in range(lanes)]], dtype=np.int64)
        if mode == PoolMode.BYPASS:
            y = x
        elif mode == PoolMode.MAX:
            y = golden.max_pool2d(x, k, self.stride, pads)
        else:
            y = golden.avg_pool2d(x, k, self.stride, self.m, self.s, self.lo, self.hi, pads)
        self.beats = [pack_lanes(x[0, :, r, c], act_bits)
                      for r in range(self.height) for c in range(self.width)]
        self.expected = [[int(v) for v in y[0, :, r, c]]
                         for r in range(y.shape[2]) for c in range(y.shape[3])]
        self.config = pack_struct(unit.config_layout, {
            "mode": mode.value, "kernel": k, "stride": self.stride, "width": self.width,
            "height": self.height, "pad_top": pt, "pad_left": pl, "pad_bottom": pb,
            "pad_right": pr, "m": self.m, "s": self.s, "lo": self.lo, "hi": self.hi})

    @property
    def padded_area(self):
        pt, pl, pb, pr = self.pads
        return (self.height + pt + pb) * (self.width + pl + pr)


async def _run_frames(dut, args, frames, idle=None, backpressure=None):
    total = sum(len(f.expected) for f in frames)
    src = StreamSource(dut, "i", dut.clk, idle=idle)
    sink = StreamSink(dut, "o", dut.clk, backpressure=backpressure)
    recv = sink.start(total)
    for frame in frames:
        dut.cfg.value = frame.config
        await src.send(frame.beats)
    return [unpack_lanes(w, args["act_bits"], args["lanes"]) for w in await recv]


@cocotb.test()
async def pool_random(dut):
    """Back-to-back frames of every mode, kernel, stride and padding, random sizes,
    random idle and back-pressure; the configuration changes at every frame."""
    args = test_args()
    rng = random.Random(args["seed"])
    unit = _unit(args)
    await reset(dut)
    qlo, qhi = golden.qrange(args["act_bits"])
    max_m = (1 << args["mult_bits"]) - 1
    max_s = min((1 << args["shift_bits"]) - 1, golden.MAX_SHIFT)
    saturating = Frame(rng, args, unit, PoolMode.AVG, 3, 1, pads=[0] * 4, ms=(max_m, 0),
                       clamp=(qlo, qhi))
    frames = [
        # Every mode x kernel x stride once, then random frames.
        *[Frame(rng, args, unit, mode, k, st)
          for mode in (PoolMode.MAX, PoolMode.AVG) for k in (2, 3) for st in (1, 2)],
        Frame(rng, args, unit, PoolMode.BYPASS, size=(3, 5)),
        # Largest frame with the largest padding.
        Frame(rng, args, unit, PoolMode.MAX, 3, 2, size=(args["max_height"], args["max_width"]),
              pads=[2, 2, 2, 2]),
        # Average corner cases: identity (m = 1, s = 0) and saturation at both rails.
        Frame(rng, args, unit, PoolMode.AVG, 2, 1, pads=[0] * 4, ms=(1, 0), clamp=(qlo, qhi)),
        saturating,
        Frame(rng, args, unit, PoolMode.AVG, 3, 2, ms=(max(2, max_m // 3), max_s),
              clamp=(0, qhi)),
        *[Frame(rng, args, unit, rng.choice(list(PoolMode))) for _ in range(10)],
    ]
    got = await _run_frames(dut, args, frames,
                            idle=random_pattern(args["seed"] + 1, 0.75),
                            backpressure=random_pattern(args["seed"] + 2, 0.6))
    expected = [y for f in frames for y in f.expected]
    assert len(got) == len(expected)
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"output {n}: {g} != {e}"
    flat = [v for y in saturating.expected for v in y]
    assert qlo in flat and qhi in flat


@cocotb.test()
async def pool_throughput(dut):
    """Without back-pressure a frame takes one cycle per padded position, and results
    leave ``latency`` cycles after the position that completes their window."""
    args = test_args()
    rng = random.Random(args["seed"] + 7)
    unit = _unit(args)
    await reset(dut)
    size = (args["max_height"], args["max_width"])
    cases = [
        Frame(rng, args, unit, PoolMode.MAX, 3, 1, size=size, pads=[0] * 4),
        Frame(rng, args, unit, PoolMode.AVG, 2, 1, size=size, pads=[1, 1, 1, 1]),
        Frame(rng, args, unit, PoolMode.AVG, 3, 2, size=size, pads=[0] * 4),
        Frame(rng, args, unit, PoolMode.BYPASS, size=size),
    ]
    for frame in cases:
        i_log = HandshakeLog(dut, "i", dut.clk)
        o_log = HandshakeLog(dut, "o", dut.clk)
        got = await _run_frames(dut, args, [frame])
        await ClockCycles(dut.clk, PoolUnit.latency + 2)
        assert got == frame.expected
        first_offer = i_log.valid_cycles[0]
        if frame.pads == [0] * 4:
            assert i_log.cycles == list(range(first_offer, first_offer + len(frame.beats))), \
                "input stalled"
        if frame.mode == PoolMode.BYPASS:
            assert o_log.cycles == [c + PoolUnit.latency for c in i_log.cycles]
        elif frame.stride == 1:
            # The last padded position completes the last window.
            assert o_log.cycles[-1] - first_offer == frame.padded_area - 1 + PoolUnit.latency
        else:
            # Stride 2 on an odd-sized frame: the last window ends at the last pixel.
            assert (size[0] - 3) % 2 == 0 and (size[1] - 3) % 2 == 0
            assert o_log.cycles[-1] - i_log.cycles[-1] == PoolUnit.latency


CONFIGS = [
    # lanes, act_bits, max_width, max_height, mult_bits, shift_bits
    (2, 8, 13, 9, 10, 5),
    (1, 4, 7, 5, 16, 6),
]


@pytest.mark.parametrize("lanes,act_bits,max_width,max_height,mult_bits,shift_bits", CONFIGS)
def test_pool_unit(lanes, act_bits, max_width, max_height, mult_bits, shift_bits):
    args = {"lanes": lanes, "act_bits": act_bits, "max_width": max_width,
            "max_height": max_height, "mult_bits": mult_bits, "shift_bits": shift_bits,
            "seed": lanes * 13 + act_bits + max_width}
    name = f"pool-l{lanes}a{act_bits}w{max_width}h{max_height}m{mult_bits}s{shift_bits}"
    run_cocotb(_unit(args), test_module=__name__, build_name=name, test_args=args)


def test_layout_and_latency():
    unit = PoolUnit(4, 8, 64, 32)
    assert unit.pixel_layout.size == 32
    assert set(unit.signature.members) == {"i", "o", "cfg"}
    assert Shape.cast(unit.config_layout["width"].shape).width == 7
    assert Shape.cast(unit.config_layout["height"].shape).width == 6
    assert PoolUnit.latency == 8  # three stages and the requantizer's five
    assert PoolMode.BYPASS.value == 0 and PoolMode.MAX.value == 1 and PoolMode.AVG.value == 2


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^lanes must be an integer between 1 and 1024, "
                                         r"not 0$"):
        PoolUnit(0, 8, 16, 16)
    with pytest.raises(ValueError, match=r"^act_bits must be an integer between 2 and 32, "
                                         r"not 1$"):
        PoolUnit(4, 1, 16, 16)
    with pytest.raises(ValueError, match=r"^max_width must be an integer between 1 and 4096, "
                                         r"not 0$"):
        PoolUnit(4, 8, 0, 16)
    with pytest.raises(TypeError, match=r"^max_height must be an integer, not 16.0$"):
        PoolUnit(4, 8, 16, 16.0)
    with pytest.raises(ValueError, match=r"^shift_bits must be an integer between 1 and 7, "
                                         r"not 0$"):
        PoolUnit(4, 8, 16, 16, 16, 0)
