"""Max / average pooling unit, bypassable, one pixel per cycle.

The unit takes a feature map in raster order, one pixel (a vector of ``lanes``
channels) per beat, and emits the pooled map in raster order. Pooling is
separable, so it reduces each column of the window first (the current pixel
and the same column of the previous one or two rows, held in a line memory)
and then the last two or three column results held in registers. Average
pooling is a window sum followed by :class:`~hw.blocks.requant.RequantUnit`
(``clamp(round_shift(sum * m, s), lo, hi)``), bit-exact with
``sim.golden.avg_pool2d``; max pooling matches ``sim.golden.max_pool2d``.

Padding is generated inside the unit: padded positions cost a cycle each but
consume no input beat; they count as the smallest activation for max pooling
(so they never win) and as zero for average pooling (``count_include_pad``).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..isa import qrange
from ..timing import POOL_UNIT_LATENCY
from .requant import RequantUnit

__all__ = ["PoolMode", "PoolUnit", "window_bits"]


def window_bits(act_bits: int) -> int:
    """Bits of a window's sum (up to 9 elements of ``act_bits``): the requantizer's input."""
    return act_bits + 4


class PoolMode(enum.Enum, shape=2):
    """Operation of :class:`PoolUnit`."""

    #: Every input beat is passed to the output untouched.
    BYPASS = 0
    #: Window maximum.
    MAX = 1
    #: Window sum rescaled by ``m``, ``s`` and clamped to ``lo``, ``hi``.
    AVG = 2


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer between {lo} and {hi}, not {value!r}")


#: Largest padding on any side (pads must be smaller than the 3x3 kernel).
MAX_PAD = 2


class PoolUnit(wiring.Component):
    """Streaming 2x2 / 3x3 max or average pooling with stride 1 or 2.

    Parameters
    ----------
    lanes : int
        Channels per pixel beat (1 to 1024).
    act_bits : int
        Signed activation width (2 to 32).
    max_width, max_height : int
        Largest input frame (before padding), 1 to 4096.
    mult_bits, shift_bits : int
        Widths of the average-pooling multiplier ``m`` (1 to 32) and shift ``s``
        (1 to 7).

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(act_bits), lanes)))``
        Input pixels in raster order, lane ``c`` = channel ``c``.
    o : ``Out(stream.Signature(ArrayLayout(signed(act_bits), lanes)))``
        Output pixels in raster order.
    cfg : ``In(config_layout)``
        Frame configuration (fields below). It is sampled when the first beat of
        a frame is offered on ``i`` (``i.valid`` high with the frame counters at
        the origin) and applies to that whole frame; its values travel with the
        pixels, so the next frame may use another configuration while this one
        drains. In ``BYPASS`` every beat is a frame of its own.

        - ``mode`` (:class:`PoolMode`)
        - ``kernel``: 3 for 3x3, any other value 2x2
        - ``stride``: 2 for stride 2, any other value stride 1
        - ``width``, ``height``: input frame size, 1 to ``max_width`` /
          ``max_height``
        - ``pad_top``, ``pad_left``, ``pad_bottom``, ``pad_right``: 0 to
          ``kernel - 1``
        - ``m``, ``s``, ``lo``, ``hi``: requantization of the window sums (``AVG``
          only; ``lo <= hi``)

        The output frame is ``(height + pad_top + pad_bottom - kernel) // stride
        + 1`` by the same along the width (``ONNX`` floor mode).

    Throughput: one padded-frame position per cycle, i.e. ``(height + pads) x
    (width + pads)`` cycles per frame without back-pressure. Latency
    :attr:`latency` (7) cycles from the beat that completes a window to its
    result on ``o``; in ``BYPASS``, from each input beat to the same beat out.
    The pipeline stalls as a whole under back-pressure.
    """

    latency = POOL_UNIT_LATENCY

    def __init__(self, lanes, act_bits, max_width, max_height, mult_bits=16, shift_bits=6):
        _check_int("lanes", lanes, 1, 1024)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("max_width", max_width, 1, 4096)
        _check_int("max_height", max_height, 1, 4096)
        _check_int("mult_bits", mult_bits, 1, 32)
        _check_int("shift_bits", shift_bits, 1, 7)
        self._lanes = lanes
        self._act_bits = act_bits
        self._max_width = max_width
        self._max_height = max_height
        self._mult_bits = mult_bits
        self._shift_bits = shift_bits
        self._pixel_layout = data.ArrayLayout(signed(act_bits), lanes)
        self._config_layout = data.StructLayout({
            "mode": PoolMode,
            "kernel": unsigned(2),
            "stride": unsigned(2),
            "width": range(max_width + 1),
            "height": range(max_height + 1),
            "pad_top": unsigned(2),
            "pad_left": unsigned(2),
            "pad_bottom": unsigned(2),
            "pad_right": unsigned(2),
            "m": unsigned(mult_bits),
            "s": unsigned(shift_bits),
            "lo": signed(act_bits),
            "hi": signed(act_bits),
        })
        super().__init__({
            "i": In(stream.Signature(self._pixel_layout)),
            "o": Out(stream.Signature(self._pixel_layout)),
            "cfg": In(self._config_layout),
        })

    @property
    def config_layout(self):
        return self._config_layout

    @property
    def pixel_layout(self):
        return self._pixel_layout

    @property
    def lanes(self):
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        n, a_bits = self._lanes, self._act_bits
        qmin, qmax = qrange(a_bits)
        col_bits = a_bits + 2       # sum of up to 3 rows
        win_bits = window_bits(a_bits)

        m.submodules.requant = rq = RequantUnit(
            n, win_bits, a_bits, self._mult_bits, self._shift_bits, per_channel=False)
        advance = Signal()
        out_valid = Signal()
        m.d.comb += advance.eq(~out_valid | rq.i.ready)

        # Stage 0: padded-frame position counters and pixel generation. -----------------
        col = Signal(range(self._max_width + 2 * MAX_PAD + 1))
        row = Signal(range(self._max_height + 2 * MAX_PAD + 1))
        first = Signal(init=1)          # the counters are at the origin
        latched = Signal(self._config_layout)
        cfg = Signal(self._config_layout)
        m.d.comb += cfg.eq(Mux(first, self.cfg, latched))
        # The position's flags (in padding, last column, last row) are registers, set with
        # the counters for the position they move to: past the origin no compare lies
        # between the counters and the handshake or the counters' enables. They come from
        # compares of the counters with the frame's bounds (derived when its first beat is
        # taken and held with it), taken in parallel with the handshake. At the origin, and
        # for the position after it, they reduce to checks of the configuration's fields
        # that need no adder.
        col_last_m1 = Signal(len(col) + 1)  # padded width - 2
        row_last_m1 = Signal(len(row) + 1)  # padded height - 2
        col_end_m1 = Signal(len(col) + 1)   # pad_left + width - 1: last real column
        row_end_m1 = Signal(len(row) + 1)   # pad_top + height - 1: last real row
        narrow = Signal()                   # padded width 1: every column is the last
        pad_c, pad_r = Signal(), Signal()
        last_c, last_r = Signal(), Signal()

        bypass = cfg.mode == PoolMode.BYPASS
        k3 = cfg.kernel == 3
        reach = Mux(k3, 2, 1)               # kernel - 1
        c0 = self.cfg
        in_pad = Signal()
        at_col_last = Signal()
        at_row_last = Signal()

        def padded_is(size, lo, hi, n_):
            """``size + lo + hi == n_`` for ``n_`` of 1 or 2 without an adder (``size``
            at least 1)."""
            if n_ == 1:
                return (size == 1) & (lo == 0) & (hi == 0)
            return (((size == 2) & (lo == 0) & (hi == 0))
                    | ((size == 1) & (((lo == 1) & (hi == 0)) | ((lo == 0) & (hi == 1)))))

        with m.If(first):
            m.d.comb += [
                in_pad.eq(~bypass & ((c0.pad_left != 0) | (c0.pad_top != 0))),
                at_col_last.eq(padded_is(c0.width, c0.pad_left, c0.pad_right, 1)),
                at_row_last.eq(padded_is(c0.height, c0.pad_top, c0.pad_bottom, 1)),
            ]
        with m.Else():
            m.d.comb += [
                in_pad.eq(~bypass & (pad_c | pad_r)),
                at_col_last.eq(last_c),
                at_row_last.eq(last_r),
            ]
        # The next position's flags, for each way the counters can move.
        step_pad_c, step_last_c = Signal(), Signal()   # to col + 1
        down_pad_r, down_last_r = Signal(), Signal()   # to row + 1
        with m.If(first):
            m.d.comb += [
                step_pad_c.eq((c0.pad_left == 2) | ((c0.pad_left == 0) & (c0.width == 1))),
                step_last_c.eq(padded_is(c0.width, c0.pad_left, c0.pad_right, 2)),
                down_pad_r.eq((c0.pad_top == 2) | ((c0.pad_top == 0) & (c0.height == 1))),
                down_last_r.eq(padded_is(c0.height, c0.pad_top, c0.pad_bottom, 2)),
            ]
        with m.Else():
            m.d.comb += [
                step_pad_c.eq(((col == 0) & (latched.pad_left == 2)) | (col >= col_end_m1)),
                step_last_c.eq(col == col_last_m1),
                down_pad_r.eq(((row == 0) & (latched.pad_top == 2)) | (row >= row_end_m1)),
                down_last_r.eq(row == row_last_m1),
            ]
        # A frame starts only once its first real beat is offered, so that its
        # configuration is known even when it begins with padding.
        gen_valid = Signal()
        m.d.comb += [
            gen_valid.eq(Mux(in_pad & ~first, 1, self.i.valid)),
            self.i.ready.eq(advance & ~in_pad),
        ]
        phase = ~k3                          # parity of kernel - 1
        emit = Signal()
        m.d.comb += emit.eq(bypass | (
            (row >= reach) & (col >= reach)
            & ((cfg.stride != 2) | ((row[0] == phase) & (col[0] == phase)))))
        pad_value = Mux(cfg.mode == PoolMode.MAX, qmin, 0)
        pixel = Signal(self._pixel_layout)
        for k in range(n):
            m.d.comb += pixel[k].eq(Mux(in_pad, pad_value, self.i.payload[k]))

        with m.If(advance & gen_valid):
            m.d.sync += latched.eq(cfg)
            with m.If(first):
                m.d.sync += [
                    col_last_m1.eq(c0.width + c0.pad_left + c0.pad_right - 2),
                    row_last_m1.eq(c0.height + c0.pad_top + c0.pad_bottom - 2),
                    col_end_m1.eq(c0.pad_left + c0.width - 1),
                    row_end_m1.eq(c0.pad_top + c0.height - 1),
                    narrow.eq(at_col_last),
                ]
            with m.If(~bypass):
                with m.If(at_col_last):
                    # to column 0 (never past the last real column: width >= 1)
                    m.d.sync += [col.eq(0), pad_c.eq(cfg.pad_left != 0),
                                 last_c.eq(Mux(first, 1, narrow))]
                    with m.If(at_row_last):
                        m.d.sync += [row.eq(0), first.eq(1)]
                    with m.Else():
                        m.d.sync += [row.eq(row + 1), first.eq(0),
                                     pad_r.eq(down_pad_r), last_r.eq(down_last_r)]
                with m.Else():
                    m.d.sync += [col.eq(col + 1), first.eq(0),
                                 pad_c.eq(step_pad_c), last_c.eq(step_last_c)]
                    with m.If(first):
                        # staying on row 0
                        m.d.sync += [
                            pad_r.eq(c0.pad_top != 0),
                            last_r.eq(padded_is(c0.height, c0.pad_top, c0.pad_bottom, 1)),
                        ]

        # Line memory: each word holds column ``col`` of rows r-1 (low) and r-2 (high).
        line_bits = n * a_bits
        m.submodules.lines = lines = Memory(
            shape=unsigned(2 * line_bits), depth=self._max_width + 2 * MAX_PAD, init=[])
        # The read is of ``col`` and the write of the column before it (``col1``): they
        # fall on one word only in a frame one padded column wide, which emits nothing
        # (a window needs ``col >= kernel - 1``). So the read needs no bypass of the
        # write (no transparency logic between the memory and the reductions).
        wr = lines.write_port()
        rd = lines.read_port()
        m.d.comb += [rd.addr.eq(col), rd.en.eq(advance)]

        # Stage 1: the pixel, with the line memory's column arriving alongside. --------
        v1, emit1 = Signal(), Signal()
        x1 = Signal(self._pixel_layout)
        col1 = Signal.like(col)
        # Past stage 0 only what the reductions and the requantizer need travels along.
        stage_layout = data.StructLayout({
            "mode": PoolMode, "k3": 1,
            "m": unsigned(self._mult_bits), "s": unsigned(self._shift_bits),
            "lo": signed(a_bits), "hi": signed(a_bits),
        })
        cfg1 = Signal(stage_layout)
        with m.If(advance):
            m.d.sync += [v1.eq(gen_valid), emit1.eq(emit), x1.eq(pixel), col1.eq(col),
                         cfg1.mode.eq(cfg.mode), cfg1.k3.eq(k3), cfg1.m.eq(cfg.m),
                         cfg1.s.eq(cfg.s), cfg1.lo.eq(cfg.lo), cfg1.hi.eq(cfg.hi)]
        up1 = data.ArrayLayout(signed(a_bits), n)(rd.data[:line_bits])
        up2 = data.ArrayLayout(signed(a_bits), n)(rd.data[line_bits:])
        m.d.comb += [
            wr.addr.eq(col1),
            wr.data.eq(Cat(x1.as_value(), rd.data[:line_bits])),
            wr.en.eq(advance & v1 & (cfg1.mode != PoolMode.BYPASS)),
        ]

        # Stage 2: column reduction. --------------------------------------------------
        v2, emit2 = Signal(), Signal()
        cfg2 = Signal(stage_layout)
        colv2 = [Signal(signed(col_bits), name=f"colv{k}") for k in range(n)]
        mode1, k3_1 = cfg1.mode, cfg1.k3
        with m.If(advance):
            m.d.sync += [v2.eq(v1), emit2.eq(emit1), cfg2.eq(cfg1)]
            for k in range(n):
                _reduce3(m, mode1, k3_1, x1[k], up1[k], up2[k], qmin, colv2[k])

        # Stage 3: row reduction over the last column results; feeds the requantizer. --
        h1 = [Signal(signed(col_bits), name=f"h1_{k}") for k in range(n)]
        h2 = [Signal(signed(col_bits), name=f"h2_{k}") for k in range(n)]
        win3 = [Signal(signed(win_bits), name=f"win{k}") for k in range(n)]
        mode2, k3_2 = cfg2.mode, cfg2.k3
        avg2 = mode2 == PoolMode.AVG
        rq_m = Signal(unsigned(self._mult_bits))
        rq_s = Signal(unsigned(self._shift_bits))
        rq_lo = Signal(signed(a_bits))
        rq_hi = Signal(signed(a_bits))
        with m.If(advance):
            m.d.sync += out_valid.eq(v2 & emit2)
            # Max and bypass results already fit the output: rescale by identity.
            m.d.sync += [
                rq_m.eq(Mux(avg2, cfg2.m, 1)),
                rq_s.eq(Mux(avg2, cfg2.s, 0)),
                rq_lo.eq(Mux(avg2, cfg2.lo, qmin)),
                rq_hi.eq(Mux(avg2, cfg2.hi, qmax)),
            ]
            for k in range(n):
                with m.If(v2):
                    m.d.sync += [h1[k].eq(colv2[k]), h2[k].eq(h1[k])]
                _reduce3(m, mode2, k3_2, colv2[k], h1[k], h2[k], qmin, win3[k])

        m.d.comb += [
            rq.i.valid.eq(out_valid),
            rq.m.eq(rq_m), rq.s.eq(rq_s), rq.lo.eq(rq_lo), rq.hi.eq(rq_hi),
        ]
        for k in range(n):
            m.d.comb += rq.i.payload.acc[k].eq(win3[k])
        m.d.comb += [
            self.o.valid.eq(rq.o.valid),
            self.o.payload.eq(rq.o.payload.y),
            rq.o.ready.eq(self.o.ready),
        ]
        return m


def _reduce3(m, mode, k3, a, b, c, qmin, target):
    """Register into ``target`` the max (``MAX``) or sum (``AVG``) of ``a``, ``b`` and, for a
    3-wide window (``k3``), ``c``; or ``a`` itself (bypass). Used for both the column and
    the row reduction, ``a`` being the newest value. The max compares the three pairs
    side by side and then selects: one compare and two multiplexers deep, not a compare
    after a select. The kernel flag selects after the compares (``x > qmin`` is ``x !=
    qmin``), so the configuration's fan-out does not lead into a compare's carry chain."""
    oldest = Mux(k3, c, qmin)
    a_b = a > b
    a_c = Mux(k3, a > c, a != qmin)
    b_c = Mux(k3, b > c, b != qmin)
    with m.Switch(mode):
        with m.Case(PoolMode.MAX):
            m.d.sync += target.eq(Mux(a_b, Mux(a_c, a, oldest), Mux(b_c, b, oldest)))
        with m.Case(PoolMode.AVG):
            m.d.sync += target.eq(a + b + Mux(k3, c, 0))
        with m.Default():
            m.d.sync += target.eq(a)
