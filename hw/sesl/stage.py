"""SESL stages: a dedicated engine per layer, fixed at elaboration.

:class:`WindowStage` (conv, depthwise, pointwise, fully connected, max / average /
global average pooling), :class:`JoinStage` (residual add, concat), :class:`Fork`
(one stream to several consumers) and :class:`StreamFIFO` (a skip FIFO). See
:mod:`hw.sesl.config` for the stream format and the timing rules.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..blocks.requant import clamp, round_shift
from .config import StageConfig, ceil_div

__all__ = ["Fork", "JoinStage", "StreamFIFO", "WindowStage", "pixel_signature"]


def pixel_signature(channels: int, act_bits: int) -> stream.Signature:
    """One pixel per beat: ``channels`` lanes of ``act_bits`` bits, lane 0 lowest."""
    return stream.Signature(unsigned(channels * act_bits))


def _lane(word, index: int, bits: int):
    return word[index * bits:(index + 1) * bits].as_signed()


class WindowStage(wiring.Component):
    """A sliding-window stage over a line buffer (``op`` conv, depthwise, max or avg).

    The input pixels are written into a line buffer of ``line_rows`` rows (one block
    RAM of ``line_rows * W`` words of one pixel each, one write and one read port,
    registered read). An output pixel is issued as soon as the last input pixel of its
    window has been written; it then takes :attr:`StageConfig.cycles_per_pixel` cycles,
    one line-buffer read per cycle (conv: for each group of ``pe`` output channels, for
    each tap, for each chunk of ``simd`` input channels; depthwise and pooling: for each
    group of ``pe`` channels, for each tap). Weights (``simd * pe`` per word) and the
    per-channel bias, multiplier and shift (``pe`` lanes per word) are ROMs filled at
    elaboration. A row of the line buffer is overwritten only once no output pixel still
    to come needs it; address generators step by addition, with no run-time division.

    Latency: :data:`hw.sesl.config.WINDOW_LATENCY` cycles from the last read of a pixel
    to its output beat. Throughput: one output pixel per ``cycles_per_pixel`` cycles.
    Resources: ``simd * pe`` (conv) or ``pe`` multipliers of ``act_bits x weight_bits``,
    ``pe`` scaling multipliers, the line buffer and the ROMs.

    Members
    -------
    i : ``In(pixel_signature(C, act_bits))``
    o : ``Out(pixel_signature(M, act_bits))``
    """

    def __init__(self, cfg: StageConfig, *, act_bits=8, weight_bits=8, acc_bits=32,
                 mult_bits=16, shift_bits=6):
        if not isinstance(cfg, StageConfig):
            raise TypeError(f"cfg must be a StageConfig, not {cfg!r}")
        if not cfg.is_window:
            raise ValueError(f"cfg must describe a window stage, not op {cfg.op!r}")
        self.cfg = cfg
        self.act_bits, self.weight_bits, self.acc_bits = act_bits, weight_bits, acc_bits
        self.mult_bits, self.shift_bits = mult_bits, shift_bits
        super().__init__({"i": In(pixel_signature(cfg.in_channels, act_bits)),
                          "o": Out(pixel_signature(cfg.out_channels, act_bits))})

    # ROM contents ------------------------------------------------------------------

    def _weight_words(self):
        cfg = self.cfg
        c, m_ch = cfg.in_channels, cfg.out_channels
        kh, kw = cfg.kernel
        wb = self.weight_bits
        mask = (1 << wb) - 1
        words = []
        for g in range(cfg.groups):
            for ky in range(kh):
                for kx in range(kw):
                    for ci in range(cfg.chunks):
                        word = 0
                        for j in range(cfg.pe):
                            oc = g * cfg.pe + j
                            if cfg.op == "conv":
                                for i in range(cfg.simd):
                                    ic = ci * cfg.simd + i
                                    w = 0
                                    if oc < m_ch and ic < c:
                                        w = cfg.weights[((oc * c + ic) * kh + ky) * kw + kx]
                                    word |= (w & mask) << ((j * cfg.simd + i) * wb)
                            else:
                                w = cfg.weights[(oc * kh + ky) * kw + kx] if oc < m_ch else 0
                                word |= (w & mask) << (j * wb)
                        words.append(word)
        return words

    @property
    def _param_lane_bits(self):
        return self.acc_bits + self.mult_bits + self.shift_bits

    def _param_words(self):
        cfg = self.cfg
        ab, mb, sb = self.acc_bits, self.mult_bits, self.shift_bits
        words = []
        for g in range(cfg.groups):
            word = 0
            for j in range(cfg.pe):
                oc = g * cfg.pe + j
                if oc < cfg.out_channels:
                    bias = cfg.bias[oc] if cfg.bias else 0
                    mult, shift = cfg.m[oc], cfg.s[oc]
                else:
                    bias, mult, shift = 0, 0, 0
                if not 0 <= mult < (1 << mb):
                    raise ValueError(f"stage {cfg.name!r}: multiplier {mult} of channel {oc} "
                                     f"needs more than mult_bits={mb}")
                if not 0 <= shift <= (1 << sb) - 1:
                    raise ValueError(f"stage {cfg.name!r}: shift {shift} of channel {oc} "
                                     f"needs more than shift_bits={sb}")
                lane = (bias & ((1 << ab) - 1)) | (mult << ab)
                lane |= shift << (ab + mb)
                word |= lane << (j * self._param_lane_bits)
            words.append(word)
        return words

    # Hardware ----------------------------------------------------------------------

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        a, wb, ab = self.act_bits, self.weight_bits, self.acc_bits
        c_in, h, w = cfg.in_shapes[0]
        m_out, oh, ow = cfg.out_shape
        kh, kw = cfg.kernel
        sh, sw = cfg.stride
        pt, pl = cfg.pads[0], cfg.pads[1]
        ring = cfg.ring
        rows = cfg.line_rows if cfg.buffered else 2
        depth = cfg.line_words if ring else rows * w
        groups, chunks, pe, simd = cfg.groups, cfg.chunks, cfg.pe, cfg.simd
        conv = cfg.op == "conv"
        lanes_in = simd if conv else pe  # lanes read per cycle

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        # Line buffer: one write port (producer), one registered read port (consumer).
        if cfg.buffered:
            m.submodules.lbuf = lbuf = Memory(shape=unsigned(c_in * a), depth=depth, init=[])
            wport = lbuf.write_port()
            rport = lbuf.read_port(domain="sync")
        else:
            # One-pixel holding register instead of a line buffer (1x1 stages of a FIRB):
            # read data is registered at issue, as from a RAM read port.
            wport = _PortShim(addr=Signal(range(depth)), data=Signal(c_in * a), en=Signal())
            rport = _PortShim(addr=Signal(range(depth)), data=Signal(c_in * a), en=Signal())

        span = 2 * (h + rows + kh + 2)
        lead = Signal(signed(bits_for(span) + 1))   # producer row - consumer frame base
        prod_col = Signal(range(w))
        prod_base = Signal(range(depth))
        lo_row = Signal(signed(bits_for(h + kh + sh) + 1), init=-pt)
        frame_adv = Signal()
        writing = Signal()
        row_done = Signal()
        held_full = Signal()
        release = Signal()
        # Ring: ``pflat`` is the flat index (from the consumer's frame start) of the next
        # pixel to write, ``o_flat`` the oldest pixel still needed; pixel ``pflat`` may
        # overwrite pixel ``pflat - depth`` once that is older than ``o_flat``.
        flat = signed(bits_for(2 * (h * w + depth + 2 * w * (kh + sh))) + 1)
        pflat = Signal(flat)
        o_row = Signal(flat, init=-pt * w)          # lo_row * w
        o_flat = Signal(flat)
        prod_addr = Signal(range(depth))
        if ring:
            ready = pflat < o_flat + depth
        elif cfg.buffered:
            ready = lead < lo_row + rows
        else:
            ready = ~held_full | release
        m.d.comb += [
            self.i.ready.eq(ready),
            writing.eq(self.i.valid & self.i.ready),
            wport.addr.eq(prod_addr if ring else prod_base + prod_col),
            wport.data.eq(self.i.payload),
            wport.en.eq(writing),
            row_done.eq(writing & (prod_col == w - 1)),
        ]
        with m.If(writing):
            with m.If(prod_col == w - 1):
                m.d.sync += prod_col.eq(0)
                with m.If(prod_base >= depth - w):
                    m.d.sync += prod_base.eq(prod_base + w - depth)
                with m.Else():
                    m.d.sync += prod_base.eq(prod_base + w)
            with m.Else():
                m.d.sync += prod_col.eq(prod_col + 1)
        m.d.sync += lead.eq(lead + row_done - Mux(frame_adv, h, 0))
        if ring:
            m.d.sync += pflat.eq(pflat + writing - Mux(frame_adv, h * w, 0))
            with m.If(writing):
                m.d.sync += prod_addr.eq(Mux(prod_addr == depth - 1, 0, prod_addr + 1))

        # Consumer: output pixel (oy, ox), group g, tap (ky, kx), chunk ci.
        ox = Signal(range(max(ow, 2)))
        oy = Signal(range(max(oh, 2)))
        g = Signal(range(max(groups, 2)))
        ky = Signal(range(max(kh, 2)))
        kx = Signal(range(max(kw, 2)))
        ci = Signal(range(max(chunks, 2)))
        coord = signed(bits_for(max(h, w) + 2 * max(kh, kw) + max(sh, sw)) + 1)
        x_start = Signal(coord, init=-pl)
        need_row = Signal(coord, init=kh - 1 - pt)
        need_col = Signal(coord, init=kw - 1 - pl)
        base0 = (-pt * w) % depth if ring else ((-pt) % rows) * w
        lo_base = Signal(range(depth), init=base0)
        row_base = Signal(range(depth), init=base0)
        need_flat = Signal(flat, init=(kh - 1 - pt) * w)    # need_row * w
        waddr = Signal(range(max(groups * kh * kw * chunks, 2)))

        nr = Mux(need_row > h - 1, h - 1, need_row)
        nc = Mux(need_col > w - 1, w - 1, need_col)
        at_start = (g == 0) & (ky == 0) & (kx == 0) & (ci == 0)
        if ring:
            m.d.comb += o_flat.eq(o_row + x_start)
            px_ready = pflat > Mux(need_row > h - 1, (h - 1) * w, need_flat) + nc
        elif cfg.buffered:
            px_ready = (lead > nr) | ((lead == nr) & (prod_col > nc))
        else:
            px_ready = held_full
        issue = Signal()
        m.d.comb += issue.eq(en & (~at_start | px_ready))

        x_tap = Signal(coord)
        y_tap = Signal(coord)
        tap_ok = Signal()
        m.d.comb += [
            x_tap.eq(x_start + kx),
            y_tap.eq(lo_row + ky),
            tap_ok.eq((x_tap >= 0) & (x_tap < w) & (y_tap >= 0) & (y_tap < h)),
        ]

        last_chunk = ci == chunks - 1
        last_tap = (kx == kw - 1) & (ky == kh - 1)
        last_group = g == groups - 1
        last_ox = ox == ow - 1
        last_oy = oy == oh - 1

        def wrap_add(sig, inc):
            inc %= depth
            return Mux(sig >= depth - inc, sig + inc - depth, sig + inc) if inc else sig

        with m.If(issue):
            m.d.sync += waddr.eq(Mux(last_chunk & last_tap & last_group, 0, waddr + 1))
            with m.If(~last_chunk):
                m.d.sync += ci.eq(ci + 1)
            with m.Else():
                m.d.sync += ci.eq(0)
                with m.If(kx != kw - 1):
                    m.d.sync += kx.eq(kx + 1)
                with m.Else():
                    m.d.sync += kx.eq(0)
                    with m.If(ky != kh - 1):
                        m.d.sync += [ky.eq(ky + 1), row_base.eq(wrap_add(row_base, w))]
                    with m.Else():
                        m.d.sync += [ky.eq(0), row_base.eq(lo_base)]
                        with m.If(~last_group):
                            m.d.sync += g.eq(g + 1)
                        with m.Else():
                            m.d.sync += g.eq(0)
                            # next output pixel
                            with m.If(~last_ox):
                                m.d.sync += [ox.eq(ox + 1), x_start.eq(x_start + sw),
                                             need_col.eq(need_col + sw)]
                            with m.Else():
                                m.d.sync += [ox.eq(0), x_start.eq(-pl),
                                             need_col.eq(kw - 1 - pl)]
                                with m.If(~last_oy):
                                    nxt = wrap_add(lo_base, sh * w)
                                    m.d.sync += [oy.eq(oy + 1), lo_row.eq(lo_row + sh),
                                                 need_row.eq(need_row + sh),
                                                 o_row.eq(o_row + sh * w),
                                                 need_flat.eq(need_flat + sh * w),
                                                 lo_base.eq(nxt), row_base.eq(nxt)]
                                with m.Else():
                                    step = (h - (oh - 1) * sh) * w if ring else \
                                        ((h - (oh - 1) * sh) % rows) * w
                                    nxt = wrap_add(lo_base, step)
                                    m.d.sync += [oy.eq(0), lo_row.eq(-pt),
                                                 need_row.eq(kh - 1 - pt),
                                                 o_row.eq(-pt * w),
                                                 need_flat.eq((kh - 1 - pt) * w),
                                                 lo_base.eq(nxt), row_base.eq(nxt)]
                                    m.d.comb += frame_adv.eq(1)

        tap_addr = Signal(range(2 * depth + w))
        m.d.comb += tap_addr.eq(row_base + x_tap[:bits_for(w)])
        if ring:   # row_base < depth and x_tap < w <= depth: one wrap at most
            tap_addr = Mux(tap_addr >= depth, tap_addr - depth, tap_addr)
        m.d.comb += [rport.addr.eq(Mux(tap_ok, tap_addr, 0)),
                     rport.en.eq(en)]
        if not cfg.buffered:
            held = Signal(c_in * a)
            m.d.comb += release.eq(issue & last_chunk & last_tap & last_group)
            with m.If(writing):
                m.d.sync += [held.eq(self.i.payload), held_full.eq(1)]
            with m.Elif(release):
                m.d.sync += held_full.eq(0)
            with m.If(en):
                m.d.sync += rport.data.eq(held)

        # Weight and parameter ROMs.
        if cfg.op in ("conv", "depthwise"):
            wwidth = (simd * pe if conv else pe) * wb
            m.submodules.wrom = wrom = Memory(shape=unsigned(wwidth), depth=max(
                groups * kh * kw * chunks, 1), init=self._weight_words())
            wread = wrom.read_port(domain="sync")
            m.d.comb += [wread.addr.eq(waddr), wread.en.eq(en)]
        plb = self._param_lane_bits
        m.submodules.prom = prom = Memory(shape=unsigned(pe * plb), depth=groups,
                                          init=self._param_words())
        pread = prom.read_port(domain="sync")

        # s1: line buffer (and weight ROM) read in flight.
        s1_valid, s1_first, s1_last, s1_pad = Signal(), Signal(), Signal(), Signal()
        s1_g = Signal.like(g)
        s1_chunk = Signal(range(max(groups, chunks, 2)))
        with m.If(en):
            m.d.sync += [
                s1_valid.eq(issue),
                s1_first.eq((ci == 0) & (kx == 0) & (ky == 0)),
                s1_last.eq(last_chunk & last_tap),
                s1_pad.eq(~tap_ok),
                s1_g.eq(g),
                s1_chunk.eq(ci if conv else g),
            ]

        # s2: select the lanes of this chunk, multiply.
        n_chunks = chunks if conv else groups
        sel = Signal(unsigned(lanes_in * a))
        with m.Switch(s1_chunk):
            for k in range(n_chunks):
                with m.Case(k):
                    lo_bit = k * lanes_in * a
                    hi_bit = min((k + 1) * lanes_in * a, c_in * a)
                    m.d.comb += sel.eq(rport.data[lo_bit:hi_bit])
        xs = [Mux(s1_pad, 0, _lane(sel, i, a)) for i in range(lanes_in)]
        s2_valid, s2_first, s2_last, s2_pad = Signal(), Signal(), Signal(), Signal()
        s2_g = Signal.like(g)
        if conv:
            s2_vals = [[Signal(signed(a + wb), name=f"p{j}_{i}") for i in range(simd)]
                       for j in range(pe)]
            for j in range(pe):
                for i in range(simd):
                    with m.If(en):
                        m.d.sync += s2_vals[j][i].eq(
                            xs[i] * _lane(wread.data, j * simd + i, wb))
        else:
            s2_vals = [[Signal(signed(a + wb + 1), name=f"p{j}")] for j in range(pe)]
            for j in range(pe):
                value = xs[j] * _lane(wread.data, j, wb) if cfg.op == "depthwise" else xs[j]
                with m.If(en):
                    m.d.sync += s2_vals[j][0].eq(value)
        with m.If(en):
            m.d.sync += [s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last),
                         s2_pad.eq(s1_pad), s2_g.eq(s1_g)]

        # s3: accumulate; a group's last tap sends its sums on.
        accs = [Signal(signed(ab), name=f"acc{j}") for j in range(pe)]
        acc_next = [Signal(signed(ab), name=f"acc_next{j}") for j in range(pe)]
        floor = -(1 << (a - 1)) - 1
        for j in range(pe):
            if cfg.op == "max":
                v = s2_vals[j][0]
                m.d.comb += acc_next[j].eq(
                    Mux(s2_first, Mux(s2_pad, floor, v),
                        Mux(s2_pad | (v <= accs[j]), accs[j], v)))
            else:
                total = s2_vals[j][0]
                for p in s2_vals[j][1:]:
                    total = total + p
                m.d.comb += acc_next[j].eq(Mux(s2_first, 0, accs[j]) + total)
        s3_valid = Signal()
        s3_g = Signal.like(g)
        s3_sum = [Signal(signed(ab), name=f"sum{j}") for j in range(pe)]
        m.d.comb += [pread.addr.eq(s2_g), pread.en.eq(en)]
        with m.If(en):
            m.d.sync += [s3_valid.eq(s2_valid & s2_last), s3_g.eq(s2_g)]
            with m.If(s2_valid):
                m.d.sync += [acc.eq(nxt) for acc, nxt in zip(accs, acc_next)]
                with m.If(s2_last):
                    m.d.sync += [s.eq(nxt) for s, nxt in zip(s3_sum, acc_next)]

        # s4: (sum + bias) * m; s5: round, shift, clamp.
        mb, sb = self.mult_bits, self.shift_bits
        pw = ab + mb + 2
        s4_valid = Signal()
        s4_g = Signal.like(g)
        s4_prod = [Signal(signed(pw), name=f"scaled{j}") for j in range(pe)]
        s4_shift = [Signal(sb, name=f"shift{j}") for j in range(pe)]
        for j in range(pe):
            lane = pread.data[j * plb:(j + 1) * plb]
            bias = lane[:ab].as_signed()
            mult = lane[ab:ab + mb]
            with m.If(en):
                m.d.sync += [s4_prod[j].eq((s3_sum[j] + bias) * mult),
                             s4_shift[j].eq(lane[ab + mb:ab + mb + sb])]
        with m.If(en):
            m.d.sync += [s4_valid.eq(s3_valid), s4_g.eq(s3_g)]
        s5_valid = Signal()
        s5_g = Signal.like(g)
        s5_y = [Signal(signed(a), name=f"y{j}") for j in range(pe)]
        for j in range(pe):
            rounded = round_shift(m, s4_prod[j], s4_shift[j], sb)
            with m.If(en):
                m.d.sync += s5_y[j].eq(clamp(rounded, cfg.lo, cfg.hi))
        with m.If(en):
            m.d.sync += [s5_valid.eq(s4_valid), s5_g.eq(s4_g)]

        # s6: assemble the output pixel group by group.
        assembly = Signal(unsigned(m_out * a))
        merged = Signal(unsigned(m_out * a))
        y_bits = Cat(*s5_y)
        m.d.comb += merged.eq(assembly)
        with m.Switch(s5_g):
            for k in range(groups):
                with m.Case(k):
                    n = min(pe, m_out - k * pe)
                    m.d.comb += merged[k * pe * a:(k * pe + n) * a].eq(y_bits[:n * a])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(en & s5_valid):
            m.d.sync += assembly.eq(merged)
            with m.If(s5_g == groups - 1):
                m.d.sync += [self.o.payload.eq(merged), self.o.valid.eq(1)]
        return m


class _PortShim:
    """Stands in for a memory port where a register replaces the memory."""

    def __init__(self, **signals):
        self.__dict__.update(signals)


class JoinStage(wiring.Component):
    """Residual add or concat of several pixel streams, ``pe`` output channels per cycle.

    ``add``: ``clamp(round_shift(a * ma + b * mb, s), lo, hi)`` per channel;
    ``concat``: input ``i`` becomes ``clamp(round_shift(x_i * m_i, s_i), lo, hi)`` and
    the inputs are concatenated along channels. Each input has a one-pixel holding
    register; a pixel is issued when every input holds one, then takes
    :attr:`StageConfig.cycles_per_pixel` cycles (one chunk of ``pe`` channels each).
    Multipliers and shifts are constants of the stage.

    Latency: :data:`hw.sesl.config.JOIN_LATENCY`. Resources: ``pe`` multipliers per
    input (add) or ``pe`` (concat), shared by all chunks (the chunk's lanes are selected
    before the multiply); a multiplier is by a constant when it is the same for every
    chunk (add always).

    Members
    -------
    i0, i1, ... : ``In(pixel_signature(C_k, act_bits))``
    o : ``Out(pixel_signature(M, act_bits))``
    """

    def __init__(self, cfg: StageConfig, *, act_bits=8, **_widths):
        if not isinstance(cfg, StageConfig):
            raise TypeError(f"cfg must be a StageConfig, not {cfg!r}")
        if cfg.is_window:
            raise ValueError(f"cfg must describe a join stage, not op {cfg.op!r}")
        self.cfg = cfg
        self.act_bits = act_bits
        ports = {f"i{k}": In(pixel_signature(shape[0], act_bits))
                 for k, shape in enumerate(cfg.in_shapes)}
        ports["o"] = Out(pixel_signature(cfg.out_channels, act_bits))
        super().__init__(ports)

    def chunk_table(self):
        """``(dst lane, lanes, [(input, src lane, multiplier)], shift)`` per cycle."""
        cfg = self.cfg
        table = []
        if cfg.op == "add":
            c = cfg.out_channels
            for k in range(ceil_div(c, cfg.pe)):
                n = min(cfg.pe, c - k * cfg.pe)
                srcs = [(i, k * cfg.pe, cfg.input_m[i]) for i in range(len(cfg.inputs))]
                table.append((k * cfg.pe, n, srcs, cfg.input_s[0]))
        else:
            dst = 0
            for i, shape in enumerate(cfg.in_shapes):
                for k in range(ceil_div(shape[0], cfg.pe)):
                    n = min(cfg.pe, shape[0] - k * cfg.pe)
                    table.append((dst + k * cfg.pe, n, [(i, k * cfg.pe, cfg.input_m[i])],
                                  cfg.input_s[i] if len(cfg.input_s) > 1 else cfg.input_s[0]))
                dst += shape[0]
        return table

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        a = self.act_bits
        pe = cfg.pe
        n_in = len(cfg.inputs)
        table = self.chunk_table()
        ports = [getattr(self, f"i{k}") for k in range(n_in)]

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        held = [Signal(unsigned(shape[0] * a), name=f"held{k}")
                for k, shape in enumerate(cfg.in_shapes)]
        full = [Signal(name=f"full{k}") for k in range(n_in)]
        chunk = Signal(range(max(len(table), 2)))
        all_full = Signal()
        issue = Signal()
        release = Signal()
        m.d.comb += [all_full.eq(Cat(*full).all()), issue.eq(en & all_full),
                     release.eq(issue & (chunk == len(table) - 1))]
        for k, port in enumerate(ports):
            m.d.comb += port.ready.eq(~full[k] | release)
            with m.If(port.valid & port.ready):
                m.d.sync += [held[k].eq(port.payload), full[k].eq(1)]
            with m.Elif(release):
                m.d.sync += full[k].eq(0)
        with m.If(issue):
            m.d.sync += chunk.eq(Mux(chunk == len(table) - 1, 0, chunk + 1))

        # The lanes of each chunk are selected first, then multiplied: ``pe`` multipliers
        # per input slot (by a constant when every chunk of the slot has the same one).
        mults = [mult for _, _, srcs, _ in table for *_, mult in srcs]
        mbits = max(max(mults), 1).bit_length()
        wide = a + mbits + 2
        slots = max(len(srcs) for _, _, srcs, _ in table)
        xs = [[Signal(signed(a), name=f"x{t}_{j}") for j in range(pe)] for t in range(slots)]
        factors = []
        for t in range(slots):
            values = {srcs[t][2] for _, _, srcs, _ in table if t < len(srcs)}
            factors.append(Const(values.pop(), unsigned(mbits)) if len(values) == 1
                           else Signal(unsigned(mbits), name=f"mult{t}"))
        with m.Switch(chunk):
            for k, (_, n, srcs, _) in enumerate(table):
                with m.Case(k):
                    for t, (src, off, mult) in enumerate(srcs):
                        m.d.comb += [xs[t][j].eq(_lane(held[src], off + j, a))
                                     for j in range(n)]
                        if isinstance(factors[t], Signal):
                            m.d.comb += factors[t].eq(mult)
        s1_valid = Signal()
        s1_chunk = Signal.like(chunk)
        s1_vals = [Signal(signed(wide), name=f"v{j}") for j in range(pe)]
        with m.If(en):
            m.d.sync += [s1_valid.eq(issue), s1_chunk.eq(chunk)]
            for j in range(pe):
                total = 0
                for t in range(slots):
                    total = total + xs[t][j] * factors[t]
                m.d.sync += s1_vals[j].eq(total)

        assembly = Signal(unsigned(cfg.out_channels * a))
        merged = Signal(unsigned(cfg.out_channels * a))
        m.d.comb += merged.eq(assembly)
        s2_valid = Signal()
        s2_last = Signal()
        with m.Switch(s1_chunk):
            for k, (dst, n, _, shift) in enumerate(table):
                with m.Case(k):
                    for j in range(n):
                        v = s1_vals[j]
                        rounded = round_shift(m, v, Const(shift, unsigned(
                            max(shift.bit_length(), 1))), max(shift.bit_length(), 1))
                        m.d.comb += merged[(dst + j) * a:(dst + j + 1) * a].eq(
                            clamp(rounded, cfg.lo, cfg.hi))
        with m.If(en):
            m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1_chunk == len(table) - 1)]
            with m.If(s1_valid):
                m.d.sync += assembly.eq(merged)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(en & s2_valid & s2_last):
            m.d.sync += [self.o.payload.eq(assembly), self.o.valid.eq(1)]
        return m


class Fork(wiring.Component):
    """One stream to ``n`` consumers; each output beat is taken once by each consumer.

    An output that has taken the current beat waits (its ``valid`` drops) until all have.
    """

    def __init__(self, width: int, n: int):
        if n < 2:
            raise ValueError(f"n must be at least 2, not {n!r}")
        self.n = n
        ports = {"i": In(stream.Signature(unsigned(width)))}
        ports.update({f"o{k}": Out(stream.Signature(unsigned(width))) for k in range(n)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self.n)]
        taken = [Signal(name=f"taken{k}") for k in range(self.n)]
        done = [t | o.ready for t, o in zip(taken, outs)]
        m.d.comb += self.i.ready.eq(Cat(*done).all())
        for t, o in zip(taken, outs):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~t)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += t.eq(0)
            with m.Elif(o.valid & o.ready):
                m.d.sync += t.eq(1)
        return m


class StreamFIFO(wiring.Component):
    """A FIFO of ``depth`` beats on a stream (block RAM with a registered read)."""

    def __init__(self, width: int, depth: int):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({"i": In(stream.Signature(unsigned(width))),
                          "o": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        m.d.comb += [fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid),
                     self.i.ready.eq(fifo.w_rdy),
                     self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(self.o.ready)]
        return m
