# amaranth: UnusedElaboratable=no
"""Element-wise add engine: cocotb under Verilator against ``sim.golden.add``."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from hw.arch import ArchConfig
from hw.engines.eltwise import EltwiseAddEngine
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
from tests.hw.bench import DoneMonitor, engine_reset

ARCH = {"max_width": 8, "max_height": 8, "mult_bits": 10, "shift_bits": 5}


def _engine(args):
    return EltwiseAddEngine(
        ArchConfig(**args["arch"]), lanes=args["lanes"], config=args.get("config")
    )


def _job(rng, arch, lanes, count=None):
    lo_q, hi_q = golden.qrange(arch.act_bits)
    if count is None:
        count = rng.randint(1, arch.max_width * arch.max_height)
    kind = rng.choice(["full", "relu", "narrow", "saturate"])
    ma = rng.choice([1, rng.randint(0, (1 << arch.mult_bits) - 1)])
    mb = rng.choice([1, rng.randint(0, (1 << arch.mult_bits) - 1)])
    shift = (
        0 if ma == mb == 1 and kind != "saturate" else rng.randint(0, (1 << arch.shift_bits) - 1)
    )
    lo, hi = lo_q, hi_q
    if kind == "relu":
        lo = 0
    elif kind == "narrow":
        lo, hi = sorted(rng.randint(lo_q, hi_q) for _ in range(2))
    elif kind == "saturate":
        shift = rng.randint(0, 2)
        ma = mb = (1 << arch.mult_bits) - 1
    a = np.array([[rng.randint(lo_q, hi_q) for _ in range(lanes)] for _ in range(count)])
    b = np.array([[rng.randint(lo_q, hi_q) for _ in range(lanes)] for _ in range(count)])
    cfg = {"count": count, "ma": ma, "mb": mb, "shift": shift, "lo": lo, "hi": hi}
    return cfg, a, b


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def eltwise_random(dut):
    args = test_args()
    eng = _engine(args)
    arch, lanes = eng.arch, eng.lanes
    rng = random.Random(args["seed"])
    await engine_reset(dut)
    done = DoneMonitor(dut)
    if args.get("config"):
        fixed = args["config"]
        jobs = [(fixed, *_job(rng, arch, lanes, fixed["count"])[1:]) for _ in range(args["jobs"])]
    else:
        jobs = [_job(rng, arch, lanes) for _ in range(args["jobs"])]
    cmd = (
        None
        if args.get("config")
        else StreamSource(dut, "cmd", dut.clk, idle=random_pattern(rng.random(), 0.5))
    )
    src_a = StreamSource(dut, "a", dut.clk, idle=random_pattern(rng.random(), 0.7))
    src_b = StreamSource(dut, "b", dut.clk, idle=random_pattern(rng.random(), 0.6))
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(rng.random(), 0.6))
    saturated = set()
    for n, (cfg, a, b) in enumerate(jobs):
        if cmd is not None:
            await cmd.send([pack_struct(eng.cmd_layout, cfg)])
        ta = src_a.start([pack_lanes(row, arch.act_bits) for row in a])
        tb = src_b.start([pack_lanes(row, arch.act_bits) for row in b])
        words = await sink.recv(len(a))
        await ta
        await tb
        got = np.array([unpack_lanes(w, arch.act_bits, lanes) for w in words])
        want = golden.add(a, b, cfg["ma"], cfg["mb"], cfg["shift"], cfg["lo"], cfg["hi"])
        assert (got == want).all(), f"job {n} {cfg}: got {got.tolist()} want {want.tolist()}"
        saturated |= {"lo"} if (want == cfg["lo"]).any() else set()
        saturated |= {"hi"} if (want == cfg["hi"]).any() else set()
        for _ in range(20):
            if done.count == n + 1:
                break
            await RisingEdge(dut.clk)
        assert done.count == n + 1, f"job {n}: done pulses {done.count}"
    if not args.get("config"):
        assert saturated == {"lo", "hi"}, f"no saturation seen at { ({'lo', 'hi'} - saturated) }"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def eltwise_throughput(dut):
    args = test_args()
    eng = _engine(args)
    arch, lanes = eng.arch, eng.lanes
    rng = random.Random(args["seed"] + 1)
    await engine_reset(dut)
    count = arch.max_width * arch.max_height
    lo_q, hi_q = golden.qrange(arch.act_bits)
    a = [[rng.randint(lo_q, hi_q) for _ in range(lanes)] for _ in range(count)]
    b = [[rng.randint(lo_q, hi_q) for _ in range(lanes)] for _ in range(count)]
    cfg = {"count": count, "ma": 3, "mb": 5, "shift": 2, "lo": lo_q, "hi": hi_q}
    if args.get("config"):
        return
    cmd = StreamSource(dut, "cmd", dut.clk)
    src_a = StreamSource(dut, "a", dut.clk)
    src_b = StreamSource(dut, "b", dut.clk)
    sink = StreamSink(dut, "o", dut.clk)
    done = DoneMonitor(dut)
    cocotb.start_soon(cmd.send([pack_struct(eng.cmd_layout, cfg)]))
    src_a.start([pack_lanes(r, arch.act_bits) for r in a])
    src_b.start([pack_lanes(r, arch.act_bits) for r in b])
    recv = sink.start(count)
    while done.count == 0:
        await RisingEdge(dut.clk)
    words = await recv
    cycles = done.cycles[0]
    # one beat per cycle: the job takes its beats plus the pipeline depth
    assert cycles <= count + 12, f"{count} beats took {cycles} cycles"
    want = golden.add(a, b, 3, 5, 2, lo_q, hi_q)
    got = np.array([unpack_lanes(w, arch.act_bits, lanes) for w in words])
    assert (got == want).all()


@pytest.mark.rtl
@pytest.mark.parametrize("lanes,act_bits,seed", [(3, 8, 1), (1, 6, 2)])
def test_eltwise_rtl(lanes, act_bits, seed):
    arch = dict(ARCH, act_bits=act_bits)
    args = {"arch": arch, "lanes": lanes, "seed": seed, "jobs": 6}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name=f"eltwise-l{lanes}-a{act_bits}",
        test_args=args,
    )


@pytest.mark.rtl
def test_eltwise_fixed_config_rtl():
    config = {"count": 5, "ma": 7, "mb": 3, "shift": 3, "lo": -20, "hi": 90}
    args = {"arch": ARCH, "lanes": 2, "seed": 9, "jobs": 3, "config": config}
    run_cocotb(
        _engine(args),
        test_module=__name__,
        build_name="eltwise-fixed",
        test_args=args,
        testcase="eltwise_random",
    )


def test_eltwise_ports():
    eng = EltwiseAddEngine(ArchConfig(), lanes=5)
    assert eng.a.payload.shape().length == 5
    assert "cmd" in eng.signature.members
    fixed = EltwiseAddEngine(
        ArchConfig(), config={"count": 4, "ma": 1, "mb": 1, "shift": 0, "lo": -128, "hi": 127}
    )
    assert "cmd" not in fixed.signature.members


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"arch": "default"}, TypeError, r"arch must be an ArchConfig, not 'default'"),
        ({"lanes": 0}, ValueError, r"lanes must be between 1 and 256, not 0"),
        ({"lanes": 2.0}, TypeError, r"lanes must be an integer, not 2.0"),
        ({"act_bits": 1}, ValueError, r"act_bits must be between 2 and 16, not 1"),
        (
            {"config": {"count": 0, "ma": 1, "mb": 1, "shift": 0, "lo": 0, "hi": 1}},
            ValueError,
            r"config field count must be between 1 and 4096, not 0",
        ),
        (
            {"config": {"count": 1, "ma": 1, "mb": 1, "shift": 0, "lo": 5, "hi": 1}},
            ValueError,
            r"config lo must be at most hi=1, not 5",
        ),
        (
            {"config": {"count": 1, "ma": 1, "shift": 0, "lo": 5, "hi": 1}},
            ValueError,
            r"config lacks field\(s\) mb",
        ),
        ({"config": [1]}, TypeError, r"config must be a dict of command fields, not \[1\]"),
    ],
)
def test_eltwise_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EltwiseAddEngine(**kwargs)
