"""Cycle model of compiled programs.

The per-instruction formulas and the issue model, derived from the SEML core's RTL,
live in :mod:`sim.timing` (:func:`~sim.timing.instruction_cycles`,
:func:`~sim.timing.timeline`;
the ISS reports the same numbers while it runs); this module applies them to the
compiler's questions: the COMPUTE cycles of a candidate tile, and a program's cycles
attributed to layers as the core's issue stamps measure them.
"""

from __future__ import annotations

from types import SimpleNamespace

from hw.arch import ArchConfig
from hw.engine_kinds import engine_kind
from hw.isa import Opcode, Pool
from sim.timing import instruction_cycles, timeline

__all__ = ["layer_cycles", "timeline", "window_tile_cycles"]


def window_tile_cycles(op, arch: ArchConfig, m_tile: int, row_tile: int) -> int:
    """Predicted COMPUTE cycles of one full tile of the windowed op ``op``
    (a :class:`compiler.mapping.tiling.WindowOp`)."""
    rows = op.padded_rows(row_tile)
    kh = op.kernel[0]
    fused = op.fpool != (1, 1) and engine_kind(op.engine).fused_pool
    probe = SimpleNamespace(
        opcode=Opcode.COMPUTE, engine=op.engine, pool=Pool.MAX if fused else Pool.NONE,
        in_c=m_tile if op.channelwise else op.in_c, out_c=m_tile,
        in_h=rows, in_w=op.in_w, out_h=row_tile, out_w=op.out_w, k_h=kh, k_w=op.kernel[1],
        stride_h=op.stride[0], stride_w=op.stride[1], fpool_h=op.fpool[0],
        fpool_w=op.fpool[1], pad_top=0, pad_bottom=0, pad_left=op.pads[1],
        pad_right=op.pads[3])
    return instruction_cycles(probe, arch)


def layer_cycles(instructions, layer_of, arch: ArchConfig, instr_count=None):
    """Predicted cycles attributed to each layer, and the program total.

    ``layer_of[i]`` names the layer instruction ``i`` belongs to (``None`` for
    none). A layer's span runs from the issue of its first instruction to the issue of
    the next instruction of another layer (to the end of the program for the last), as
    the core's issue stamps measure it; spans of one layer add up, so the attributions
    add up to at most the total.

    Returns
    -------
    (dict of str to int, int)
    """
    starts, _, total = timeline(instructions, arch, instr_count)
    result = {}
    current, since = None, 0
    for i, name in enumerate(layer_of):
        if name is None or name == current or i >= len(starts):
            continue
        if current is not None:
            result[current] = result.get(current, 0) + starts[i] - since
        current, since = name, starts[i]
    if current is not None:
        result[current] = result.get(current, 0) + total - since
    return result, total
