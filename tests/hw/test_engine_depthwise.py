# amaranth: UnusedElaboratable=no
"""Depthwise engine: cocotb under Verilator against ``sim.golden.conv2d(groups=C)``."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from hw.arch import ArchConfig
from hw.engines.depthwise import DepthwiseEngine
from sim import golden
from sim.cocotb_streams import (
    StreamSink,
    pack_lanes,
    pack_struct,
    random_pattern,
    unpack_lanes,
)
from sim.rtl import run_cocotb, test_args
from tests.hw.bench import (
    KINDS,
    SMALL_ENGINE_ARCH,
    DoneMonitor,
    engine_reset,
    param_words,
    random_geometry,
    random_requant,
    random_weights,
    stream_sources,
    weight_bits_of,
    weight_zero,
)

ARCH = SMALL_ENGINE_ARCH

# input streams, in the order their idle patterns are drawn
STREAMS = ("params", "weights", "pixels")


def _engine(args):
    return DepthwiseEngine(ArchConfig(**args["arch"]), config=args.get("config"))


def make_layer(rng, eng, geom, channels, kind=None):
    arch = eng.arch
    lo_q, hi_q = golden.qrange(arch.act_bits)
    k, h, w = geom["kernel"], geom["height"], geom["width"]
    x = np.array([rng.randint(lo_q, hi_q) for _ in range(channels * h * w)])
    x = x.reshape(1, channels, h, w)
    wv, wc = random_weights(rng, arch, (channels, 1, k, k))
    bias = np.array([rng.randint(-(1 << 10), 1 << 10) for _ in range(channels)])
    pads = (geom["pad_top"], geom["pad_left"], geom["pad_bottom"], geom["pad_right"])
    acc = golden.conv2d(x, wv, bias, stride=(geom["stride"],) * 2, pads=pads, groups=channels)
    ms, ss, lo, hi = random_requant(
        rng, arch, acc, channels, kind or rng.choice(["spread", "m1", "saturate"])
    )
    return {
        "x": x,
        "wc": wc,
        "bias": bias,
        "ms": ms,
        "ss": ss,
        "lo": lo,
        "hi": hi,
        "channels": channels,
        "acc": acc,
        "want": golden.requantize(acc, ms, ss, lo, hi),
        "cmd": dict(geom, lo=lo, hi=hi),
    }


async def run_dw_layer(dut, eng, layer, srcs, sink, done):
    arch, lanes = eng.arch, eng.channels
    cmd = layer["cmd"]
    want = layer["want"][0]
    _, oh, ow = want.shape
    zero = weight_zero(arch)
    groups = -(-layer["channels"] // lanes)
    got = np.zeros((groups * lanes, oh, ow), dtype=np.int64)
    x = layer["x"][0]
    for g in range(groups):
        chans = [g * lanes + c for c in range(lanes)]
        ok = [c < layer["channels"] for c in chans]
        weights = [
            pack_lanes(
                [int(layer["wc"][c, 0, ky, kx]) if o else zero for c, o in zip(chans, ok)],
                weight_bits_of(arch),
            )
            for ky in range(cmd["kernel"])
            for kx in range(cmd["kernel"])
        ]
        pixels = [
            pack_lanes([x[c, yy, xx] if o else 0 for c, o in zip(chans, ok)], arch.act_bits)
            for yy in range(cmd["height"])
            for xx in range(cmd["width"])
        ]
        params = param_words(eng, layer["bias"], layer["ms"], layer["ss"], g, lanes)
        before = done.count
        tasks = []
        if "cmd" in srcs:
            tasks.append(srcs["cmd"].start([pack_struct(eng.cmd_layout, cmd)]))
        tasks += [
            srcs["params"].start([params]),
            srcs["weights"].start(weights),
            srcs["pixels"].start(pixels),
        ]
        words = await sink.recv(oh * ow)
        for t in tasks:
            await t
        for n, word in enumerate(words):
            got[g * lanes : (g + 1) * lanes, n // ow, n % ow] = unpack_lanes(
                word, arch.act_bits, lanes
            )
        for _ in range(20):
            if done.count > before:
                break
            await RisingEdge(dut.clk)
        assert done.count == before + 1, f"group {g}: no done pulse"
    got = got[: layer["channels"]]
    assert (got == want).all(), (
        f"{cmd} channels={layer['channels']}: mismatch at {np.argwhere(got != want)[:4].tolist()}"
    )


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def depthwise_random(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 0.7)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    rails, kernels, strides = set(), set(), set()
    for n in range(args["layers"]):
        geom = random_geometry(rng, eng.arch, eng.k_max, n)
        layer = make_layer(rng, eng, geom, rng.randint(1, 2 * eng.channels + 1), KINDS[n % 3])
        await run_dw_layer(dut, eng, layer, srcs, sink, done)
        rails |= {"lo"} if (layer["want"] == layer["lo"]).any() else set()
        rails |= {"hi"} if (layer["want"] == layer["hi"]).any() else set()
        kernels.add(geom["kernel"])
        strides.add(geom["stride"])
    assert rails == {"lo", "hi"}, f"rails never hit: { ({'lo', 'hi'} - rails) }"
    assert strides == {1, 2}, strides
    assert len(kernels) == len([k for k in (1, 3, 5, 7) if k <= eng.k_max]), kernels


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def depthwise_throughput(dut):
    """No back-pressure: one window (C x K x K MACs) per cycle."""
    args = test_args()
    eng = _engine(args)
    arch = eng.arch
    rng = random.Random(args["seed"] + 5)
    await engine_reset(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 1.0)
    sink = StreamSink(dut, "o", dut.clk)
    k = eng.k_max
    p = k // 2
    geom = {
        "kernel": k,
        "stride": 1,
        "pad_top": p,
        "pad_left": p,
        "pad_bottom": p,
        "pad_right": p,
        "height": arch.max_height - 2 * p,
        "width": arch.max_width - 2 * p,
    }
    layer = make_layer(rng, eng, geom, eng.channels)
    done = DoneMonitor(dut)
    await run_dw_layer(dut, eng, layer, srcs, sink, done)
    h, w = geom["height"], geom["width"]
    pixels = h * w
    bound = pixels + p * w + k * k + eng.latency + 8
    cycles = done.cycles[0]
    dut._log.info(
        f"depthwise {eng.channels}x{k}x{k}: {pixels} pixels in {cycles} cycles (bound {bound})"
    )
    assert cycles <= bound, f"{cycles} cycles > {bound}"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def depthwise_fixed(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, False, 0.7)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    cfg = args["config"]
    geom = {key: value for key, value in cfg.items() if key not in ("lo", "hi")}
    for _ in range(3):
        layer = make_layer(rng, eng, geom, 2 * eng.channels, kind="spread")
        layer["cmd"] = dict(cfg)
        layer["want"] = golden.requantize(
            layer["acc"], layer["ms"], layer["ss"], cfg["lo"], cfg["hi"]
        )
        await run_dw_layer(dut, eng, layer, srcs, sink, done)


BUILDS = {
    "c3-k3": ({"dw_channels": 3, "conv_k_max": 3}, 1),
    "c2-k5-apot": ({"dw_channels": 2, "conv_k_max": 5, "weight_scheme": "apot", "max_width": 8}, 2),
}


@pytest.mark.rtl
@pytest.mark.parametrize("name", list(BUILDS))
def test_depthwise_rtl(name):
    overrides, seed = BUILDS[name]
    args = {"arch": dict(ARCH, **overrides), "seed": seed, "layers": 8}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name=f"dw-{name}",
        test_args=args,
        testcase="depthwise_random,depthwise_throughput",
    )


@pytest.mark.rtl
def test_depthwise_fixed_config_rtl():
    config = {
        "width": 5,
        "height": 4,
        "kernel": 3,
        "stride": 1,
        "pad_top": 1,
        "pad_left": 1,
        "pad_bottom": 1,
        "pad_right": 1,
        "lo": 0,
        "hi": 90,
    }
    args = {"arch": dict(ARCH, dw_channels=2, conv_k_max=3), "seed": 6, "config": config}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name="dw-fixed",
        test_args=args,
        testcase="depthwise_fixed",
    )


def test_depthwise_ports():
    eng = DepthwiseEngine(ArchConfig(dw_channels=5, conv_k_max=3))
    assert eng.weights.payload.shape().length == 5
    assert eng.o.payload.shape().length == 5
    assert eng.latency == 2 + 4 + 1 + 5 + 2  # ..., bias, requantizer (5), output queue


GOOD = {
    "width": 4,
    "height": 4,
    "kernel": 3,
    "stride": 1,
    "pad_top": 1,
    "pad_left": 1,
    "pad_bottom": 1,
    "pad_right": 1,
    "lo": -128,
    "hi": 127,
}


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"arch": "x"}, TypeError, r"arch must be an ArchConfig, not 'x'"),
        ({"dw_channels": 0}, ValueError, r"dw_channels must be between 1 and 256, not 0"),
        ({"conv_k_max": 6}, ValueError, r"conv_k_max must be one of \(1, 3, 5, 7\), not 6"),
        (
            {"conv_k_max": 3, "max_height": 2},
            ValueError,
            r"max_width and max_height must be at least conv_k_max=3, not 64x2",
        ),
        (
            {"config": dict(GOOD, kernel=4)},
            ValueError,
            r"config field kernel must be one of 1, 3, not 4",
        ),
        (
            {"config": dict(GOOD, pad_top=3)},
            ValueError,
            r"config field pad_top must be between 0 and 2, not 3",
        ),
        (
            {"config": dict(GOOD, stride=True)},
            TypeError,
            r"config field stride must be an integer, not True",
        ),
    ],
)
def test_depthwise_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DepthwiseEngine(**kwargs)
