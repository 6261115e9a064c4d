# amaranth: UnusedElaboratable=no
"""Convolution engine: cocotb under Verilator against ``sim.golden``."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from hw.arch import ArchConfig
from hw.engines.conv import ConvEngine
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
    return ConvEngine(
        ArchConfig(**args["arch"]), pool=args.get("pool", False), config=args.get("config")
    )


def make_layer(rng, eng, geom, cin, cout, kind=None, pool=None):
    arch = eng.arch
    lo_q, hi_q = golden.qrange(arch.act_bits)
    k = geom["kernel"]
    x = np.array([rng.randint(lo_q, hi_q) for _ in range(cin * geom["height"] * geom["width"])])
    x = x.reshape(1, cin, geom["height"], geom["width"])
    wv, wc = random_weights(rng, arch, (cout, cin, k, k))
    bias = np.array([rng.randint(-(1 << 10), 1 << 10) for _ in range(cout)])
    pads = (geom["pad_top"], geom["pad_left"], geom["pad_bottom"], geom["pad_right"])
    acc = golden.conv2d(x, wv, bias, stride=(geom["stride"],) * 2, pads=pads)
    kind = kind or rng.choice(["spread", "m1", "saturate"])
    ms, ss, lo, hi = random_requant(rng, arch, acc, cout, kind)
    want = golden.requantize(acc, ms, ss, lo, hi)
    cmd = dict(geom, cin_tiles=-(-cin // eng.pi), lo=lo, hi=hi)
    if pool is not None:
        cmd.update(pool)
        mode, pk, pst = pool["pool_mode"], pool["pool_kernel"], pool["pool_stride"]
        ppads = tuple(pool[f"pool_pad_{s}"] for s in ("top", "left", "bottom", "right"))
        if mode == 1:
            want = golden.max_pool2d(want, pk, pst, ppads)
        elif mode == 2:
            want = golden.avg_pool2d(
                want,
                pk,
                pst,
                pool["pool_mult"],
                pool["pool_shift"],
                pool["pool_lo"],
                pool["pool_hi"],
                ppads,
            )
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
        "cmd": cmd,
        "acc": acc,
    }


def job_streams(eng, layer, group):
    arch, pi, po = eng.arch, eng.pi, eng.po
    cmd = layer["cmd"]
    k = cmd["kernel"]
    zero = weight_zero(arch)
    x = layer["x"][0]
    pixels, weights = [], []
    for t in range(cmd["cin_tiles"]):
        chans = range(t * pi, t * pi + pi)
        for ky in range(k):
            for kx in range(k):
                lanes = []
                for j in range(po):
                    co = group * po + j
                    for c in chans:
                        ok = co < layer["cout"] and c < layer["cin"]
                        lanes.append(int(layer["wc"][co, c, ky, kx]) if ok else zero)
                weights.append(pack_lanes(lanes, weight_bits_of(arch)))
        for yy in range(cmd["height"]):
            for xx in range(cmd["width"]):
                pixels.append(
                    pack_lanes(
                        [x[c, yy, xx] if c < layer["cin"] else 0 for c in chans], arch.act_bits
                    )
                )
    params = param_words(eng, layer["bias"], layer["ms"], layer["ss"], group, po)
    return params, weights, pixels


async def run_conv_layer(dut, eng, layer, srcs, sink, done):
    arch, po = eng.arch, eng.po
    want = layer["want"][0]
    _, oh, ow = want.shape
    groups = -(-layer["cout"] // po)
    got = np.zeros((groups * po, oh, ow), dtype=np.int64)
    for g in range(groups):
        params, weights, pixels = job_streams(eng, layer, g)
        before = done.count
        tasks = []
        if "cmd" in srcs:
            tasks.append(srcs["cmd"].start([pack_struct(eng.cmd_layout, layer["cmd"])]))
        tasks += [
            srcs["params"].start([params]),
            srcs["weights"].start(weights),
            srcs["pixels"].start(pixels),
        ]
        dut._log.info(f"job {layer['cmd']} cin={layer['cin']} group {g}: {oh}x{ow} outputs")
        words = await sink.recv(oh * ow)
        for t in tasks:
            await t
        for n, word in enumerate(words):
            got[g * po : (g + 1) * po, n // ow, n % ow] = unpack_lanes(word, arch.act_bits, po)
        # A fused pool that drops the last rows sends its last beat before the job has
        # taken its last windows (up to two rows of bottom padding).
        for _ in range(2 * arch.max_width + 20):
            if done.count > before:
                break
            await RisingEdge(dut.clk)
        assert done.count == before + 1, f"group {g}: no done pulse"
    got = got[: layer["cout"]]
    cmd = {k: v for k, v in layer["cmd"].items()}
    assert (got == want).all(), (
        f"{cmd} cin={layer['cin']} cout={layer['cout']}: mismatch at "
        f"{np.argwhere(got != want)[:4].tolist()} got {got.ravel()[:8]} want {want.ravel()[:8]}"
    )


def random_pool(rng, arch):
    mode = rng.choice([0, 1, 2])
    pk = rng.choice([2, 3])
    return {
        "pool_mode": mode,
        "pool_kernel": pk,
        "pool_stride": rng.choice([1, 2]),
        "pool_pad_top": rng.randint(0, pk - 1) if mode == 2 else 0,
        "pool_pad_left": rng.randint(0, pk - 1) if mode == 2 else 0,
        "pool_pad_bottom": 0,
        "pool_pad_right": 0,
        "pool_mult": rng.randint(1, 300),
        "pool_shift": rng.randint(6, 10),
        "pool_lo": -100,
        "pool_hi": 100,
    }


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def conv_random(dut):
    args = test_args()
    eng = _engine(args)
    arch = eng.arch
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 0.7)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    rails, kernels, strides, tiles = set(), set(), set(), set()
    for n in range(args["layers"]):
        cin = rng.randint(1, 2 * eng.pi + 1)
        cout = rng.randint(1, 2 * eng.po)
        while True:
            geom = random_geometry(rng, arch, eng.k_max, n)
            pool = random_pool(rng, arch) if eng.pool else None
            if pool:
                oh = (
                    geom["height"] + geom["pad_top"] + geom["pad_bottom"] - geom["kernel"]
                ) // geom["stride"] + 1
                ow = (
                    geom["width"] + geom["pad_left"] + geom["pad_right"] - geom["kernel"]
                ) // geom["stride"] + 1
                if min(oh + pool["pool_pad_top"], ow + pool["pool_pad_left"]) < pool["pool_kernel"]:
                    continue
            break
        layer = make_layer(rng, eng, geom, cin, cout, kind=KINDS[n % 3], pool=pool)
        await run_conv_layer(dut, eng, layer, srcs, sink, done)
        want = golden.requantize(layer["acc"], layer["ms"], layer["ss"], layer["lo"], layer["hi"])
        rails |= {"lo"} if (want == layer["lo"]).any() else set()
        rails |= {"hi"} if (want == layer["hi"]).any() else set()
        kernels.add(geom["kernel"])
        strides.add(geom["stride"])
        tiles.add(layer["cmd"]["cin_tiles"])
    assert rails == {"lo", "hi"}, f"rails never hit: { ({'lo', 'hi'} - rails) }"
    assert strides == {1, 2} and max(tiles) > 1, (strides, tiles)
    assert len(kernels) == len([k for k in (1, 3, 5, 7) if k <= eng.k_max]), kernels


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def conv_throughput(dut):
    """No back-pressure: one window (Pi x Po x K x K MACs) per cycle."""
    args = test_args()
    eng = _engine(args)
    arch = eng.arch
    rng = random.Random(args["seed"] + 3)
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
    layer = make_layer(
        rng,
        eng,
        geom,
        3 * eng.pi,
        eng.po,
        pool={
            "pool_mode": 0,
            "pool_kernel": 2,
            "pool_stride": 1,
            "pool_pad_top": 0,
            "pool_pad_left": 0,
            "pool_pad_bottom": 0,
            "pool_pad_right": 0,
            "pool_mult": 1,
            "pool_shift": 0,
            "pool_lo": 0,
            "pool_hi": 0,
        }
        if eng.pool
        else None,
    )
    done = DoneMonitor(dut)
    await run_conv_layer(dut, eng, layer, srcs, sink, done)
    tiles = layer["cmd"]["cin_tiles"]
    h, w = geom["height"], geom["width"]
    pixels = h * w
    per_tile = pixels + p * w + k * k + 8
    bound = tiles * per_tile + eng.latency + 8
    cycles = done.cycles[0]
    dut._log.info(
        f"conv {eng.pi}x{eng.po}x{k}x{k}: {tiles} tiles of {pixels} pixels in "
        f"{cycles} cycles (bound {bound}); "
        f"{tiles * pixels * eng.pi * eng.po * k * k / cycles:.1f} MACs/cycle"
    )
    assert cycles <= bound, f"{cycles} cycles > {bound}"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def conv_pool_drops_tail(dut):
    """A 2x2 stride-2 max pool over an odd number of wide stride-2 output rows: its last
    beat leaves long before the last (dropped) row of windows is taken; the job must
    still end, and the next job must be exact."""
    args = test_args()
    eng = _engine(args)
    arch = eng.arch
    rng = random.Random(args["seed"] + 5)
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, True, 1.0)
    sink = StreamSink(dut, "o", dut.clk)
    pool = {"pool_mode": 1, "pool_kernel": 2, "pool_stride": 2, "pool_pad_top": 0,
            "pool_pad_left": 0, "pool_pad_bottom": 0, "pool_pad_right": 0, "pool_mult": 1,
            "pool_shift": 0, "pool_lo": -128, "pool_hi": 127}
    width = arch.max_width - 2
    # 11 rows, pads 1: (11 + 2 - 3) // 2 + 1 = 6 rows -> 5 rows of windows with pad 0 below
    for height, pad_bottom in ((11, 0), (9, 1)):
        geom = {"kernel": 3, "stride": 2, "pad_top": 1, "pad_left": 1,
                "pad_bottom": pad_bottom, "pad_right": 1, "height": height, "width": width}
        oh = (height + 1 + pad_bottom - 3) // 2 + 1
        assert oh % 2 == 1
        layer = make_layer(rng, eng, geom, 2 * eng.pi, eng.po, pool=pool)
        await run_conv_layer(dut, eng, layer, srcs, sink, done)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def conv_fixed(dut):
    args = test_args()
    eng = _engine(args)
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    srcs = stream_sources(dut, rng, STREAMS, False, 0.7)
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    cfg = args["config"]
    geom = {
        key: cfg[key]
        for key in (
            "kernel",
            "stride",
            "pad_top",
            "pad_left",
            "pad_bottom",
            "pad_right",
            "height",
            "width",
        )
    }
    for _ in range(2):
        layer = make_layer(rng, eng, geom, cfg["cin_tiles"] * eng.pi, 2 * eng.po, kind="spread")
        layer["cmd"] = dict(cfg)
        layer["want"] = golden.requantize(
            layer["acc"], layer["ms"], layer["ss"], cfg["lo"], cfg["hi"]
        )
        await run_conv_layer(dut, eng, layer, srcs, sink, done)


BUILDS = {
    "k3": ({"conv_pi": 2, "conv_po": 3, "conv_k_max": 3}, False, 1),
    "k5-pot": (
        {
            "conv_pi": 2,
            "conv_po": 2,
            "conv_k_max": 5,
            "weight_scheme": "pot",
            "max_width": 8,
            "max_height": 7,
        },
        False,
        2,
    ),
    # frames wide enough for a fused pool's dropped last row to outlast the pipeline
    "k3-pool": ({"conv_pi": 2, "conv_po": 2, "conv_k_max": 3, "max_width": 24,
                 "max_height": 12}, True, 3),
}


@pytest.mark.rtl
@pytest.mark.parametrize("name", list(BUILDS))
def test_conv_rtl(name):
    overrides, pool, seed = BUILDS[name]
    args = {"arch": dict(ARCH, **overrides), "pool": pool, "seed": seed, "layers": 8}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name=f"conv-{name}",
        test_args=args,
        testcase="conv_random,conv_throughput" + (",conv_pool_drops_tail" if pool else ""),
    )


@pytest.mark.rtl
def test_conv_fixed_config_rtl():
    config = {
        "width": 5,
        "height": 4,
        "kernel": 3,
        "stride": 2,
        "pad_top": 1,
        "pad_left": 0,
        "pad_bottom": 1,
        "pad_right": 2,
        "cin_tiles": 2,
        "lo": -60,
        "hi": 70,
    }
    args = {"arch": dict(ARCH, conv_pi=1, conv_po=2, conv_k_max=3), "seed": 4, "config": config}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name="conv-fixed",
        test_args=args,
        testcase="conv_fixed",
    )


def test_conv_ports_and_latency():
    eng = ConvEngine(ArchConfig(conv_pi=3, conv_po=2, conv_k_max=5))
    assert eng.weights.payload.shape().length == 6
    assert eng.pixels.payload.shape().length == 3
    assert eng.o.payload.shape().length == 2
    # 3 * 25 = 75 products: 7 adder levels
    assert eng.tree_latency == 7
    assert "pool_mode" not in dict(eng.cmd_layout)
    pooled = ConvEngine(ArchConfig(), pool=True)
    assert "pool_mode" in dict(pooled.cmd_layout)


GOOD = {
    "width": 4,
    "height": 4,
    "kernel": 3,
    "stride": 1,
    "pad_top": 1,
    "pad_left": 1,
    "pad_bottom": 1,
    "pad_right": 1,
    "cin_tiles": 1,
    "lo": -128,
    "hi": 127,
}


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"arch": 3}, TypeError, r"arch must be an ArchConfig, not 3"),
        ({"conv_pi": 0}, ValueError, r"conv_pi must be between 1 and 256, not 0"),
        ({"conv_k_max": 4}, ValueError, r"conv_k_max must be one of \(1, 3, 5, 7\), not 4"),
        ({"act_bits": 1}, ValueError, r"act_bits must be between 2 and 16, not 1"),
        (
            {"conv_k_max": 5, "max_width": 4},
            ValueError,
            r"max_width and max_height must be at least conv_k_max=5, not 4x64",
        ),
        ({"pool": 1}, TypeError, r"pool must be a bool, not 1"),
        (
            {"config": dict(GOOD, kernel=2)},
            ValueError,
            r"config field kernel must be one of 1, 3, not 2",
        ),
        (
            {"config": dict(GOOD, stride=3)},
            ValueError,
            r"config field stride must be one of 1, 2, not 3",
        ),
        (
            {"config": dict(GOOD, width=70)},
            ValueError,
            r"config field width must be between 1 and 64, not 70",
        ),
        (
            {"config": dict(GOOD, width=63, pad_left=1, pad_right=1)},
            ValueError,
            r"config padded width must be at most max_width=64, not 65",
        ),
        (
            {"config": dict(GOOD, width=1, pad_left=0, pad_right=1)},
            ValueError,
            r"config padded frame must be at least kernel=3 in each dimension, not 2x6",
        ),
        ({"config": dict(GOOD, lo=5, hi=4)}, ValueError, r"config lo must be at most hi=4, not 5"),
    ],
)
def test_conv_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ConvEngine(**kwargs)
