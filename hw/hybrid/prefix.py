"""The SESL part of a hybrid: the prefix's pipeline followed by the hand-off writer."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.sesl.config import PipelineConfig
from hw.sesl.pipeline import SeslPipeline
from hw.sesl.stage import pixel_signature

from .handoff import HandoffWriter

__all__ = ["SeslPrefix"]


class SeslPrefix(wiring.Component):
    """:class:`~hw.sesl.pipeline.SeslPipeline` of ``cfg`` streaming into a
    :class:`~hw.hybrid.handoff.HandoffWriter` that writes each frame's output tensor to
    DDR at ``base`` in the SEML input layout.

    Members
    -------
    i : In(pixel_signature(C_in, act_bits))
    base, frames, error, clear, m_axi_* : as :class:`~hw.hybrid.handoff.HandoffWriter`.
    """

    def __init__(self, cfg: PipelineConfig, *, data_bits: int = 64, addr_bits: int = 32):
        self.cfg = cfg
        self.pipeline = SeslPipeline(cfg)
        c, h, w = cfg.output_shape
        self.writer = HandoffWriter(c, h, w, act_bits=cfg.act_bits, data_bits=data_bits,
                                    addr_bits=addr_bits)
        members = {name: value for name, value in self.writer.signature.members.items()
                   if name != "i"}
        super().__init__({"i": In(pixel_signature(cfg.input_shape[0], cfg.act_bits)),
                          **members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipeline = pipe = self.pipeline
        m.submodules.writer = writer = self.writer
        wiring.connect(m, wiring.flipped(self.i), pipe.i)
        wiring.connect(m, pipe.o, writer.i)
        for name, member in self.signature.members.items():
            if name == "i":
                continue
            ours, theirs = getattr(self, name), getattr(writer, name)
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        return m
