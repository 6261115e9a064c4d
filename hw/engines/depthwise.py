"""Depthwise convolution engine: one KxK convolver per channel, no cross-channel sum."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.line_buffer import WindowGenerator
from ..isa import qrange
from ..timing import depthwise_engine_latency, output_queue_depth
from .datapath import (
    JobControl,
    KernelLoader,
    OutputQueue,
    Pipeline,
    check_arch,
    check_fixed,
    check_frame,
    count_done,
    frame_checks,
    frame_fields,
    job_total,
    multiply,
    output_size,
    param_layout,
    requant_tail,
    weight_shape,
    weight_zero,
    window_config,
)

__all__ = ["DepthwiseEngine"]


class DepthwiseEngine(wiring.Component):
    """``C`` channels of KxK depthwise convolution in parallel (``C = dw_channels``).

    A job convolves one group of ``C`` channels over one input tile of at most
    ``max_width x max_height`` pixels (padding included): it loads the ``C`` kernels,
    streams the tile's pixels through the window generator (one pixel per cycle) and, per
    window, adds each channel's ``K x K`` products to its bias, requantizes, clamps and
    sends the ``C`` results. A kernel smaller than ``conv_k_max`` runs in the centre of
    zero taps, as in :class:`hw.engines.conv.ConvEngine`. Channels beyond the layer's
    (the last group) carry zero weights and are discarded by the consumer.

    A command outside the documented ranges gives unspecified results, possibly a job
    that never completes: the compiler checks every layer against them, and a fixed
    ``config`` is checked at construction.

    Parameters
    ----------
    arch : ArchConfig, optional
        ``dw_channels``, ``conv_k_max`` (the largest kernel), widths, ``weight_scheme``,
        tiles up to ``max_width x max_height`` (padding included).
    config : dict, optional
        Fixed configuration (SESL): a value for every field of :attr:`cmd_layout`; the
        engine then has no ``cmd`` port and starts a new job as soon as one is done.
    **overrides
        ``ArchConfig`` fields replacing those of ``arch``.

    Members
    -------
    cmd : ``In(stream.Signature(cmd_layout))``
        Without ``config`` only. One beat per job, accepted while idle (``cmd.ready`` is
        ``~busy``): ``width``, ``height``, ``kernel``, ``stride``, ``pad_top``,
        ``pad_left``, ``pad_bottom``, ``pad_right`` as for
        :class:`hw.engines.conv.ConvEngine`, and the clamp bounds ``lo``, ``hi``.
    params : ``In(stream.Signature(ArrayLayout(param_layout, C)))``
        One beat per job, taken first: lane ``c`` holds ``bias``, ``mult`` and ``shift``
        of channel ``c`` of the group.
    weights : ``In(stream.Signature(ArrayLayout(weight, C)))``
        ``K * K`` beats per job over ``(ky, kx)``, ``kx`` fastest; lane ``c`` is tap
        ``(ky, kx)`` of channel ``c``. ``weight`` is ``signed(weight_bits)`` for uniform
        weights, else the unsigned code of :mod:`hw.weight_codes`.
    pixels : ``In(stream.Signature(ArrayLayout(signed(act_bits), C)))``
        ``width * height`` beats in raster order, lane ``c`` channel ``c`` of the group.
    o : ``Out(stream.Signature(ArrayLayout(signed(act_bits), C)))``
        ``out_h * out_w`` beats in raster order, lane ``c`` channel ``c``.
    busy : ``Out(1)``
        High from the accepted command until the last output beat is taken.
    done : ``Out(1)``
        One-cycle pulse after the last output beat of a job was taken.

    Throughput: ``C * K_max * K_max`` MACs per cycle, one window per cycle; a job takes
    about one cycle per input pixel (plus bottom padding rows), ``K * K`` cycles of
    weight loading and :attr:`latency` cycles of drain.
    """

    def __init__(self, arch: ArchConfig | None = None, *, config=None, **overrides):
        arch = check_arch(arch, overrides)
        if arch.max_width < arch.conv_k_max or arch.max_height < arch.conv_k_max:
            raise ValueError(f"Arch parameters max_width and max_height must be at least "
                             f"conv_k_max={arch.conv_k_max}, not "
                             f"{arch.max_width!r}x{arch.max_height!r}")
        self.arch = arch
        self.channels = arch.dw_channels
        self.k_max = arch.conv_k_max
        self.depth = arch.max_width * arch.max_height
        lo, hi = qrange(arch.act_bits)
        fields = frame_fields(arch, self.k_max)
        fields.update({"lo": signed(arch.act_bits), "hi": signed(arch.act_bits)})
        self.cmd_layout = data.StructLayout(fields)
        checks = frame_checks(arch, self.k_max)
        checks.update({"lo": (lo, hi), "hi": (lo, hi)})
        self.config = check_fixed(self.cmd_layout, config, checks)
        check_frame(arch, self.k_max, self.config)
        if self.config is not None and self.config["lo"] > self.config["hi"]:
            raise ValueError(f"config lo must be at most hi={self.config['hi']}, "
                             f"not {self.config['lo']!r}")
        self.param_layout = data.ArrayLayout(param_layout(arch), self.channels)
        lanes = data.ArrayLayout(signed(arch.act_bits), self.channels)
        members = {
            "params": In(stream.Signature(self.param_layout)),
            "weights": In(stream.Signature(data.ArrayLayout(weight_shape(arch),
                                                            self.channels))),
            "pixels": In(stream.Signature(lanes)),
            "o": Out(stream.Signature(lanes)),
            "busy": Out(1),
            "done": Out(1),
        }
        if self.config is None:
            members["cmd"] = In(stream.Signature(self.cmd_layout))
        super().__init__(members)

    @property
    def tree_latency(self):
        return (self.k_max * self.k_max - 1).bit_length()

    @property
    def latency(self):
        """Cycles from taking a window to its output's ``valid``."""
        # window register, products, adder tree, bias, requantize
        return depthwise_engine_latency(self.k_max)

    def elaborate(self, platform):
        m = Module()
        arch, ch, k = self.arch, self.channels, self.k_max
        pipe = Pipeline(m)

        loading = Signal()    # waiting for the parameter beat
        weighing = Signal()   # taking the weights
        running = Signal()    # taking windows
        draining = Signal()
        m.d.comb += self.busy.eq(loading | weighing | running | draining)
        job = JobControl(m, self.cmd_layout, getattr(self, "cmd", None), self.config,
                         ~self.busy)
        cfg = job.cfg
        out_w, out_h = output_size(cfg)
        windows, last_window_index = job_total(m, out_w, out_h, range(self.depth + 1),
                                                 "windows")

        params = Signal(self.param_layout)
        weights = [[[Signal(weight_shape(arch), name=f"w_{c}_{r}_{col}",
                            init=weight_zero(arch))
                     for col in range(k)] for r in range(k)] for c in range(ch)]
        m.d.comb += self.params.ready.eq(loading)
        configured = Signal()
        with m.If(job.start):
            m.d.sync += loading.eq(1)
        with m.If(self.params.valid & loading):
            m.d.sync += [params.eq(self.params.payload), loading.eq(0), weighing.eq(1),
                         configured.eq(1)]
            # Taps outside a kernel smaller than k_max must multiply by zero.
            for wc in weights:
                for wr in wc:
                    m.d.sync += [w.eq(weight_zero(arch)) for w in wr]

        m.submodules.windows = wg = WindowGenerator(k, arch.act_bits, lanes=ch,
                                                    max_width=arch.max_width,
                                                    max_height=arch.max_height)
        wiring.connect(m, wiring.flipped(self.pixels), wg.i)
        window_config(m, wg, cfg, k)
        # cfg holds the job from the cycle after job.start, when the parameters load.
        m.d.comb += wg.cfg.valid.eq(configured)
        with m.If(wg.cfg.valid & wg.cfg.ready):
            m.d.sync += configured.eq(0)

        # The previous job has fully drained before this one loads its weights.
        take_w = weighing & self.weights.valid
        m.d.comb += self.weights.ready.eq(weighing)
        loader = KernelLoader(m, cfg, k, take_w, job.start)
        with m.If(take_w):
            for r in range(k):
                for c in range(k):
                    with m.If(loader.tap[r][c]):
                        m.d.sync += [weights[lane][r][c].eq(self.weights.payload[lane])
                                     for lane in range(ch)]
            with m.If(loader.last):
                m.d.sync += [weighing.eq(0), running.eq(1)]

        # Every window has an output: one enters only while the output queue has room.
        queue = OutputQueue(m, self.o, depth=output_queue_depth(depthwise_engine_latency(k)))
        count = Signal(range(self.depth))
        take = running & queue.room & wg.o.valid
        m.d.comb += wg.o.ready.eq(running & queue.room)
        queue.admit(take)
        with m.If(job.start):
            m.d.sync += count.eq(0)
        with m.Elif(take):
            m.d.sync += count.eq(count + 1)
            with m.If(count == last_window_index):
                m.d.sync += [running.eq(0), draining.eq(1)]

        # Stage 2: the window register; stage 3: products; then a tree per channel.
        v2 = pipe.valid(take, "v2")
        window = [[[pipe.reg(wg.o.payload[lane][r][c], f"win_{lane}_{r}_{c}")
                    for c in range(k)] for r in range(k)] for lane in range(ch)]
        v3 = pipe.valid(v2, "v3")
        sums = []
        for lane in range(ch):
            products = [multiply(m, pipe, window[lane][r][c], weights[lane][r][c], arch,
                                 f"mul_{lane}_{r}_{c}")
                        for r in range(k) for c in range(k)]
            total, latency = pipe.tree(products, f"tree{lane}")
            sums.append(total)
        v4 = pipe.valid_delay(v3, latency, "v_tree")

        vb = pipe.valid(v4, "v_bias")
        acc = [pipe.reg((sums[lane] + params[lane].bias)[:arch.acc_bits].as_signed(),
                        f"acc_{lane}") for lane in range(ch)]
        requant_tail(m, pipe, acc=acc, valid=vb, lo=cfg.lo, hi=cfg.hi, queue=queue,
                     mult=[params[lane].mult for lane in range(ch)],
                     shift=[params[lane].shift for lane in range(ch)],
                     acc_bits=arch.acc_bits, arch=arch)

        count_done(m, o=self.o, start=job.start, draining=draining, beats=windows,
                   done=self.done)
        return m
