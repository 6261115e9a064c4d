"""Cycle model of compiled programs.

The per-instruction formulas live in :func:`sim.iss.instruction_cycles` (the ISS
reports the same numbers while it runs); :func:`timeline` replays the execution
model of ``docs/isa.md`` -- in-order issue, one instruction per unit at a time,
SYNC stalls -- without executing data, so the compiler can predict a program's
cycles and attribute them to layers.
"""

from __future__ import annotations

from types import SimpleNamespace

from hw.arch import ArchConfig
from hw.isa import Engine, Opcode, Pool
from sim.iss import instruction_cycles, timeline

__all__ = ["layer_cycles", "timeline", "window_tile_cycles"]


def window_tile_cycles(op, arch: ArchConfig, m_tile: int, row_tile: int) -> int:
    """Predicted COMPUTE cycles of one full tile of the windowed op ``op``
    (a :class:`compiler.mapping.tiling.WindowOp`)."""
    rows = op.padded_rows(row_tile)
    kh = op.kernel[0]
    probe = SimpleNamespace(
        opcode=Opcode.COMPUTE, engine=op.engine, pool=Pool.NONE,
        in_c=m_tile if op.channelwise else op.in_c, out_c=m_tile,
        in_h=rows, in_w=op.in_w, k_h=kh, k_w=op.kernel[1],
        stride_h=op.stride[0], stride_w=op.stride[1],
        pad_top=0, pad_bottom=0, pad_left=op.pads[1], pad_right=op.pads[3])
    if op.engine is Engine.POINTWISE:
        probe.in_h = (row_tile * op.fpool[0] - 1) * op.stride[0] + 1
    return instruction_cycles(probe, arch)


def layer_cycles(instructions, layer_of, arch: ArchConfig, instr_count=None):
    """Predicted cycles attributed to each layer, and the program total.

    ``layer_of[i]`` names the layer instruction ``i`` belongs to (``None`` for
    none). A layer's cycles run from the previous layer's last finish to its own
    last finish, so the attributions add up to at most the total.

    Returns
    -------
    (dict of str to int, int)
    """
    _, finishes, total = timeline(instructions, arch, instr_count)
    result = {}
    done = 0
    for i, name in enumerate(layer_of):
        if name is None:
            continue
        end = max(done, finishes[i])
        result[name] = result.get(name, 0) + end - done
        done = end
    return result, total
