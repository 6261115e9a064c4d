# amaranth: UnusedElaboratable=no
"""Per-lane staging of OBUF writes (LaneStager) against a byte-array model: every lane's
element lands at its address, whatever the runs' alignment, back-pressure and flushes."""

import random

import pytest
from amaranth.sim import Simulator

from hw.seml.buffers import LaneStager


def _run(lanes, elem, width, size, seed, beats=300):
    rng = random.Random(seed)
    dut = LaneStager(lanes=lanes, elem=elem, width=width, size=size)
    expect = {}
    written = {}
    stats = {"stalls": 0, "writes": 0, "max_count": 0, "jumps": 0}

    # Each lane writes runs of consecutive elements from random bases (planes), with
    # occasional jumps (a new group) and idle cycles (tiles > 1).
    plane = size // lanes
    bases = [q * plane + rng.randrange(0, 8) * elem for q in range(lanes)]

    async def bench(ctx):
        ptr = 0
        sent = 0
        on = [True] * lanes
        while sent < beats:
            valid = rng.random() < 0.8
            if rng.random() < 0.02:
                # A new group: new planes, and lanes past the layer's channels stay off.
                ptr = 0
                stats["jumps"] += 1
                for q in range(lanes):
                    bases[q] = q * plane + rng.randrange(0, plane // 4) * elem
                on = [rng.random() < 0.8 for _ in range(lanes)]
            data = [rng.getrandbits(8 * elem) for _ in range(lanes)]
            for q in range(lanes):
                addr, d, en = dut.lane(q)
                ctx.set(addr, (bases[q] + ptr) % size)
                ctx.set(d, data[q])
                ctx.set(en, valid and on[q])
            ctx.set(dut.flush, 0)
            await ctx.delay(1e-9)
            ready = ctx.get(dut.ready)
            if valid and ready:
                for q in range(lanes):
                    if on[q]:
                        for k in range(elem):
                            expect[(bases[q] + ptr + k) % size] = (data[q] >> (8 * k)) & 0xFF
                ptr += elem
                sent += 1
            elif valid:
                stats["stalls"] += 1
            await ctx.tick()
        for q in range(lanes):
            ctx.set(dut.lane(q)[2], 0)
        ctx.set(dut.flush, 1)
        n = 0
        while ctx.get(dut.busy):
            await ctx.tick()
            n += 1
            assert n < 10 * lanes + 10, "stager never drained"
        stats["drain"] = n

    async def port(ctx):
        async for _, _, addr, data, count in ctx.tick().sample(dut.w_addr, dut.w_data,
                                                                  dut.w_count):
            if count:
                stats["writes"] += 1
                stats["max_count"] = max(stats["max_count"], count)
                for k in range(count):
                    written[(addr + k) % size] = (data >> (8 * k)) & 0xFF

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(port)
    sim.add_testbench(bench)
    sim.run()
    return expect, written, stats


@pytest.mark.parametrize("lanes,elem,width,seed", [(4, 1, 8, 1), (3, 2, 8, 2), (8, 1, 8, 3),
                                                   (1, 1, 4, 4)])
def test_stager_writes_every_element(lanes, elem, width, seed):
    expect, written, stats = _run(lanes, elem, width, 4096, seed)
    assert written == expect
    # Runs are gathered: far fewer writes than elements, and full-width runs occur.
    assert stats["writes"] < len(expect) // elem // 2
    assert stats["max_count"] == width


def test_stager_keeps_up_when_lanes_fit_the_width():
    # lanes * elem <= width: the lanes are never held while runs continue.
    _, _, stats = _run(8, 1, 8, 4096, 5, beats=400)
    assert stats["stalls"] <= 8 * stats["jumps"], stats  # only at the jumps to new bases


def test_stager_parameters():
    with pytest.raises(ValueError, match=r"Run width 6 must be a multiple of the element "
                                         r"bytes 4"):
        LaneStager(lanes=2, elem=4, width=6, size=64)
    with pytest.raises(ValueError, match=r"Lane count must be at least 1, not 0"):
        LaneStager(lanes=0, elem=1, width=8, size=64)
