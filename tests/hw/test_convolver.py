# amaranth: UnusedElaboratable=no
"""KxK convolver fed by the window generator, under Verilator, against ``golden.conv2d``."""

import random

import cocotb
import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.blocks.convolver import Convolver
from hw.blocks.line_buffer import WindowGenerator
from sim import golden
from sim.cocotb_streams import StreamSink, StreamSource, pack_lanes, random_pattern, to_signed
from sim.rtl import run_cocotb, test_args
from tests.hw.test_line_buffer import (
    TransferLog,
    cfg_word,
    frame_words,
    is_same_stride1,
    out_size,
    random_frame,
    random_pixels,
    start_bench,
    throughput_bound,
)


class FrameConvolver(wiring.Component):
    """A one-lane window generator feeding a convolver: one output channel of a conv layer."""

    def __init__(self, k, data_width, weight_width, max_width, max_height):
        self.windows = WindowGenerator(k, data_width, max_width=max_width, max_height=max_height)
        self.convolver = Convolver(k, data_width, weight_width)
        super().__init__({
            "cfg": In(stream.Signature(self.windows.cfg_layout)),
            "i": In(stream.Signature(self.windows.pixel_layout)),
            "w": In(stream.Signature(self.convolver.kernel_layout)),
            "o": Out(stream.Signature(signed(self.convolver.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.windows = windows = self.windows
        m.submodules.convolver = convolver = self.convolver
        wiring.connect(m, wiring.flipped(self.cfg), windows.cfg)
        wiring.connect(m, wiring.flipped(self.i), windows.i)
        wiring.connect(m, wiring.flipped(self.w), convolver.w)
        m.d.comb += [
            convolver.i.valid.eq(windows.o.valid),
            convolver.i.payload.eq(windows.o.payload[0]),
            windows.o.ready.eq(convolver.i.ready),
        ]
        wiring.connect(m, convolver.o, wiring.flipped(self.o))
        return m


async def _convolve(dut, dut_model, frame, x, w, rng, p_in, p_out):
    """Load ``w``, stream frame ``x`` (H, W); check against golden; return the outputs."""
    k = dut_model.convolver.k
    bits, wbits = dut_model.windows._data_width, dut_model.convolver._weight_width
    await StreamSource(dut, "w", dut.clk).send([pack_lanes(w.flatten(), wbits)])
    idle = random_pattern(rng.getrandbits(32), p_in) if p_in < 1 else None
    backpressure = random_pattern(rng.getrandbits(32), p_out) if p_out < 1 else None
    StreamSource(dut, "cfg", dut.clk).start([cfg_word(dut_model.windows.cfg_layout, frame)])
    sending = StreamSource(dut, "i", dut.clk, idle=idle).start(frame_words(x[None], bits))
    oh, ow = out_size(frame, k)
    words = await StreamSink(dut, "o", dut.clk, backpressure=backpressure).recv(oh * ow)
    await sending
    got = np.array([to_signed(v, dut_model.convolver.out_width) for v in words]).reshape(oh, ow)
    want = golden.conv2d(x[None, None], w[None, None], stride=frame["stride"],
                         pads=frame["pads"])[0, 0]
    assert np.array_equal(got, want), f"{frame}, kernel\n{w}\ngot\n{got}\nwant\n{want}"
    return got


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def convolve_random(dut):
    """Random frames and kernels, extremes, idle and back-pressure; a full-rate frame, timed."""
    args = test_args()
    rng = random.Random(args["seed"])
    k, bits, wbits = args["k"], args["data_width"], args["weight_width"]
    model = FrameConvolver(k, bits, wbits, args["max_width"], args["max_height"])
    await start_bench(dut, ("cfg", "i", "w"))
    log = TransferLog(dut, ("i", "o"))

    for _ in range(args["frames"]):
        frame = random_frame(rng, k, args["max_width"], args["max_height"])
        x = random_pixels(rng, (frame["height"], frame["width"]), bits)
        w = random_pixels(rng, (k, k), wbits)
        await _convolve(dut, model, frame, x, w, rng, 0.7, 0.6)

    # Most negative times most negative in every tap: the largest sum, exactly.
    xlo, _ = golden.qrange(bits)
    wlo, whi = golden.qrange(wbits)
    frame = random_frame(rng, k, args["max_width"], args["max_height"], pads=(0, 0, 0, 0))
    x = np.full((frame["height"], frame["width"]), xlo)
    got = await _convolve(dut, model, frame, x, np.full((k, k), wlo), rng, 0.8, 0.8)
    assert got.max() == k * k * xlo * wlo
    # ... and the most negative sum.
    got = await _convolve(dut, model, frame, x, np.full((k, k), whi), rng, 0.8, 0.8)
    assert got.min() == k * k * xlo * whi

    # Full rate: one output per cycle once the lines are filled.
    frame = random_frame(rng, k, args["max_width"], args["max_height"], stride=1,
                         pads=(k // 2,) * 4)
    x = random_pixels(rng, (frame["height"], frame["width"]), bits)
    w = random_pixels(rng, (k, k), wbits)
    n_in, n_out = len(log.cycles["i"]), len(log.cycles["o"])
    got = await _convolve(dut, model, frame, x, w, rng, 1.0, 1.0)
    first_in = log.cycles["i"][n_in]
    first_out, last_out = log.cycles["o"][n_out], log.cycles["o"][-1]
    latency = model.windows.latency + model.convolver.latency
    bound = throughput_bound(frame, k, latency)
    dut._log.info(f"{frame}: {got.size} outputs, first pixel to last output "
                  f"{last_out - first_in + 1} cycles (bound {bound})")
    assert last_out - first_in + 1 <= bound
    assert is_same_stride1(frame, k) and last_out - first_out + 1 == got.size, \
        f"{got.size} outputs took {last_out - first_out + 1} cycles"


CONV_BUILDS = [
    # k, data_width, weight_width, max_width, max_height
    (1, 8, 8, 7, 6),
    (3, 8, 6, 10, 8),
    (5, 5, 8, 11, 9),
]


@pytest.mark.rtl
@pytest.mark.parametrize("k, data_width, weight_width, max_width, max_height", CONV_BUILDS,
                         ids=[f"k{b[0]}-d{b[1]}-w{b[2]}" for b in CONV_BUILDS])
def test_convolver(k, data_width, weight_width, max_width, max_height):
    dut = FrameConvolver(k, data_width, weight_width, max_width, max_height)
    run_cocotb(dut, test_module=__name__, testcase="convolve_random",
               build_name=f"convolver-k{k}-d{data_width}-w{weight_width}",
               test_args={"seed": 200 + k, "k": k, "data_width": data_width,
                          "weight_width": weight_width, "max_width": max_width,
                          "max_height": max_height, "frames": 6})


def test_geometry():
    conv = Convolver(3, 8, 8)
    assert (conv.out_width, conv.latency) == (8 + 8 + 4, 5)
    assert conv.window_layout.size == 9 * 8 and conv.kernel_layout.size == 9 * 8
    conv = Convolver(1, 5, 3)
    assert (conv.out_width, conv.latency) == (8, 1)
    conv = Convolver(7, 4, 4)
    assert (conv.out_width, conv.latency) == (4 + 4 + 6, 7)
    # The largest dot product fits: (-2**7)**2 * 49 < 2**(20 - 1).
    assert (1 << 14) * 49 < 1 << (Convolver(7, 8, 8).out_width - 1)


def test_parameter_errors():
    with pytest.raises(TypeError, match=r"^Convolver kernel size k must be an integer, not '3'$"):
        Convolver("3", 8, 8)
    with pytest.raises(ValueError, match=r"^Convolver kernel size k must be at least 1, not 0$"):
        Convolver(0, 8, 8)
    with pytest.raises(ValueError, match=r"^Convolver data_width must be at least 2, not 1$"):
        Convolver(3, 1, 8)
    with pytest.raises(TypeError, match=r"^Convolver weight_width must be an integer, not None$"):
        Convolver(3, 8, None)


def test_kernel_switch_between_windows():
    """A kernel loaded while windows stream applies from the next window on, with no drain."""
    from amaranth.sim import Simulator

    conv = Convolver(3, 6, 5)
    rng = random.Random(9)
    windows = [random_pixels(rng, (3, 3), 6) for _ in range(10)]
    kernels = [random_pixels(rng, (3, 3), 5) for _ in range(2)]
    switch = 4  # the window accepted in the kernel's load cycle still uses the old kernel
    want = [int((win * kernels[0 if n <= switch else 1]).sum()) for n, win in enumerate(windows)]
    got = []

    async def bench(ctx):
        ctx.set(conv.o.ready, 1)
        ctx.set(conv.w.payload, kernels[0].tolist())
        ctx.set(conv.w.valid, 1)
        await ctx.tick()
        for n in range(len(windows) + conv.latency + 1):
            ctx.set(conv.i.valid, n < len(windows))
            if n < len(windows):
                ctx.set(conv.i.payload, windows[n].tolist())
                assert ctx.get(conv.i.ready)
            ctx.set(conv.w.valid, n == switch)
            ctx.set(conv.w.payload, kernels[1].tolist())
            if ctx.get(conv.o.valid):
                got.append(ctx.get(conv.o.payload))
            await ctx.tick()

    sim = Simulator(conv)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
