"""The engines' output queue (:class:`hw.engines.datapath.OutputQueue`): ``room`` is a
register equal to ``owed < depth`` in every cycle, and a pipeline that admits beats only
while it is high never overflows the FIFO, under random admits and back-pressure."""

import itertools
import random

import pytest
from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream
from amaranth.sim import Simulator

from hw.engines.datapath import OutputQueue
from hw.timing import OUTPUT_QUEUE_LATENCY, output_queue_depth


@pytest.mark.parametrize("latency,extra,seed", [(1, 0, 1), (3, 0, 2), (6, 1, 3), (2, 4, 4)])
def test_room_equals_owed_below_depth(latency, extra, seed):
    # as the engines size it, for ``latency`` cycles from a beat's entry to its FIFO
    # write (the queue's own latency follows), plus any extra
    depth = output_queue_depth(latency + OUTPUT_QUEUE_LATENCY) + extra
    rng = random.Random(seed)
    m = Module()
    o = stream.Signature(unsigned(8)).flip().create()
    queue = OutputQueue(m, o, depth=depth)
    enter = Signal()          # a beat enters the pipeline and will produce an output
    queue.admit(enter)
    # the pipeline: ``latency`` stages from entry to the FIFO write, a count as payload
    count = Signal(8)
    stages = [Signal(9, name=f"stage{k}") for k in range(latency)]
    m.d.sync += stages[0].eq(Cat(count, enter))
    for a, b in itertools.pairwise(stages):
        m.d.sync += b.eq(a)
    with m.If(enter):
        m.d.sync += count.eq(count + 1)
    last = stages[-1]
    m.d.comb += [queue.w_en.eq(last[8]), queue.w_data.eq(last[:8])]
    fifo = m.submodules.queue
    seen = {"out": [], "cycles_full": 0}

    async def bench(ctx):
        for _ in range(600):
            room = ctx.get(queue.room)
            owed = ctx.get(queue.owed)
            assert room == (owed < depth), (owed, room)
            if ctx.get(queue.w_en):
                assert ctx.get(fifo.w_rdy), "output queue overflow"
            want = rng.random() < 0.8
            ctx.set(enter, want and room)
            ready = rng.random() < 0.5
            ctx.set(o.ready, ready)
            if ready and ctx.get(o.valid):
                seen["out"].append(ctx.get(o.payload))
            seen["cycles_full"] += not room
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # every beat comes out, in order, and the queue did fill under back-pressure
    assert seen["out"] == [k % 256 for k in range(len(seen["out"]))]
    assert len(seen["out"]) > 100 and seen["cycles_full"] > 10
