"""Line buffer and KxK window generator: raster pixels in, padded convolution windows out.

A frame arrives one pixel per transfer in raster order (row by row, left to
right); each pixel carries ``lanes`` channels that share the control, e.g. the
``Pi`` input channels of a conv engine. :class:`LineBuffer` keeps the last
``k - 1`` rows in block RAM and emits, per pixel, the ``k``-tall column that
ends at it. :class:`WindowGenerator` shifts those columns into a ``k x k``
register and emits the windows of a (strided, zero padded) convolution, in
raster order of the output.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..arch import KERNEL_SIZES

__all__ = ["KERNEL_SIZES", "LineBuffer", "WindowGenerator"]


def _check_int(name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value!r}")


def _check_params(k, data_width, lanes, max_width, max_height):
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"Kernel size k must be an integer, not {k!r}")
    if k not in KERNEL_SIZES:
        raise ValueError(f"Kernel size k must be one of 1, 3, 5, 7, not {k!r}")
    _check_int("Pixel data_width", data_width, 2)
    _check_int("Lane count lanes", lanes, 1)
    _check_int("Frame max_width", max_width, 1)
    _check_int("Frame max_height", max_height, 1)


class _FrameBlock(wiring.Component):
    """Constructor, parameters and pixel input shared by :class:`LineBuffer` and
    :class:`WindowGenerator`; a subclass supplies ``cfg_layout`` and ``_output_layout``."""

    def __init__(self, k, data_width, *, lanes=1, max_width, max_height):
        _check_params(k, data_width, lanes, max_width, max_height)
        self._k = k
        self._data_width = data_width
        self._lanes = lanes
        self._max_width = max_width
        self._max_height = max_height
        super().__init__({
            "cfg": In(stream.Signature(self.cfg_layout)),
            "i": In(stream.Signature(self.pixel_layout)),
            "o": Out(stream.Signature(self._output_layout)),
        })

    @property
    def k(self):
        return self._k

    @property
    def lanes(self):
        return self._lanes

    @property
    def pixel_layout(self):
        """``ArrayLayout(signed(data_width), lanes)``."""
        return data.ArrayLayout(signed(self._data_width), self._lanes)


class LineBuffer(_FrameBlock):
    """Keeps the last ``k - 1`` rows of a frame and emits one ``k``-tall column per pixel.

    For the pixel at row ``y``, column ``x`` the output column holds rows
    ``y - k + 1 .. y`` of column ``x`` (oldest first). Rows above the frame
    (``y - k + 1 < 0``) read as zero. After the ``height`` input rows the
    buffer appends ``extra_rows`` rows of zero pixels on its own, without input,
    so that windows reaching into a bottom padding can be completed.

    The rows live in one :class:`~amaranth.lib.memory.Memory` of ``max_width``
    words of ``(k - 1) * lanes * data_width`` bits, read and rewritten (shifted
    by one row) at each column: a simple dual-port block RAM. For ``k = 1``
    there is no memory.

    The frame geometry is latched per frame from the ``cfg`` stream, which is
    ready only while no frame is in progress: a frame starts with a ``cfg``
    transfer and ends after the last column of its last row. ``width`` must be
    1 to ``max_width``, ``height`` 1 to ``max_height``, ``extra_rows`` at most
    ``k - 1``.

    Parameters
    ----------
    k : int
        Window height, one of 1, 3, 5, 7.
    data_width : int
        Signed width of one channel of a pixel, at least 2.
    lanes : int
        Channels per pixel.
    max_width, max_height : int
        Largest frame (before padding).

    Members
    -------
    cfg : ``In(stream.Signature(cfg_layout))``
        ``width``, ``height``, ``extra_rows`` of the next frame.
    i : ``In(stream.Signature(ArrayLayout(signed(data_width), lanes)))``
        Pixels in raster order.
    o : ``Out(stream.Signature(column_layout))``
        ``column`` (``ArrayLayout(pixel, k)``, index 0 the top row) and the flags
        ``row_first`` (``x == 0``), ``row_last`` (``x == width - 1``) and
        ``frame_last`` (the last column of the frame).

    Latency is one cycle (a column is valid the cycle after its pixel is
    accepted); throughput one pixel per cycle. Back-pressure stalls the
    buffer; ``i.ready`` follows ``o.ready`` combinationally.
    """

    @property
    def cfg_layout(self):
        return data.StructLayout({
            "width": unsigned(bits_for(self._max_width)),
            "height": unsigned(bits_for(self._max_height)),
            "extra_rows": unsigned(bits_for(self._k - 1)),
        })

    @property
    def column_layout(self):
        return data.StructLayout({
            "column": data.ArrayLayout(self.pixel_layout, self._k),
            "row_first": 1,
            "row_last": 1,
            "frame_last": 1,
        })

    _output_layout = column_layout

    @property
    def latency(self):
        """Cycles from a pixel's acceptance to its column's ``valid``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        k = self._k

        busy = Signal()
        width = Signal(range(self._max_width + 1))
        height = Signal(range(self._max_height + 1))
        rows = Signal(range(self._max_height + k))
        x = Signal(range(self._max_width))
        y = Signal(range(self._max_height + k))

        m.d.comb += self.cfg.ready.eq(~busy)
        with m.If(self.cfg.valid & ~busy):
            m.d.sync += [
                width.eq(self.cfg.payload.width),
                height.eq(self.cfg.payload.height),
                rows.eq(self.cfg.payload.height + self.cfg.payload.extra_rows),
                x.eq(0),
                y.eq(0),
                busy.eq(1),
            ]

        # Stage 1: the accepted pixel, while the block RAM reads the rows above it.
        p1_valid = Signal()
        p1_pixel = Signal(self.pixel_layout)
        p1_x = Signal.like(x)
        p1_above = Signal(max(k - 1, 1))  # bit r: row r of the column lies inside the frame
        p1_row_first = Signal()
        p1_row_last = Signal()
        p1_frame_last = Signal()

        advance = Signal()
        m.d.comb += advance.eq(~p1_valid | self.o.ready)
        virtual = y >= height
        x_last = x == width - 1
        y_last = y == rows - 1
        take = Signal()
        m.d.comb += [
            take.eq(busy & advance & (virtual | self.i.valid)),
            self.i.ready.eq(busy & advance & ~virtual),
        ]
        with m.If(advance):
            m.d.sync += p1_valid.eq(take)
        with m.If(take):
            m.d.sync += [
                p1_x.eq(x),
                p1_row_first.eq(x == 0),
                p1_row_last.eq(x_last),
                p1_frame_last.eq(x_last & y_last),
            ]
            m.d.sync += p1_above.eq(
                sum(((y >= k - 1 - r) << r) for r in range(k - 1)) if k > 1 else 0)
            with m.If(virtual):
                m.d.sync += p1_pixel.eq(0)
            with m.Else():
                m.d.sync += p1_pixel.eq(self.i.payload)
            with m.If(x_last):
                m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.If(y_last):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += x.eq(x + 1)

        column = self.o.payload.column
        m.d.comb += column[k - 1].eq(p1_pixel)
        if k > 1:
            history = data.ArrayLayout(self.pixel_layout, k - 1)
            m.submodules.rows = mem = Memory(shape=history, depth=self._max_width, init=[])
            wr = mem.write_port()
            rd = mem.read_port()
            m.d.comb += [
                rd.addr.eq(x),
                rd.en.eq(advance),
            ]
            # A one-pixel-wide frame reads each column the cycle it is written: its
            # rows come from ``last``, a copy of the last column written, instead of
            # the RAM (which then needs no read-during-write bypass).
            # (``narrow`` is kept with the stage's pixel: the next frame's geometry may
            # be latched while the stage still holds the last column of this one)
            narrow = Signal()
            last = Signal(history)
            with m.If(take):
                m.d.sync += narrow.eq(width == 1)
            for r in range(k - 1):
                with m.If(p1_above[r]):
                    m.d.comb += column[r].eq(Mux(narrow, last[r], rd.data[r]))
            # The RAM's rows are rewritten shifted by one, straight from its own read
            # data (no logic between its output and its input): a row above the frame is
            # written as read, since it is masked again (``p1_above``) whenever read.
            shifted = [rd.data[r + 1] for r in range(k - 2)] + [p1_pixel]
            write = p1_valid & self.o.ready
            m.d.comb += [
                wr.addr.eq(p1_x),
                wr.en.eq(write),
            ]
            for r in range(k - 1):
                m.d.comb += wr.data[r].eq(shifted[r])
            with m.If(write):
                m.d.sync += [last[r].eq(column[r + 1]) for r in range(k - 1)]

        m.d.comb += [
            self.o.valid.eq(p1_valid),
            self.o.payload.row_first.eq(p1_row_first),
            self.o.payload.row_last.eq(p1_row_last),
            self.o.payload.frame_last.eq(p1_frame_last),
        ]
        return m


class WindowGenerator(_FrameBlock):
    """KxK window generator over a :class:`LineBuffer`: zero padding, stride 1 or 2.

    Every ``cfg`` transfer describes one frame; the generator then takes its
    ``width * height`` pixels and emits the ``out_height * out_width`` windows of
    the convolution with the configured stride and padding, in raster order,
    where ``out_height = (height + pad_top + pad_bottom - k) // stride + 1``
    (likewise ``out_width``), exactly the windows an im2col of the zero-padded
    frame would list. With stride 2 only the strided windows are emitted.

    Configuration is latched per frame: ``cfg`` is ready only while no frame is
    in progress (from reset, and again a few cycles after a frame's last
    window has been produced). ``cfg`` fields:

    - ``width`` (1 to ``max_width``), ``height`` (1 to ``max_height``);
    - ``stride``: 2 for stride 2, any other value for stride 1;
    - ``pad_top``, ``pad_left``, ``pad_bottom``, ``pad_right``: 0 to ``k - 1``
      each, with ``height + pad_top + pad_bottom >= k`` and likewise for the width.

    A configuration outside these ranges gives unspecified windows (the
    compiler checks layers against them).

    Timing. Columns shift into the window register one per cycle; left padding
    costs nothing (columns of the previous row are masked), and the windows
    that reach into the right padding are emitted while the next row's first
    columns shift in, so a row of a stride-1 "same" convolution takes ``width``
    cycles and the generator sustains one window per cycle. Rows of bottom
    padding take ``width`` cycles each without input. Only when ``pad_left +
    pad_right >= k`` or ``width < pad_right``, and after the last output row,
    are the right-padding windows flushed with up to ``pad_right`` extra cycles.

    Parameters
    ----------
    k : int
        Window size, one of 1, 3, 5, 7.
    data_width : int
        Signed width of one channel of a pixel, at least 2.
    lanes : int
        Channels per pixel; they share the control and come out as parallel windows.
    max_width, max_height : int
        Largest frame before padding. The line buffer holds ``max_width``
        pixels per row.

    Members
    -------
    cfg : ``In(stream.Signature(cfg_layout))``
        Geometry of the next frame.
    i : ``In(stream.Signature(ArrayLayout(signed(data_width), lanes)))``
        Pixels in raster order, lane 0 in the least significant bits.
    o : ``Out(stream.Signature(window_layout))``
        Windows, ``ArrayLayout(ArrayLayout(ArrayLayout(signed(data_width), k), k), lanes)``
        indexed ``[lane][row][col]``.

    Latency is :attr:`latency` (2) cycles from the acceptance of the last pixel
    a window needs to the window's ``valid``. Back-pressure stalls the
    generator; ``i.ready`` follows ``o.ready`` combinationally.
    """

    @property
    def window_layout(self):
        """``[lane][row][col]`` array of ``signed(data_width)``."""
        kernel = data.ArrayLayout(data.ArrayLayout(signed(self._data_width), self._k), self._k)
        return data.ArrayLayout(kernel, self._lanes)

    _output_layout = window_layout

    @property
    def cfg_layout(self):
        pad = unsigned(bits_for(self._k - 1))
        return data.StructLayout({
            "width": unsigned(bits_for(self._max_width)),
            "height": unsigned(bits_for(self._max_height)),
            "stride": unsigned(2),
            "pad_top": pad,
            "pad_left": pad,
            "pad_bottom": pad,
            "pad_right": pad,
        })

    @property
    def latency(self):
        """Cycles from the acceptance of a window's last pixel to the window's ``valid``."""
        return 2  # the line buffer's stage, then the window register

    def elaborate(self, platform):
        m = Module()
        k = self._k
        m.submodules.line_buffer = lb = LineBuffer(
            k, self._data_width, lanes=self._lanes, max_width=self._max_width,
            max_height=self._max_height)
        wiring.connect(m, wiring.flipped(self.i), lb.i)

        count = range(self._max_width + k)  # windows per row, columns of a padded row
        busy = Signal()
        stride2 = Signal()
        pad_left = Signal(range(k))
        out_width = Signal(count)
        flush_mode = Signal()

        # Configuration: derived once per frame, forwarded to the line buffer.
        cfg = self.cfg.payload
        padded_h = cfg.height + cfg.pad_top + cfg.pad_bottom - k
        padded_w = cfg.width + cfg.pad_left + cfg.pad_right - k
        is_stride2 = cfg.stride == 2
        # Bottom padding rows that some window row actually reaches: with stride 2
        # the last padding row may be skipped.
        drop_bottom = padded_h[0] & is_stride2
        extra_rows = Signal.like(cfg.pad_bottom)
        with m.If(drop_bottom & (cfg.pad_bottom != 0)):
            m.d.comb += extra_rows.eq(cfg.pad_bottom - 1)
        with m.Elif(~drop_bottom):
            m.d.comb += extra_rows.eq(cfg.pad_bottom)
        m.d.comb += [
            lb.cfg.valid.eq(self.cfg.valid & ~busy),
            self.cfg.ready.eq(lb.cfg.ready & ~busy),
            lb.cfg.payload.width.eq(cfg.width),
            lb.cfg.payload.height.eq(cfg.height),
            lb.cfg.payload.extra_rows.eq(extra_rows),
        ]

        # Window register R: R[j] is column j of the window (0 leftmost).
        window = Signal(data.ArrayLayout(lb.column_layout["column"].shape, k))
        # Current output row.
        until = Signal(range(k + 1))      # columns to shift before the next window
        left_zeros = Signal(range(k + 1))  # masked columns on the left of the next window
        remaining = Signal(count)          # windows of the row not yet emitted
        skip_rows = Signal(range(k + 1))   # line buffer rows before the next output row
        rows_left = Signal(range(self._max_height + k + 1))
        # Previous output row's windows that reach into the right padding.
        pend = Signal(count)
        pend_until = Signal(range(k + 1))
        pend_left_zeros = Signal(range(k + 1))
        pend_shifts = Signal(range(k + 1))  # columns shifted since that row's last one
        flushing = Signal()
        final_seen = Signal()
        # Output: a valid flag and the mask to apply to R.
        o_valid = Signal()
        o_left_zeros = Signal(range(k + 1))
        o_right_zeros = Signal(range(k + 1))

        with m.If(self.cfg.valid & self.cfg.ready):
            m.d.sync += [
                busy.eq(1),
                stride2.eq(is_stride2),
                pad_left.eq(cfg.pad_left),
                out_width.eq((padded_w >> is_stride2) + 1),
                rows_left.eq((padded_h >> is_stride2) + 1),
                skip_rows.eq(k - 1 - cfg.pad_top),
                flush_mode.eq((cfg.pad_left + cfg.pad_right >= k) | (cfg.width < cfg.pad_right)),
                pend.eq(0),
                flushing.eq(0),
                final_seen.eq(0),
            ]

        advance = Signal()
        take = Signal()
        shift = Signal()
        col = lb.o.payload
        m.d.comb += [
            advance.eq(~o_valid | self.o.ready),
            lb.o.ready.eq(advance & busy & ~flushing),
            take.eq(lb.o.valid & lb.o.ready),
            shift.eq(take | (flushing & advance)),
        ]
        stride = stride2 + 1

        # A new output row starts at every first column of a row that completes one.
        row_used = (skip_rows == 0) & (rows_left != 0)
        eff_until = Signal.like(until)
        eff_left = Signal.like(left_zeros)
        eff_remaining = Signal.like(remaining)
        with m.If(col.row_first):
            m.d.comb += [
                eff_until.eq(k - 1 - pad_left),
                eff_left.eq(pad_left),
                eff_remaining.eq(out_width),
            ]
        with m.Else():
            m.d.comb += [
                eff_until.eq(until),
                eff_left.eq(left_zeros),
                eff_remaining.eq(remaining),
            ]
        emit_new = Signal()
        m.d.comb += emit_new.eq(take & row_used & (eff_until == 0) & (eff_remaining != 0))
        next_until = Signal.like(until)
        next_left = Signal.like(left_zeros)
        next_remaining = Signal.like(remaining)
        m.d.comb += [
            next_until.eq(stride2),
            next_left.eq(eff_left),
            next_remaining.eq(eff_remaining - emit_new),
        ]
        with m.If(eff_until != 0):
            m.d.comb += next_until.eq(eff_until - 1)
        with m.If(emit_new):
            m.d.comb += next_left.eq(_floor_sub(eff_left, stride))

        # The previous row's right-padding windows: the one with z padding columns
        # is emitted after z more columns have shifted in, which are masked.
        pend_active = shift & (pend != 0)
        emit_old = Signal()
        m.d.comb += emit_old.eq(pend_active & (pend_until == 0))

        with m.If(shift):
            for j in range(k - 1):
                m.d.sync += window[j].eq(window[j + 1])
            with m.If(take):
                m.d.sync += window[k - 1].eq(col.column)
            with m.Else():
                m.d.sync += window[k - 1].eq(0)

        with m.If(pend_active):
            m.d.sync += pend_shifts.eq(pend_shifts + 1)
            with m.If(pend_until == 0):
                m.d.sync += [
                    pend.eq(pend - 1),
                    pend_until.eq(stride2),
                    pend_left_zeros.eq(_floor_sub(pend_left_zeros, stride)),
                ]
                with m.If(flushing & (pend == 1)):
                    m.d.sync += flushing.eq(0)
            with m.Else():
                m.d.sync += pend_until.eq(pend_until - 1)

        with m.If(take):
            with m.If(row_used):
                m.d.sync += [
                    until.eq(next_until),
                    left_zeros.eq(next_left),
                    remaining.eq(next_remaining),
                ]
            with m.If(col.frame_last):
                m.d.sync += final_seen.eq(1)
            with m.If(col.row_last):
                with m.If(row_used):
                    m.d.sync += [
                        skip_rows.eq(stride2),
                        rows_left.eq(rows_left - 1),
                        pend.eq(next_remaining),
                        pend_until.eq(next_until),
                        pend_left_zeros.eq(next_left),
                        pend_shifts.eq(0),
                        flushing.eq((next_remaining != 0) & (flush_mode | (rows_left == 1))),
                    ]
                with m.Elif(skip_rows != 0):
                    m.d.sync += skip_rows.eq(skip_rows - 1)

        with m.If(busy & final_seen & ~flushing & (pend == 0)):
            m.d.sync += busy.eq(0)

        with m.If(advance):
            m.d.sync += o_valid.eq(emit_new | emit_old)
            with m.If(emit_old):
                m.d.sync += [
                    o_left_zeros.eq(pend_left_zeros),
                    o_right_zeros.eq(pend_shifts + 1),
                ]
            with m.Else():
                m.d.sync += [
                    o_left_zeros.eq(eff_left),
                    o_right_zeros.eq(0),
                ]

        m.d.comb += self.o.valid.eq(o_valid)
        for j in range(k):
            keep = (o_left_zeros <= j) & (o_right_zeros <= k - 1 - j)
            for r in range(k):
                for lane in range(self._lanes):
                    with m.If(keep):
                        m.d.comb += self.o.payload[lane][r][j].eq(window[j][r][lane])
        return m


def _floor_sub(value, amount):
    """``max(value - amount, 0)`` for small unsigned counters."""
    return Mux(value > amount, value - amount, 0)
