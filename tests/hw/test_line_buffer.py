# amaranth: UnusedElaboratable=no
"""Line buffer and KxK window generator under Verilator, against im2col of the zero-padded frame."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.blocks.line_buffer import LineBuffer, WindowGenerator
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

# Test bench pieces, shared with the convolver test ----------------------------------------

def _bit(handle):
    value = handle.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class TransferLog:
    """Records the cycle of every transfer on the named streams of ``dut``."""

    def __init__(self, dut, names):
        self.dut = dut
        self.cycle = 0
        self.cycles = {name: [] for name in names}
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        handles = {name: (getattr(self.dut, f"{name}__valid"), getattr(self.dut, f"{name}__ready"))
                   for name in self.cycles}
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            self.cycle += 1
            for name, (valid, ready) in handles.items():
                if _bit(valid) and _bit(ready):
                    self.cycles[name].append(self.cycle)


async def start_bench(dut, inputs):
    """Start the clock, hold the inputs idle and reset the design."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in inputs:
        getattr(dut, f"{name}__valid").value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


def random_frame(rng, k, max_width, max_height, stride=None, pads=None):
    """Random geometry: pads up to k - 1 each, sizes that leave at least one window."""
    stride = stride or rng.choice((1, 2))
    pads = pads or tuple(rng.randint(0, k - 1) for _ in range(4))
    pt, pl, pb, pr = pads
    height = rng.randint(max(1, k - pt - pb), max_height)
    width = rng.randint(max(1, k - pl - pr), max_width)
    return {"width": width, "height": height, "stride": stride, "pads": pads}


def random_pixels(rng, shape, bits):
    """Uniform values with the extremes of the range over-represented."""
    lo, hi = golden.qrange(bits)
    values = np.array([rng.randint(lo, hi) for _ in range(int(np.prod(shape)))], dtype=np.int64)
    extremes = np.array([rng.random() < 0.15 for _ in range(values.size)])
    values[extremes] = [rng.choice((lo, hi)) for _ in range(int(extremes.sum()))]
    return values.reshape(shape)


def frame_words(x, bits):
    """Pixel words of a (lanes, H, W) frame in raster order."""
    _, height, width = x.shape
    return [pack_lanes(x[:, r, c], bits) for r in range(height) for c in range(width)]


def cfg_word(layout, frame):
    pt, pl, pb, pr = frame["pads"]
    return pack_struct(layout, {"width": frame["width"], "height": frame["height"],
                                "stride": frame["stride"], "pad_top": pt, "pad_left": pl,
                                "pad_bottom": pb, "pad_right": pr})


def out_size(frame, k):
    pt, pl, pb, pr = frame["pads"]
    s = frame["stride"]
    return ((frame["height"] + pt + pb - k) // s + 1, (frame["width"] + pl + pr - k) // s + 1)


def extra_rows(frame, k):
    """Bottom padding rows the generator scans (the last window row's reach)."""
    pt, _, _, _ = frame["pads"]
    oh, _ = out_size(frame, k)
    return max(0, (oh - 1) * frame["stride"] + k - pt - frame["height"])


def throughput_bound(frame, k, latency):
    """Cycles from the first pixel to the last window at one pixel or window per cycle.

    The frame's pixels, the scanned bottom padding rows (one cycle per column, no
    input), the right-padding flush after the last output row, and the latency.
    """
    pr = frame["pads"][3]
    width = frame["width"]
    return (frame["height"] + extra_rows(frame, k)) * width + pr + latency + 1


def is_same_stride1(frame, k):
    pt, pl, pb, pr = frame["pads"]
    return frame["stride"] == 1 and pl + pr == k - 1 and pt + pb == k - 1 \
        and frame["width"] >= pr


# The window generator's test --------------------------------------------------------------

def im2col(x, k, stride, pads):
    """Windows of the zero-padded (lanes, H, W) frame, raster order, shape (n, lanes, k, k)."""
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[1] - k) // stride + 1
    ow = (xp.shape[2] - k) // stride + 1
    return np.array([xp[:, r * stride:r * stride + k, c * stride:c * stride + k]
                     for r in range(oh) for c in range(ow)])


async def run_frames(dut, wg, frames, frames_x, rng, p_in, p_out):
    """Configure and stream ``frames``; returns the received windows, (n, lanes, k, k)."""
    k, lanes, bits = wg.k, wg.lanes, wg._data_width
    idle = random_pattern(rng.getrandbits(32), p_in) if p_in < 1 else None
    backpressure = random_pattern(rng.getrandbits(32), p_out) if p_out < 1 else None
    cfg = StreamSource(dut, "cfg", dut.clk,
                       idle=random_pattern(rng.getrandbits(32), 0.5) if p_in < 1 else None)
    src = StreamSource(dut, "i", dut.clk, idle=idle)
    sink = StreamSink(dut, "o", dut.clk, backpressure=backpressure)
    total = sum(np.prod(out_size(f, k)) for f in frames)
    cfg.start([cfg_word(wg.cfg_layout, f) for f in frames])
    sending = src.start([w for x in frames_x for w in frame_words(x, bits)])
    words = await sink.recv(int(total))
    await sending  # trailing rows no window needs may still be streaming in
    return np.array([unpack_lanes(w, bits, lanes * k * k) for w in words]).reshape(-1, lanes, k, k)


def check_windows(got, frames, frames_x, k, rng):
    start = 0
    for n, (frame, x) in enumerate(zip(frames, frames_x)):
        want = im2col(x, k, frame["stride"], frame["pads"])
        mine = got[start:start + len(want)]
        start += len(want)
        for idx in range(len(want)):
            assert np.array_equal(mine[idx], want[idx]), (
                f"frame {n} {frame}: window {idx} is\n{mine[idx]}\nnot\n{want[idx]}")
        # The same windows against the golden (depthwise) convolution.
        lanes = x.shape[0]
        w = np.array([[rng.randint(-8, 8) for _ in range(k * k)] for _ in range(lanes)]
                     ).reshape(lanes, 1, k, k)
        acc = golden.conv2d(x[None], w, stride=frame["stride"], pads=frame["pads"],
                            groups=lanes)[0]
        dots = np.einsum("nlij,lij->ln", mine, w[:, 0])
        assert np.array_equal(dots, acc.reshape(lanes, -1)), f"frame {n} {frame}: conv2d differs"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def windows_random(dut):
    """Random frames, idle cycles and back-pressure; then full-rate frames, timed."""
    args = test_args()
    rng = random.Random(args["seed"])
    wg = WindowGenerator(args["k"], args["data_width"], lanes=args["lanes"],
                         max_width=args["max_width"], max_height=args["max_height"])
    k, lanes = wg.k, wg.lanes
    await start_bench(dut, ("cfg", "i"))
    log = TransferLog(dut, ("i", "o"))

    frames = [random_frame(rng, k, args["max_width"], args["max_height"])
              for _ in range(args["frames"])]
    # Corners: a one-pixel-wide frame, a one-row frame, stride 2 with odd sizes.
    frames.append(random_frame(rng, k, 1, args["max_height"], stride=1,
                               pads=(k // 2, k - 1, k // 2, k - 1)))
    frames.append(random_frame(rng, k, args["max_width"], 1, stride=2,
                               pads=(k - 1, 0, k - 1, k // 2)))
    frames_x = [random_pixels(rng, (lanes, f["height"], f["width"]), args["data_width"])
                for f in frames]
    got = await run_frames(dut, wg, frames, frames_x, rng, 0.7, 0.6)
    check_windows(got, frames, frames_x, k, rng)

    # Full rate: no idle input, no back-pressure; one frame at a time, timed.
    timed = [random_frame(rng, k, args["max_width"], args["max_height"], stride=1,
                          pads=(k // 2,) * 4),
             random_frame(rng, k, args["max_width"], args["max_height"], stride=2,
                          pads=(k // 2, k // 2, k - 1 - k // 2, k - 1 - k // 2)),
             random_frame(rng, k, args["max_width"], args["max_height"], stride=1,
                          pads=(0, 0, 0, 0))]
    for frame in timed:
        x = random_pixels(rng, (lanes, frame["height"], frame["width"]), args["data_width"])
        n_in, n_out = len(log.cycles["i"]), len(log.cycles["o"])
        got = await run_frames(dut, wg, [frame], [x], rng, 1.0, 1.0)
        check_windows(got, [frame], [x], k, rng)
        first_in = log.cycles["i"][n_in]
        last_in = log.cycles["i"][-1]
        first_out, last_out = log.cycles["o"][n_out], log.cycles["o"][-1]
        span = last_out - first_in + 1
        bound = throughput_bound(frame, k, wg.latency)
        dut._log.info(f"{frame}: {len(got)} windows, first pixel to last window {span} cycles "
                      f"(bound {bound})")
        assert span <= bound, f"{frame}: {span} cycles from first pixel to last window > {bound}"
        assert last_in - first_in + 1 == frame["height"] * frame["width"], \
            f"{frame}: input stalled with no back-pressure"
        if is_same_stride1(frame, k):
            # One window every cycle, from the first to the last.
            assert last_out - first_out + 1 == len(got), \
                f"{frame}: {len(got)} windows took {last_out - first_out + 1} cycles"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def columns_random(dut):
    """The bare line buffer: k-tall columns of the frame, zeros above it and below it."""
    args = test_args()
    rng = random.Random(args["seed"])
    k, lanes, bits = args["k"], args["lanes"], args["data_width"]
    lb = LineBuffer(k, bits, lanes=lanes, max_width=args["max_width"],
                    max_height=args["max_height"])
    await start_bench(dut, ("cfg", "i"))
    frames, frames_x, expected = [], [], []
    for i in range(args["frames"]):
        # one-pixel-wide frames (each column read as it is written) between wide ones
        width = 1 if i in args.get("narrow", ()) else rng.randint(1, args["max_width"])
        height = rng.randint(1, args["max_height"])
        extra = rng.randint(0, k - 1)
        x = random_pixels(rng, (lanes, height, width), bits)
        frames.append(pack_struct(lb.cfg_layout, {"width": width, "height": height,
                                                  "extra_rows": extra}))
        frames_x.append(x)
        xp = np.pad(x, ((0, 0), (k - 1, extra), (0, 0)))
        for r in range(height + extra):
            for c in range(width):
                flags = (c == 0) | (c == width - 1) << 1 | \
                    (r == height + extra - 1 and c == width - 1) << 2
                expected.append((xp[:, r:r + k, c].T.copy(), flags))
    cfg = StreamSource(dut, "cfg", dut.clk)
    src = StreamSource(dut, "i", dut.clk, idle=random_pattern(rng.getrandbits(32), 0.7))
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.getrandbits(32), 0.6))
    cfg.start(frames)
    src.start([w for x in frames_x for w in frame_words(x, bits)])
    words = await sink.recv(len(expected))
    column_bits = k * lanes * bits
    for idx, (word, (column, flags)) in enumerate(zip(words, expected)):
        got = np.array(unpack_lanes(word, bits, k * lanes)).reshape(k, lanes)
        assert np.array_equal(got, column), f"column {idx} is {got.tolist()}, not {column.tolist()}"
        assert word >> column_bits == flags, f"column {idx}: flags {word >> column_bits:03b}"


# pytest entry points ------------------------------------------------------------------------

WINDOW_BUILDS = [
    # k, lanes, data_width, max_width, max_height
    (1, 3, 8, 9, 7),
    (3, 2, 8, 11, 9),
    (5, 1, 5, 12, 10),
    (7, 2, 4, 13, 11),
]


@pytest.mark.rtl
@pytest.mark.parametrize("k, lanes, data_width, max_width, max_height", WINDOW_BUILDS,
                         ids=[f"k{b[0]}-l{b[1]}-w{b[2]}" for b in WINDOW_BUILDS])
def test_window_generator(k, lanes, data_width, max_width, max_height):
    dut = WindowGenerator(k, data_width, lanes=lanes, max_width=max_width,
                          max_height=max_height)
    run_cocotb(dut, test_module=__name__, testcase="windows_random",
               build_name=f"window-gen-k{k}-l{lanes}-w{data_width}",
               test_args={"seed": 100 + k, "k": k, "lanes": lanes, "data_width": data_width,
                          "max_width": max_width, "max_height": max_height, "frames": 6})


@pytest.mark.rtl
@pytest.mark.parametrize("k", [3, 5])
def test_line_buffer(k):
    lanes, bits = 2, 6
    dut = LineBuffer(k, bits, lanes=lanes, max_width=7, max_height=6)
    run_cocotb(dut, test_module=__name__, testcase="columns_random",
               build_name=f"line-buffer-k{k}-l{lanes}-w{bits}",
               test_args={"seed": 7 + k, "k": k, "lanes": lanes, "data_width": bits,
                          "max_width": 7, "max_height": 6, "frames": 8,
                          "narrow": [1, 2, 5]})


# Parameter checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LineBuffer, WindowGenerator])
def test_parameter_errors(cls):
    with pytest.raises(TypeError, match=r"^Kernel size k must be an integer, not '3'$"):
        cls("3", 8, max_width=8, max_height=8)
    with pytest.raises(ValueError, match=r"^Kernel size k must be one of 1, 3, 5, 7, not 4$"):
        cls(4, 8, max_width=8, max_height=8)
    with pytest.raises(ValueError, match=r"^Pixel data_width must be at least 2, not 1$"):
        cls(3, 1, max_width=8, max_height=8)
    with pytest.raises(TypeError, match=r"^Pixel data_width must be an integer, not 8\.0$"):
        cls(3, 8.0, max_width=8, max_height=8)
    with pytest.raises(ValueError, match=r"^Lane count lanes must be at least 1, not 0$"):
        cls(3, 8, lanes=0, max_width=8, max_height=8)
    with pytest.raises(ValueError, match=r"^Frame max_width must be at least 1, not 0$"):
        cls(3, 8, max_width=0, max_height=8)
    with pytest.raises(TypeError, match=r"^Frame max_height must be an integer, not None$"):
        cls(3, 8, max_width=8, max_height=None)


def test_window_layouts():
    wg = WindowGenerator(5, 6, lanes=3, max_width=20, max_height=10)
    assert wg.window_layout.size == 3 * 5 * 5 * 6
    assert wg.pixel_layout.size == 3 * 6
    assert wg.latency == 2
    layout = wg.cfg_layout
    assert layout["width"].shape.width == 5 and layout["height"].shape.width == 4
    assert layout["pad_left"].shape.width == 3
    assert WindowGenerator(1, 8, max_width=1, max_height=1).cfg_layout["pad_top"].shape.width == 1
