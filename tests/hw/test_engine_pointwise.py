# amaranth: UnusedElaboratable=no
"""Pointwise / fully connected engine: cocotb under Verilator against ``sim.golden``."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from hw.arch import ArchConfig
from hw.engines.pointwise import PointwiseEngine
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
    DoneMonitor,
    engine_reset,
    param_words,
    random_requant,
    random_weights,
    stream_sources,
    weight_bits_of,
    weight_zero,
)

ARCH = {
    "max_width": 6,
    "max_height": 5,
    "mult_bits": 12,
    "shift_bits": 5,
    "acc_bits": 24,
    "bias_bits": 16,
}

# input streams, in the order their idle patterns are drawn
STREAMS = ("params", "pixels", "weights")


def _engine(args):
    return PointwiseEngine(ArchConfig(**args["arch"]), config=args.get("config"))


def _layer(rng, eng, fc, kind=None, pair=False):
    """A random layer; ``pair``: two output pixels over three input tiles (each beat's
    accumulator was written two beats before: the buffer's read-after-write hazard)."""
    arch, pi, po = eng.arch, eng.pi, eng.po
    lo_q, hi_q = golden.qrange(arch.act_bits)
    cin = 3 * pi if pair else rng.randint(1, 3 * pi + 1)
    cout = rng.randint(1, 2 * po + 1)
    if pair:
        h, w = 1, 2
    elif fc:
        h = w = 1
    else:
        h, w = rng.randint(1, arch.max_height), rng.randint(1, arch.max_width)
    x = np.array([rng.randint(lo_q, hi_q) for _ in range(cin * h * w)]).reshape(1, cin, h, w)
    wv, wc = random_weights(rng, arch, (cout, cin))
    bias = np.array([rng.randint(-(1 << 10), 1 << 10) for _ in range(cout)])
    acc = golden.conv2d(x, wv[:, :, None, None], bias)
    kind = kind or rng.choice(["spread", "m1", "saturate"])
    ms, ss, lo, hi = random_requant(rng, arch, acc, cout, kind)
    want = golden.requantize(acc, ms, ss, lo, hi)
    if fc:
        fc_want = golden.requantize(
            golden.fully_connected(x.reshape(1, cin), wv, bias), ms, ss, lo, hi
        )
        assert (fc_want.reshape(want.shape) == want).all()
    return {
        "x": x,
        "wc": wc,
        "bias": bias,
        "ms": ms,
        "ss": ss,
        "lo": lo,
        "hi": hi,
        "want": want,
        "cin": cin,
        "cout": cout,
        "h": h,
        "w": w,
    }


def _job_streams(eng, layer, group):
    arch, pi, po = eng.arch, eng.pi, eng.po
    tiles = -(-layer["cin"] // pi)
    pixels, weights = [], []
    x = layer["x"][0]
    wbits = weight_bits_of(arch)
    for t in range(tiles):
        chans = range(t * pi, t * pi + pi)
        for yy in range(layer["h"]):
            for xx in range(layer["w"]):
                pixels.append(
                    pack_lanes(
                        [x[c, yy, xx] if c < layer["cin"] else 0 for c in chans], arch.act_bits
                    )
                )
        lanes = []
        for j in range(po):
            co = group * po + j
            for c in chans:
                ok = co < layer["cout"] and c < layer["cin"]
                lanes.append(int(layer["wc"][co, c]) if ok else weight_zero(arch))
        weights.append(pack_lanes(lanes, wbits))
    cmd = {
        "pixels": layer["h"] * layer["w"],
        "cin_tiles": tiles,
        "lo": layer["lo"],
        "hi": layer["hi"],
    }
    params = param_words(eng, layer["bias"], layer["ms"], layer["ss"], group, po)
    return cmd, params, pixels, weights


async def run_layer(dut, eng, layer, srcs, sink, done, check=True):
    """Run every output-channel group of ``layer``; returns the outputs (C, H, W)."""
    arch, po = eng.arch, eng.po
    groups = -(-layer["cout"] // po)
    out = np.zeros((groups * po, layer["h"], layer["w"]), dtype=np.int64)
    for g in range(groups):
        cmd, params, pixels, weights = _job_streams(eng, layer, g)
        before = done.count
        tasks = []
        if "cmd" in srcs:
            tasks.append(srcs["cmd"].start([pack_struct(eng.cmd_layout, cmd)]))
        tasks += [
            srcs["params"].start([params]),
            srcs["pixels"].start(pixels),
            srcs["weights"].start(weights),
        ]
        words = await sink.recv(layer["h"] * layer["w"])
        for t in tasks:
            await t
        for i, word in enumerate(words):
            out[g * po : (g + 1) * po, i // layer["w"], i % layer["w"]] = unpack_lanes(
                word, arch.act_bits, po
            )
        for _ in range(20):
            if done.count > before:
                break
            await RisingEdge(dut.clk)
        assert done.count == before + 1, f"group {g}: no done pulse"
    got = out[: layer["cout"]]
    if check:
        want = layer["want"][0]
        assert (got == want).all(), (
            f"cin={layer['cin']} cout={layer['cout']} {layer['h']}x{layer['w']}: "
            f"mismatch at {np.argwhere(got != want)[:5].tolist()}"
        )
    return got


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def pointwise_random(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 0.7)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    rails = set()
    for n in range(args["layers"]):
        layer = _layer(rng, eng, fc=n % 3 == 2, kind=("spread", "m1", "saturate")[n % 4 % 3],
                       pair=n == 1)
        await run_layer(dut, eng, layer, srcs, sink, done)
        want = layer["want"]
        rails |= {"lo"} if (want == layer["lo"]).any() else set()
        rails |= {"hi"} if (want == layer["hi"]).any() else set()
    assert rails == {"lo", "hi"}, f"rails never hit: { ({'lo', 'hi'} - rails) }"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def pointwise_throughput(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"] + 7)
    await engine_reset(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 1.0)
    sink = StreamSink(dut, "o", dut.clk)
    for fc in (False, True):
        layer = _layer(rng, eng, fc)
        cmd, params, pixels, weights = _job_streams(eng, layer, 0)
        if not fc:
            cmd["pixels"] = eng.depth  # a full tile, timed as one job
            pixels = pixels[:1] * (eng.depth * cmd["cin_tiles"])
        done = DoneMonitor(dut)
        srcs["cmd"].start([pack_struct(eng.cmd_layout, cmd)])
        srcs["params"].start([params])
        srcs["pixels"].start(pixels)
        srcs["weights"].start(weights)
        await sink.recv(cmd["pixels"])
        while done.count == 0:
            await RisingEdge(dut.clk)
        beats = cmd["pixels"] * cmd["cin_tiles"]
        assert done.cycles[0] <= beats + eng.latency + 4, (
            f"{beats} beats ({eng.pi}x{eng.po} MACs each) took {done.cycles[0]} cycles"
        )


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def pointwise_fixed(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, False, 0.6)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.5))
    cfg = args["config"]
    h, w = 1, cfg["pixels"]
    for _ in range(2):
        lo_q, hi_q = golden.qrange(eng.arch.act_bits)
        cin = cfg["cin_tiles"] * eng.pi
        cout = eng.po
        x = np.array([rng.randint(lo_q, hi_q) for _ in range(cin * w)]).reshape(1, cin, h, w)
        wv, wc = random_weights(rng, eng.arch, (cout, cin))
        bias = np.array([rng.randint(-100, 100) for _ in range(cout)])
        acc = golden.conv2d(x, wv[:, :, None, None], bias)
        ms, ss, _, _ = random_requant(rng, eng.arch, acc, cout, "spread")
        want = golden.requantize(acc, ms, ss, cfg["lo"], cfg["hi"])
        layer = {
            "x": x,
            "wc": wc,
            "bias": bias,
            "ms": ms,
            "ss": ss,
            "lo": cfg["lo"],
            "hi": cfg["hi"],
            "want": want,
            "cin": cin,
            "cout": cout,
            "h": h,
            "w": w,
        }
        await run_layer(dut, eng, layer, srcs, sink, done)


@pytest.mark.rtl
@pytest.mark.parametrize("pi,po,scheme,seed", [(3, 2, "uniform", 1), (2, 3, "apot", 2)])
def test_pointwise_rtl(pi, po, scheme, seed):
    arch = dict(ARCH, pw_pi=pi, pw_po=po, weight_scheme=scheme)
    args = {"arch": arch, "seed": seed, "layers": 6}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name=f"pw-{pi}x{po}-{scheme}",
        test_args=args,
        testcase="pointwise_random,pointwise_throughput",
    )


@pytest.mark.rtl
def test_pointwise_fixed_config_rtl():
    arch = dict(ARCH, pw_pi=2, pw_po=2, weight_scheme="pot")
    args = {"arch": arch, "seed": 5, "config": {"pixels": 7, "cin_tiles": 3, "lo": -50, "hi": 60}}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name="pw-fixed",
        test_args=args,
        testcase="pointwise_fixed",
    )


def test_pointwise_ports():
    eng = PointwiseEngine(ArchConfig(pw_pi=3, pw_po=5))
    assert eng.pixels.payload.shape().length == 3
    assert eng.weights.payload.shape().length == 15
    assert eng.o.payload.shape().length == 5
    assert eng.latency == 2 + 2 + 4 + 5 + 2  # ..., requantizer (5), output queue


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"arch": {"pw_pi": 2}}, TypeError, r"arch must be an ArchConfig, not \{'pw_pi': 2\}"),
        ({"pw_pi": 0}, ValueError, r"pw_pi must be between 1 and 256, not 0"),
        ({"weight_bits": 1}, ValueError, r"weight_bits must be between 2 and 16, not 1"),
        (
            {"config": {"pixels": 0, "cin_tiles": 1, "lo": 0, "hi": 1}},
            ValueError,
            r"config field pixels must be between 1 and 4096, not 0",
        ),
        (
            {"config": {"pixels": 1, "cin_tiles": 0, "lo": 0, "hi": 1}},
            ValueError,
            r"config field cin_tiles must be between 1 and 4095, not 0",
        ),
        (
            {"config": {"pixels": 1, "cin_tiles": 1, "lo": 0, "hi": 1, "k": 1}},
            ValueError,
            r"config has unknown field\(s\) k",
        ),
    ],
)
def test_pointwise_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PointwiseEngine(**kwargs)
