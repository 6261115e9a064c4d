"""FIRB: a fused inverted residual bottleneck stage (seed 003, Paper II).

Pointwise expand -> depthwise -> pointwise project as one SESL stage, pipelined pixel
by pixel. The depthwise line buffer over the expanded channels is the only buffer, and
it is a ring freed pixel by pixel (``StageConfig.ring``, set by
:func:`compiler.sesl.firb.fuse_bottlenecks`): the expand takes each incoming pixel from
a one-pixel register and writes its result straight into the ring, and the project
takes each depthwise output pixel from a one-pixel register as soon as it is computed.
The residual add (when the bottleneck has one) stays a join stage fed by the skip FIFO.
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..sesl.config import StageConfig
from ..sesl.stage import WindowStage, pixel_signature

__all__ = ["FirbStage"]


class FirbStage(wiring.Component):
    """``[expand] -> depthwise -> project`` fused; see the module docstring.

    Parameters
    ----------
    expand : StageConfig or None
        Unbuffered (``buffered=False``) 1x1 conv, or ``None`` for an expansion of 1.
    depthwise : StageConfig
    project : StageConfig
        Unbuffered 1x1 conv.
    **widths
        ``act_bits``, ``weight_bits``, ``acc_bits``, ``mult_bits``, ``shift_bits``.

    Members
    -------
    i : ``In(pixel_signature(C_in, act_bits))``
    o : ``Out(pixel_signature(C_out, act_bits))``
    """

    def __init__(self, expand: StageConfig | None, depthwise: StageConfig,
                 project: StageConfig, **widths):
        for name, st in (("expand", expand), ("project", project)):
            if st is not None and (not isinstance(st, StageConfig) or st.buffered):
                raise ValueError(f"{name} must be an unbuffered StageConfig, not {st!r}")
        if not isinstance(depthwise, StageConfig) or depthwise.op != "depthwise":
            raise ValueError(f"depthwise must be a depthwise StageConfig, not {depthwise!r}")
        chain = [st for st in (expand, depthwise, project) if st is not None]
        for a, b in itertools.pairwise(chain):
            if b.inputs != (a.output,):
                raise ValueError(f"stage {b.name!r} must read {a.output!r}, not {b.inputs!r}")
        self.chain = chain
        self.widths = widths
        act_bits = widths.get("act_bits", 8)
        super().__init__({"i": In(pixel_signature(chain[0].in_channels, act_bits)),
                          "o": Out(pixel_signature(chain[-1].out_channels, act_bits))})

    @property
    def buffer_bits(self) -> int:
        """Bits of RAM buffering in the stage (the depthwise line buffer)."""
        return sum(st.line_buffer_bits for st in self.chain) * self.widths.get("act_bits", 8)

    def elaborate(self, platform):
        m = Module()
        parts = [WindowStage(st, **self.widths) for st in self.chain]
        for k, part in enumerate(parts):
            m.submodules[f"part{k}"] = part
        wiring.connect(m, wiring.flipped(self.i), parts[0].i)
        for a, b in itertools.pairwise(parts):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, parts[-1].o, wiring.flipped(self.o))
        return m
