# amaranth: UnusedElaboratable=no
"""The skid buffer between the engine units and the OBUF stager: every beat passes once
and in order under random valid and back-pressure, one beat per cycle when the consumer
keeps up, and ``i_ready`` never follows ``o_ready`` within a cycle."""

import random

import pytest
from amaranth.sim import Simulator

from hw.blocks.skid import SkidBuffer


def _run(seed, beats=400, p_valid=0.8, p_ready=0.7, copies=0):
    rng = random.Random(seed)
    dut = SkidBuffer(16, ready_copies=copies)
    sent, got = [], []
    stats = {"cycles": 0}

    async def producer(ctx):
        while len(sent) < beats:
            valid = rng.random() < p_valid
            word = rng.getrandbits(16)
            ctx.set(dut.i_valid, valid)
            ctx.set(dut.i_data, word)
            await ctx.delay(1e-9)
            if valid and ctx.get(dut.i_ready):
                sent.append(word)
            await ctx.tick()
        ctx.set(dut.i_valid, 0)

    async def consumer(ctx):
        while len(got) < beats:
            ready = rng.random() < p_ready
            before = ctx.get(dut.i_ready)
            ctx.set(dut.o_ready, ready)
            await ctx.delay(2e-9)
            # a register: the consumer's ready does not reach the producer's
            assert ctx.get(dut.i_ready) == before
            if ready and ctx.get(dut.o_valid):
                got.append(ctx.get(dut.o_data))
            await ctx.tick()
            stats["cycles"] += 1
            assert stats["cycles"] < 20 * beats, "skid buffer stopped passing beats"
        for _ in range(3):
            await ctx.tick()
        assert not ctx.get(dut.busy)

    async def copies_follow(ctx):
        # copy i follows ``i_ready`` in every cycle after one with its enable high and
        # is high after one with its enable low
        prev = [0] * copies
        while len(got) < beats:
            en = [rng.random() < 0.7 for _ in range(copies)]
            for i in range(copies):
                ctx.set(dut.copy_en[i], en[i])
            await ctx.delay(3e-9)
            for i in range(copies):
                expect = ctx.get(dut.i_ready) if prev[i] else 1
                assert ctx.get(dut.copy_ready[i]) == expect, (i, stats["cycles"])
            stats["copy_checks"] = stats.get("copy_checks", 0) + copies
            prev = en
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if copies:
        sim.add_testbench(copies_follow)
    sim.run()
    return sent, got, stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skid_passes_every_beat_in_order(seed):
    sent, got, _ = _run(seed)
    assert got == sent[:len(got)] and len(got) == len(sent)


def test_skid_full_rate_without_back_pressure():
    _, got, stats = _run(4, beats=200, p_valid=1.0, p_ready=1.0)
    # one cycle of latency, then a beat per cycle
    assert len(got) == 200 and stats["cycles"] <= 201


@pytest.mark.parametrize("seed", [5, 6])
def test_skid_ready_copies_follow_i_ready(seed):
    sent, got, stats = _run(seed, copies=3)
    assert got == sent and stats["copy_checks"] >= 3 * 400


def test_skid_parameters():
    with pytest.raises(ValueError, match=r"Payload width must be at least 1, not 0"):
        SkidBuffer(0)
    with pytest.raises(ValueError, match=r"Ready copies must be a non-negative integer, "
                                         r"not -1"):
        SkidBuffer(8, ready_copies=-1)
