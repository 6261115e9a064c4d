"""The SESL pipeline top: the stages of a :class:`~hw.sesl.config.PipelineConfig`
chained by pixel streams, with a fork where a tensor has several consumers and a FIFO
on every edge the compiler gave a depth (the skips). Stages tagged with the same
``firb`` name become one :class:`hw.engines.firb.FirbStage`."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import PipelineConfig
from .stage import Fork, JoinStage, StreamFIFO, WindowStage, pixel_signature

__all__ = ["SeslPipeline"]


class SeslPipeline(wiring.Component):
    """A whole SESL pipeline, elaborated from its configuration.

    Members
    -------
    i : ``In(pixel_signature(C_in, act_bits))``
        Input pixels in raster order, frames back to back.
    o : ``Out(pixel_signature(C_out, act_bits))``
        Output pixels in raster order.
    """

    def __init__(self, cfg: PipelineConfig):
        if not isinstance(cfg, PipelineConfig):
            raise TypeError(f"cfg must be a PipelineConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({"i": In(pixel_signature(cfg.input_shape[0], cfg.act_bits)),
                          "o": Out(pixel_signature(cfg.output_shape[0], cfg.act_bits))})

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        widths = {"act_bits": cfg.act_bits, "weight_bits": cfg.weight_bits,
                      "acc_bits": cfg.acc_bits, "mult_bits": cfg.mult_bits,
                      "shift_bits": cfg.shift_bits}
        sources = {cfg.input: wiring.flipped(self.i)}   # tensor -> its stream (an Out)
        channels = {cfg.input: cfg.input_shape[0]}
        pending = {}  # tensor -> list of outputs still to hand to consumers

        def take(tensor, consumer):
            if tensor not in pending:
                users = [st.name for st in cfg.consumers(tensor)]
                if tensor == cfg.output:
                    users.append(None)
                width = channels[tensor] * cfg.act_bits
                if len(users) > 1:
                    fork = Fork(width, len(users))
                    m.submodules[f"fork_{len(pending)}"] = fork
                    wiring.connect(m, sources[tensor], fork.i)
                    pending[tensor] = {u: getattr(fork, f"o{k}") for k, u in enumerate(users)}
                else:
                    pending[tensor] = {users[0]: sources[tensor]}
            port = pending[tensor].pop(consumer)
            depth = cfg.fifo_depth(tensor, consumer) if consumer is not None else 0
            if depth:
                fifo = StreamFIFO(channels[tensor] * cfg.act_bits, depth)
                m.submodules[f"skip_fifo_{_ident(consumer)}_{_ident(tensor)}"] = fifo
                wiring.connect(m, port, fifo.i)
                port = fifo.o
            return port

        from ..engines.firb import FirbStage

        done = set()
        for k, st in enumerate(cfg.stages):
            if st.name in done:
                continue
            if st.firb:
                group = [s for s in cfg.stages if s.firb == st.firb]
                expand = group[0] if group[0].op == "conv" else None
                dw = next(s for s in group if s.op == "depthwise")
                firb = FirbStage(expand, dw, group[-1], **widths)
                m.submodules[f"s{k}_firb_{_ident(st.firb)}"] = firb
                wiring.connect(m, take(group[0].inputs[0], group[0].name), firb.i)
                sources[group[-1].output] = firb.o
                channels[group[-1].output] = group[-1].out_channels
                done.update(s.name for s in group)
                continue
            if st.unrolled:
                from .unrolled import UnrolledConvStage

                stage = UnrolledConvStage(st, **widths)
                m.submodules[f"s{k}_{_ident(st.name)}"] = stage
                wiring.connect(m, take(st.inputs[0], st.name), stage.i)
            elif st.is_window:
                stage = WindowStage(st, **widths)
                m.submodules[f"s{k}_{_ident(st.name)}"] = stage
                wiring.connect(m, take(st.inputs[0], st.name), stage.i)
            else:
                stage = JoinStage(st, act_bits=cfg.act_bits)
                m.submodules[f"s{k}_{_ident(st.name)}"] = stage
                for j, tensor in enumerate(st.inputs):
                    wiring.connect(m, take(tensor, st.name), getattr(stage, f"i{j}"))
            sources[st.output] = stage.o
            channels[st.output] = st.out_channels
        wiring.connect(m, take(cfg.output, None), wiring.flipped(self.o))
        return m


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)
