"""hw.timing is the one home of the core's timing figures: the engines report its
latencies, and every unit that still states a figure of its own agrees with it."""

from __future__ import annotations

import pytest

from hw import timing
from hw.arch import ArchConfig
from hw.blocks.pool import PoolUnit
from hw.blocks.requant import RequantUnit
from hw.engines.conv import ConvEngine
from hw.engines.depthwise import DepthwiseEngine
from hw.engines.pointwise import PointwiseEngine
from hw.isa import Engine
from hw.seml import compute, core, dma, fetch, units
from hw.seml.engine_units import engine_latency

ARCHS = [ArchConfig(), ArchConfig(conv_pi=2, conv_po=3, conv_k_max=5, pw_pi=8, dw_channels=2),
         ArchConfig(conv_pi=1, conv_k_max=7, pw_pi=1, max_width=16, max_height=16)]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"pi{a.conv_pi}k{a.conv_k_max}")
def test_engine_latencies(arch):
    assert RequantUnit.latency == timing.REQUANT_LATENCY
    assert PoolUnit.latency == timing.POOL_UNIT_LATENCY
    conv = ConvEngine(arch, pool=True)
    # the pool takes the output queue's beats
    assert conv.latency == (2 + conv.tree_latency + 4 + timing.REQUANT_LATENCY
                            + timing.OUTPUT_QUEUE_LATENCY + PoolUnit.latency)
    assert engine_latency(arch, Engine.CONV) == conv.latency
    dw = DepthwiseEngine(arch)
    assert dw.latency == (2 + dw.tree_latency + 1 + timing.REQUANT_LATENCY
                          + timing.OUTPUT_QUEUE_LATENCY)
    assert engine_latency(arch, Engine.DEPTHWISE) == dw.latency
    pw = PointwiseEngine(arch)
    assert pw.latency == (2 + pw.tree_latency + 4 + timing.REQUANT_LATENCY
                          + timing.OUTPUT_QUEUE_LATENCY)
    assert engine_latency(arch, Engine.POINTWISE) == pw.latency


def test_units_state_the_same_figures():
    assert compute.POOL_LANES == timing.POOL_LANES
    assert compute.DRAIN_CYCLES == timing.DRAIN_CYCLES
    assert compute.pool_steps(3, 5, 17, 2, 3) == timing.pool_steps(3, 5, 17, 2, 3)
    assert core.MAX_BURST == timing.MAX_BURST
    assert core.ISSUE_BUSY_LAG == timing.ISSUE_BUSY_LAG
    assert core.START_LAG == timing.START_LAG
    assert dma.PAGE_BYTES == timing.PAGE_BYTES
    assert fetch.FETCH_DEPTH == timing.FETCH_DEPTH
    for arch in ARCHS:
        assert units.add_lanes(arch) == timing.add_lanes(arch)
        assert units.add_chunk_beats(arch) == timing.add_chunk_beats(arch)


def test_adder_tree_latency():
    from hw.blocks.adder_tree import AdderTree
    for n in (1, 2, 3, 4, 5, 9, 16, 17, 75):
        assert AdderTree(n, 8).latency == timing.adder_tree_latency(n)
