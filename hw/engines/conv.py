"""Convolution engine: the Aristotle processing element.

``Pi`` input channels of one pixel stream into a window generator (line buffers shared
by all convolvers); ``Pi x Po`` KxK convolvers multiply the windows by their kernels; for
each of the ``Po`` output channels an adder tree sums the ``Pi`` convolver results; an
output buffer feeds the partial sums of one input-channel tile back to be added to the
next; after the last tile, bias, requantization, activation and (optionally) pooling
finish the output in the same pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.line_buffer import WindowGenerator
from ..blocks.pool import PoolMode, PoolUnit
from ..isa import qrange
from ..timing import conv_engine_latency, output_queue_depth
from .datapath import (
    TILE_BITS,
    JobControl,
    KernelLoader,
    OutputQueue,
    Pipeline,
    accumulate,
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

__all__ = ["ConvEngine"]


def _pool_fields(arch):
    return {
        "pool_mode": PoolMode,
        "pool_kernel": unsigned(2),
        "pool_stride": unsigned(2),
        "pool_pad_top": unsigned(2),
        "pool_pad_left": unsigned(2),
        "pool_pad_bottom": unsigned(2),
        "pool_pad_right": unsigned(2),
        "pool_mult": unsigned(arch.mult_bits),
        "pool_shift": unsigned(arch.shift_bits),
        "pool_lo": signed(arch.act_bits),
        "pool_hi": signed(arch.act_bits),
    }


class ConvEngine(wiring.Component):
    """Pi x Po KxK convolvers with an output buffer across input-channel tiles.

    A job computes one group of ``Po`` output channels of a convolution over every input
    channel of the layer, on one input tile of at most ``max_width x max_height`` pixels
    (padding included).
    The engine loops over ``cin_tiles`` tiles of ``Pi`` input channels: it loads the
    tile's kernels, streams the tile's pixels through the window generator (one pixel
    per cycle; the ``Pi x Po`` convolvers produce ``Po`` partial sums per
    window) and accumulates the partial sums of each output pixel in the output buffer;
    the last tile adds them to the earlier ones, starting from the bias, and sends them
    through requantization / activation (and pooling) to ``o``.

    A kernel ``K`` smaller than ``conv_k_max`` runs on the full-size convolvers with the
    small kernel in the centre of zero taps and ``(conv_k_max - K) / 2`` more padding on
    each side (the same windows), so the MAC count per cycle is always
    ``Pi * Po * conv_k_max**2``.

    Input channels beyond the layer's (the last tile when ``Pi`` does not divide
    ``Cin``) must carry zero weights; output lanes beyond ``Cout`` (the last group) are
    discarded by the consumer.

    A command outside the documented ranges gives unspecified results, possibly a job
    that never completes: the compiler checks every layer against them, and a fixed
    ``config`` is checked at construction.

    Parameters
    ----------
    arch : ArchConfig, optional
        ``conv_pi``, ``conv_po``, ``conv_k_max``, widths, ``weight_scheme``; tiles up to
        ``max_width x max_height`` (padding included); the output buffer holds
        ``max_width * max_height`` output pixels.
    pool : bool
        Fuse a :class:`hw.blocks.pool.PoolUnit` (2x2 / 3x3 max or average, or bypass)
        after the activation; adds the ``pool_*`` command fields.
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

        ``width``, ``height``
            Input tile size before padding, 1 to ``max_width`` / ``max_height``.
        ``kernel``
            Odd kernel size ``K``, 1 to ``conv_k_max``.
        ``stride``
            1 or 2.
        ``pad_top``, ``pad_left``, ``pad_bottom``, ``pad_right``
            Zero padding, 0 to ``K - 1`` each; the padded tile is at least ``K`` and at
            most ``max_width`` / ``max_height`` each way.
            The output is ``out_h x out_w`` with ``out_w = (width + pad_left +
            pad_right - K) // stride + 1`` (likewise ``out_h``), at most
            ``max_width * max_height`` pixels.
        ``cin_tiles`` (``unsigned(TILE_BITS)``)
            ``ceil(Cin / Pi)``, at least 1.
        ``lo``, ``hi`` (``signed(act_bits)``)
            Clamp bounds of the convolution output (its activation), ``lo <= hi``.
        ``pool_mode``, ``pool_kernel``, ``pool_stride``, ``pool_pad_*``, ``pool_mult``,
        ``pool_shift``, ``pool_lo``, ``pool_hi``
            With ``pool=True`` only: the ``PoolUnit`` configuration (mode, kernel 2 or 3,
            stride, padding, average-pool requantization) applied to the
            ``out_h x out_w`` result.
    params : ``In(stream.Signature(ArrayLayout(param_layout, Po)))``
        One beat per job, taken first: lane ``j`` holds ``bias``, ``mult`` and ``shift``
        of output channel ``j`` of the group.
    weights : ``In(stream.Signature(ArrayLayout(weight, Pi * Po)))``
        ``K * K`` beats per tile, before the tile's windows are computed, over
        ``(tile, ky, kx)`` with ``kx`` fastest; lane ``j * Pi + i`` is the weight from
        input channel ``tile * Pi + i`` to output channel ``j`` of the group at tap
        ``(ky, kx)``. ``weight`` is ``signed(weight_bits)`` for uniform weights, else the
        unsigned code of :mod:`hw.weight_codes`.
    pixels : ``In(stream.Signature(ArrayLayout(signed(act_bits), Pi)))``
        ``cin_tiles * width * height`` beats: for each tile, the tile's pixels in raster
        order, lane ``i`` input channel ``tile * Pi + i``.
    o : ``Out(stream.Signature(ArrayLayout(signed(act_bits), Po)))``
        The output pixels of the group in raster order (pooled, with ``pool``), lane
        ``j`` output channel ``j`` of the group.
    busy : ``Out(1)``
        High from the accepted command until the last output beat is taken.
    done : ``Out(1)``
        One-cycle pulse after the last output beat of a job was taken.

    Throughput: ``Pi * Po * K_max * K_max`` MACs per cycle, one window per cycle. A tile
    takes about one cycle per input pixel (plus bottom padding rows), plus ``K * K``
    cycles of weight loading and a few cycles of turnaround; the job adds
    :attr:`latency` cycles of pipeline drain.
    """

    def __init__(self, arch: ArchConfig | None = None, *, pool=False, config=None,
                 **overrides):
        arch = check_arch(arch, overrides)
        if not isinstance(pool, bool):
            raise TypeError(f"pool must be a bool, not {pool!r}")
        if arch.max_width < arch.conv_k_max or arch.max_height < arch.conv_k_max:
            raise ValueError(f"Arch parameters max_width and max_height must be at least "
                             f"conv_k_max={arch.conv_k_max}, not "
                             f"{arch.max_width!r}x{arch.max_height!r}")
        self.arch = arch
        self.pi = arch.conv_pi
        self.po = arch.conv_po
        self.k_max = arch.conv_k_max
        self.pool = pool
        self.depth = arch.max_width * arch.max_height
        lo, hi = qrange(arch.act_bits)
        fields = frame_fields(arch, self.k_max)
        fields.update({
            "cin_tiles": unsigned(TILE_BITS),
            "lo": signed(arch.act_bits),
            "hi": signed(arch.act_bits),
        })
        if pool:
            fields.update(_pool_fields(arch))
        self.cmd_layout = data.StructLayout(fields)
        checks = frame_checks(arch, self.k_max)
        checks.update({"cin_tiles": (1, (1 << TILE_BITS) - 1), "lo": (lo, hi), "hi": (lo, hi)})
        if pool:
            checks.update({"pool_mode": (0, 2), "pool_kernel": ("one of", (2, 3)),
                           "pool_stride": ("one of", (1, 2)), "pool_pad_top": (0, 2),
                           "pool_pad_left": (0, 2), "pool_pad_bottom": (0, 2),
                           "pool_pad_right": (0, 2), "pool_lo": (lo, hi), "pool_hi": (lo, hi)})
        self.config = check_fixed(self.cmd_layout, config, checks)
        check_frame(arch, self.k_max, self.config)
        if self.config is not None and pool:
            self.config["pool_mode"] = PoolMode(self.config["pool_mode"])
        if self.config is not None and self.config["lo"] > self.config["hi"]:
            raise ValueError(f"config lo must be at most hi={self.config['hi']}, "
                             f"not {self.config['lo']!r}")
        self.param_layout = data.ArrayLayout(param_layout(arch), self.po)
        members = {
            "params": In(stream.Signature(self.param_layout)),
            "weights": In(stream.Signature(data.ArrayLayout(weight_shape(arch),
                                                            self.pi * self.po))),
            "pixels": In(stream.Signature(data.ArrayLayout(signed(arch.act_bits), self.pi))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(arch.act_bits), self.po))),
            "busy": Out(1),
            "done": Out(1),
        }
        if self.config is None:
            members["cmd"] = In(stream.Signature(self.cmd_layout))
        super().__init__(members)

    @property
    def tree_latency(self):
        return (self.pi * self.k_max * self.k_max - 1).bit_length()

    @property
    def latency(self):
        """Cycles from taking a window of the last tile to its output's ``valid``."""
        # window register, products, adder tree, buffer read, add, requantize
        return conv_engine_latency(self.pi, self.k_max, self.pool)

    def elaborate(self, platform):
        m = Module()
        arch, pi, po, k = self.arch, self.pi, self.po, self.k_max
        pipe = Pipeline(m)

        loading = Signal()    # waiting for the parameter beat
        weighing = Signal()   # taking the weights of a tile
        running = Signal()    # taking the windows of a tile
        draining = Signal()
        m.d.comb += self.busy.eq(loading | weighing | running | draining)
        job = JobControl(m, self.cmd_layout, getattr(self, "cmd", None), self.config,
                         ~self.busy)
        cfg = job.cfg
        out_w, out_h = output_size(cfg)
        windows, last_window_index = job_total(m, out_w, out_h, range(self.depth + 1),
                                                 "windows")

        params = Signal(self.param_layout)
        weights = [[[[Signal(weight_shape(arch), name=f"w_{j}_{i}_{r}_{c}",
                             init=weight_zero(arch))
                      for c in range(k)] for r in range(k)] for i in range(pi)]
                   for j in range(po)]
        m.d.comb += self.params.ready.eq(loading)
        with m.If(job.start):
            m.d.sync += loading.eq(1)
        with m.If(self.params.valid & loading):
            m.d.sync += [params.eq(self.params.payload), loading.eq(0), weighing.eq(1)]
            # Taps outside a kernel smaller than k_max must multiply by zero.
            for wj in weights:
                for wi in wj:
                    for wr in wi:
                        m.d.sync += [w.eq(weight_zero(arch)) for w in wr]

        # The window generator takes every tile's geometry ahead of its pixels.
        m.submodules.windows = wg = WindowGenerator(k, arch.act_bits, lanes=pi,
                                                    max_width=arch.max_width,
                                                    max_height=arch.max_height)
        wiring.connect(m, wiring.flipped(self.pixels), wg.i)
        window_config(m, wg, cfg, k)
        frames_left = Signal(TILE_BITS)
        m.d.comb += wg.cfg.valid.eq(frames_left != 0)
        # cfg holds the job from the cycle after job.start, when the parameters load.
        with m.If(self.params.valid & loading):
            m.d.sync += frames_left.eq(cfg.cin_tiles)
        with m.Elif(wg.cfg.valid & wg.cfg.ready):
            m.d.sync += frames_left.eq(frames_left - 1)

        # Weights of the next tile load once the previous tile's last window has been
        # multiplied (the products are the first stage after the window register).
        v2 = Signal()
        take_w = weighing & ~v2 & self.weights.valid
        m.d.comb += self.weights.ready.eq(weighing & ~v2)
        loader = KernelLoader(m, cfg, k, take_w, job.start)
        with m.If(take_w):
            for r in range(k):
                for c in range(k):
                    with m.If(loader.tap[r][c]):
                        for j in range(po):
                            for i in range(pi):
                                m.d.sync += weights[j][i][r][c].eq(
                                    self.weights.payload[j * pi + i])
            with m.If(loader.last):
                m.d.sync += [weighing.eq(0), running.eq(1)]

        # The output queue: behind the requantizer, before the pool (if any). A window of
        # the last tile enters only while the queue has room for its output.
        if self.pool:
            act = stream.Signature(data.ArrayLayout(signed(arch.act_bits), po)).create()
        else:
            act = self.o
        queue = OutputQueue(m, act, depth=output_queue_depth(conv_engine_latency(pi, k, False)))

        tile = Signal(TILE_BITS)
        count = Signal(range(self.depth))
        # ``tile == cin_tiles - 1`` as a register kept with the tile count
        last_tile = Signal()
        ready = running & (queue.room | ~last_tile)
        take = ready & wg.o.valid
        m.d.comb += wg.o.ready.eq(ready)
        queue.admit(take & last_tile)
        last_window = count == last_window_index
        with m.If(job.start):
            m.d.sync += [tile.eq(0), count.eq(0)]
        with m.Elif(self.params.valid & loading):
            # cfg holds the job from here on
            m.d.sync += last_tile.eq(cfg.cin_tiles == 1)
        with m.Elif(take):
            m.d.sync += count.eq(count + 1)
            with m.If(last_window):
                m.d.sync += [count.eq(0), tile.eq(tile + 1), running.eq(0),
                             last_tile.eq(tile == cfg.cin_tiles - 2)]
                with m.If(last_tile):
                    m.d.sync += draining.eq(1)
                with m.Else():
                    m.d.sync += weighing.eq(1)

        # Stage 2: the window register.
        m.d.comb += v2.eq(pipe.valid(take, "v2"))
        window = [[[pipe.reg(wg.o.payload[i][r][c], f"win_{i}_{r}_{c}") for c in range(k)]
                   for r in range(k)] for i in range(pi)]
        side2 = [pipe.reg(count == 0, "first2"), pipe.reg(tile == 0, "first_tile2"),
                 pipe.reg(last_tile, "last_tile2")]

        # Stage 3: Pi x Po x K x K products; then one adder tree per output channel.
        v3 = pipe.valid(v2, "v3")
        side3 = [pipe.reg(s, f"side{n}_3") for n, s in enumerate(side2)]
        psums = []
        for j in range(po):
            products = [multiply(m, pipe, window[i][r][c], weights[j][i][r][c], arch,
                                 f"mul_{j}_{i}_{r}_{c}")
                        for i in range(pi) for r in range(k) for c in range(k)]
            total, latency = pipe.tree(products, f"tree{j}")
            psums.append(total)
        v4 = pipe.valid_delay(v3, latency, "v_tree")
        first4, first_tile4, last_tile4 = (pipe.delay(s, latency, f"side{n}_tree")
                                           for n, s in enumerate(side3))

        bias = [params[j].bias for j in range(po)]
        acc, vt = accumulate(m, pipe, psums=psums, valid=v4, first=first4,
                             first_tile=first_tile4, last_tile=last_tile4, bias=bias,
                             depth=self.depth, acc_bits=arch.acc_bits)

        if self.pool:
            m.submodules.pool = pool = PoolUnit(po, arch.act_bits, arch.max_width,
                                                arch.max_height, arch.mult_bits,
                                                arch.shift_bits)
            # the pool takes the queue's output (registers)
            wiring.connect(m, act, pool.i)
            wiring.connect(m, pool.o, wiring.flipped(self.o))
            # The pool takes the conv's output size from registers (its frame-position
            # checks do not start at the output-size adders); set a cycle after the job's
            # configuration, long before its first output.
            out_w_r = Signal.like(out_w, name="pool_in_w")
            out_h_r = Signal.like(out_h, name="pool_in_h")
            m.d.sync += [out_w_r.eq(out_w), out_h_r.eq(out_h)]
            pc = pool.cfg
            m.d.comb += [
                pc.mode.eq(cfg.pool_mode), pc.kernel.eq(cfg.pool_kernel),
                pc.stride.eq(cfg.pool_stride), pc.width.eq(out_w_r), pc.height.eq(out_h_r),
                pc.pad_top.eq(cfg.pool_pad_top), pc.pad_left.eq(cfg.pool_pad_left),
                pc.pad_bottom.eq(cfg.pool_pad_bottom), pc.pad_right.eq(cfg.pool_pad_right),
                pc.m.eq(cfg.pool_mult), pc.s.eq(cfg.pool_shift),
                pc.lo.eq(cfg.pool_lo), pc.hi.eq(cfg.pool_hi),
            ]
            pk = (cfg.pool_kernel == 3) + 2
            ps2 = cfg.pool_stride == 2
            pool_w = ((out_w_r + cfg.pool_pad_left + cfg.pool_pad_right - pk) >> ps2) + 1
            pool_h = ((out_h_r + cfg.pool_pad_top + cfg.pool_pad_bottom - pk) >> ps2) + 1
            pooled, _ = job_total(m, pool_w, pool_h, range(self.depth + 1), "pooled")
            outputs = Signal.like(windows)
            with m.If(cfg.pool_mode == PoolMode.BYPASS):
                m.d.comb += outputs.eq(windows)
            with m.Else():
                m.d.comb += outputs.eq(pooled)
        else:
            outputs = windows
        requant_tail(m, pipe, acc=acc, valid=vt, lo=cfg.lo, hi=cfg.hi, queue=queue,
                     mult=[params[j].mult for j in range(po)],
                     shift=[params[j].shift for j in range(po)],
                     acc_bits=arch.acc_bits, arch=arch)

        # The job is done when its last output beat has been taken.
        count_done(m, o=self.o, start=job.start, draining=draining, beats=outputs,
                   done=self.done)
        return m
