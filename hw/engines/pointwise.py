"""Pointwise (1x1 convolution) and fully connected engine: a Pi x Po MAC array."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..arch import ArchConfig
from ..isa import qrange
from ..timing import output_queue_depth, pointwise_engine_latency
from .datapath import (
    TILE_BITS,
    JobControl,
    OutputQueue,
    Pipeline,
    accumulate,
    check_arch,
    check_fixed,
    multiply,
    param_layout,
    requant_tail,
    weight_shape,
)

__all__ = ["PointwiseEngine"]


class PointwiseEngine(wiring.Component):
    """Pi x Po multiply-accumulate array for 1x1 convolutions and fully connected layers.

    A job computes one group of ``Po`` output channels over every input channel of the
    layer, for ``pixels`` pixels: for each of ``cin_tiles`` input-channel tiles of ``Pi``
    channels it streams every pixel once, multiplies it by the tile's ``Pi x Po`` weights
    and adds the ``Po`` partial sums into an output buffer of ``max_width * max_height``
    entries; the last tile adds bias, requantizes, clamps and streams the result out. A
    fully connected layer is the case ``pixels = 1`` (one weight beat per cycle).

    Input channels beyond the layer's (the last tile when ``Pi`` does not divide ``Cin``)
    must carry zero weights; output lanes beyond ``Cout`` (the last group) carry whatever
    their zero weights and parameters give and are discarded by the consumer.

    A command outside the documented ranges gives unspecified results, possibly a job
    that never completes: the compiler checks every layer against them, and a fixed
    ``config`` is checked at construction.

    Parameters
    ----------
    arch : ArchConfig
        ``pw_pi`` x ``pw_po`` MACs, widths, ``weight_scheme``, and the output buffer depth
        ``max_width * max_height``.
    config : dict, optional
        Fixed configuration (SESL): a value for every field of :attr:`cmd_layout`; the
        engine then has no ``cmd`` port and starts a new job as soon as one is done.
    **overrides
        ``ArchConfig`` fields replacing those of ``arch``.

    Members
    -------
    cmd : ``In(stream.Signature(cmd_layout))``
        Without ``config`` only. One beat per job, accepted while idle (``cmd.ready`` is
        ``~busy``):

        ``pixels`` (unsigned)
            Pixels per tile, 1 to ``max_width * max_height``.
        ``cin_tiles`` (``unsigned(TILE_BITS)``)
            ``ceil(Cin / Pi)``, at least 1.
        ``lo``, ``hi`` (``signed(act_bits)``)
            Clamp bounds (activation), ``lo <= hi``.
    params : ``In(stream.Signature(ArrayLayout(param_layout, Po)))``
        One beat per job, taken first: lane ``j`` holds ``bias`` (``signed(bias_bits)``),
        ``mult`` (``unsigned(mult_bits)``) and ``shift`` (``unsigned(shift_bits)``) of
        output channel ``j`` of the group.
    pixels : ``In(stream.Signature(ArrayLayout(signed(act_bits), Pi)))``
        ``cin_tiles * pixels`` beats, tile-major: for tile ``t``, for each pixel ``p``
        (raster order), input channels ``t*Pi .. t*Pi + Pi - 1`` of pixel ``p``, lane 0
        first.
    weights : ``In(stream.Signature(ArrayLayout(weight, Pi * Po)))``
        ``cin_tiles`` beats, one per tile, taken together with the tile's first pixel;
        lane ``j * Pi + i`` is the weight from input channel ``t*Pi + i`` to output
        channel ``j`` of the group. ``weight`` is ``signed(weight_bits)`` for uniform
        weights, else the unsigned code of :mod:`hw.weight_codes`.
    o : ``Out(stream.Signature(ArrayLayout(signed(act_bits), Po)))``
        ``pixels`` beats in pixel order, lane ``j`` output channel ``j`` of the group.
    busy : ``Out(1)``
        High from the accepted command until the last output beat is taken.
    done : ``Out(1)``
        One-cycle pulse after the last output beat of a job was taken.

    Throughput one pixel beat (``Pi * Po`` MACs) per cycle, including tile boundaries;
    a job takes ``cin_tiles * pixels`` cycles plus :attr:`latency` plus two (the
    parameter beat and the idle cycle after ``done``).
    """

    def __init__(self, arch: ArchConfig | None = None, *, config=None, **overrides):
        arch = check_arch(arch, overrides)
        self.arch = arch
        self.pi = arch.pw_pi
        self.po = arch.pw_po
        self.depth = arch.max_width * arch.max_height
        lo, hi = qrange(arch.act_bits)
        self.cmd_layout = data.StructLayout({
            "pixels": unsigned(bits_for(self.depth)),
            "cin_tiles": unsigned(TILE_BITS),
            "lo": signed(arch.act_bits),
            "hi": signed(arch.act_bits),
        })
        self.config = check_fixed(self.cmd_layout, config, {
            "pixels": (1, self.depth),
            "cin_tiles": (1, (1 << TILE_BITS) - 1),
            "lo": (lo, hi),
            "hi": (lo, hi),
        })
        if self.config is not None and self.config["lo"] > self.config["hi"]:
            raise ValueError(f"config lo must be at most hi={self.config['hi']}, "
                             f"not {self.config['lo']!r}")
        self.param_layout = data.ArrayLayout(param_layout(arch), self.po)
        members = {
            "params": In(stream.Signature(self.param_layout)),
            "pixels": In(stream.Signature(data.ArrayLayout(signed(arch.act_bits), self.pi))),
            "weights": In(stream.Signature(data.ArrayLayout(weight_shape(arch),
                                                            self.pi * self.po))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(arch.act_bits), self.po))),
            "busy": Out(1),
            "done": Out(1),
        }
        if self.config is None:
            members["cmd"] = In(stream.Signature(self.cmd_layout))
        super().__init__(members)

    @property
    def tree_latency(self):
        return (self.pi - 1).bit_length()

    @property
    def latency(self):
        """Cycles from a last-tile pixel handshake to its output's ``valid``."""
        # input register, products, adder tree, buffer read, add, requantize
        return pointwise_engine_latency(self.pi)

    @property
    def acc_bits(self):
        return self.arch.acc_bits

    def elaborate(self, platform):
        m = Module()
        arch, pi, po = self.arch, self.pi, self.po
        pipe = Pipeline(m)
        # Pixels of the last tile have outputs: one enters only while the output queue
        # has room.
        queue = OutputQueue(m, self.o, depth=output_queue_depth(pointwise_engine_latency(pi)))

        loading = Signal()   # waiting for the parameter beat
        running = Signal()   # taking pixels
        draining = Signal()
        m.d.comb += self.busy.eq(loading | running | draining)
        job = JobControl(m, self.cmd_layout, getattr(self, "cmd", None), self.config,
                         ~self.busy)
        cfg = job.cfg

        params = Signal(self.param_layout)
        m.d.comb += self.params.ready.eq(loading)
        with m.If(job.start):
            m.d.sync += loading.eq(1)
        # ``tile == cin_tiles - 1`` as a register kept with the tile count
        last_tile = Signal()
        with m.If(self.params.valid & loading):
            m.d.sync += [params.eq(self.params.payload), loading.eq(0), running.eq(1),
                         last_tile.eq(cfg.cin_tiles == 1)]

        pixel = Signal(range(self.depth))
        tile = Signal(TILE_BITS)
        # ``pixel == 0`` as a register kept with the count: the pixel stream's ``ready``
        # (which steps the feeding unit's lane addresses) starts at flip-flops
        first_pixel = Signal(init=1)
        last_pixel = pixel == cfg.pixels - 1
        admit = running & (queue.room | ~last_tile)
        ready = admit & (~first_pixel | self.weights.valid)
        take = ready & self.pixels.valid
        m.d.comb += [
            self.pixels.ready.eq(ready),
            self.weights.ready.eq(admit & first_pixel & self.pixels.valid),
        ]
        queue.admit(take & last_tile)
        with m.If(job.start):
            m.d.sync += [pixel.eq(0), tile.eq(0), first_pixel.eq(1)]
        with m.Elif(take):
            m.d.sync += [pixel.eq(pixel + 1), first_pixel.eq(last_pixel)]
            with m.If(last_pixel):
                m.d.sync += [pixel.eq(0), tile.eq(tile + 1),
                             last_tile.eq(tile == cfg.cin_tiles - 2)]
                with m.If(last_tile):
                    m.d.sync += [running.eq(0), draining.eq(1)]

        # Stage 1: inputs. The weight register changes only with a tile's first pixel,
        # so it always belongs to the pixel beside it.
        v1 = pipe.valid(take, "v1")
        x1 = [pipe.reg(self.pixels.payload[i], f"x1_{i}") for i in range(pi)]
        w1 = [Signal(weight_shape(arch), name=f"w1_{k}") for k in range(pi * po)]
        with m.If(take & first_pixel):
            m.d.sync += [w1[k].eq(self.weights.payload[k]) for k in range(pi * po)]
        side1 = [pipe.reg(first_pixel, "first1"), pipe.reg(tile == 0, "first_tile1"),
                 pipe.reg(last_tile, "last_tile1")]

        # Stage 2: products; then the adder tree across Pi.
        v2 = pipe.valid(v1, "v2")
        side2 = [pipe.reg(s, f"side{k}_2") for k, s in enumerate(side1)]
        psums = []
        for j in range(po):
            products = [multiply(m, pipe, x1[i], w1[j * pi + i], arch, f"mul_{j}_{i}")
                        for i in range(pi)]
            total, latency = pipe.tree(products, f"tree{j}")
            psums.append(total)
        v3 = pipe.valid_delay(v2, latency, "v_tree")
        first3, first_tile3, last_tile3 = (pipe.delay(s, latency, f"side{k}_tree")
                                           for k, s in enumerate(side2))

        bias = [params[j].bias for j in range(po)]
        acc, vt = accumulate(m, pipe, psums=psums, valid=v3, first=first3,
                             first_tile=first_tile3, last_tile=last_tile3, bias=bias,
                             depth=self.depth, acc_bits=arch.acc_bits)
        requant_tail(m, pipe, acc=acc, valid=vt, lo=cfg.lo, hi=cfg.hi, queue=queue,
                     mult=[params[j].mult for j in range(po)],
                     shift=[params[j].shift for j in range(po)],
                     acc_bits=arch.acc_bits, arch=arch)
        finished = draining & pipe.empty & ~queue.busy
        m.d.comb += self.done.eq(finished)
        with m.If(finished):
            m.d.sync += draining.eq(0)
        return m
