"""POOL unit of the SEML core: max and average pooling over IBUF into OBUF.

The SEML core runs CONV, DEPTHWISE and POINTWISE on the streaming engines
(:mod:`hw.seml.engine_units`) and POOL on :class:`PoolWindowUnit`: max or average
pooling (``docs/isa.md``) over any window, stride and padding, global average pooling
included (a window of the whole tile).

A loop generator walks the channel ``ch``, output row ``oy``, a group of ``lanes``
output columns ``ox0 ..`` and the window taps (``ky``, ``kx``), one step per cycle.
Lane ``j`` is output column ``ox0 + j``: its input element (column ``(ox0 + j) *
stride_w + kx - pad_left``) is ``j * stride_w`` elements after lane 0's, so one wide
IBUF read (``banks`` bytes, :func:`hw.engine_kinds.buffer_banks`) at lane 0's address
holds every lane's: the unit runs as many lanes as the word holds at the instruction's
stride (:func:`hw.engine_kinds.pool_lanes`: all of them up to stride 2). The lanes'
results are consecutive OBUF elements, written at once when their windows are complete.

Pipeline (never stalls: OBUF has no other writer while it runs):

0. loop counters, IBUF addresses, padding masks; IBUF reads;
1. read data;
2. accumulate (sum, or max with padding never winning);
3. ``acc * mult`` (average pooling; 1 for max pooling);
4. rounding shift, clamp and OBUF write.

Latency: a group's results are written 4 cycles after its last window step; the unit
is idle again :data:`DRAIN_CYCLES` cycles after it, so an instruction keeps the unit
:func:`pool_steps` ``+ DRAIN_CYCLES`` cycles.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..engine_kinds import buffer_banks
from ..isa import INSTRUCTION, Pool, element_bytes, max_shift
from .decode import size_bits
from .units import bytes_from_lanes, lanes_from_bytes

__all__ = ["DRAIN_CYCLES", "POOL_LANES", "PoolWindowUnit", "pool_steps"]

#: Output columns the core's POOL unit computes in parallel (``lanes``).
POOL_LANES = 8
#: Cycles from the last window step to the unit going idle: the four pipeline stages
#: after stage 0, plus the cycle ``busy`` falls in.
DRAIN_CYCLES = 5


def pool_steps(in_c, out_h, out_w, k_h, k_w, lanes=POOL_LANES):
    """Window steps (cycles of stage 0) of one POOL instruction: the loop nest of
    :class:`PoolWindowUnit` (channel, output row, group of ``lanes`` output columns,
    ``k_h``, ``k_w``)."""
    return in_c * out_h * -(-out_w // lanes) * k_h * k_w


class PoolWindowUnit(wiring.Component):
    """Executes POOL instructions over IBUF into OBUF, one channel at a time.

    Parameters
    ----------
    arch : ArchConfig
    lanes : int, optional
        Output columns computed in parallel (default :data:`POOL_LANES`).

    Members
    -------
    start : In(1)
    instr : In(INSTRUCTION)
        A legal POOL instruction (checked by the decoder), sampled with ``start``.
    busy : Out(1)
    ibuf0_addr, ibuf0_en, ibuf0_data : the IBUF read port (``banks`` bytes from lane 0's
        element).
    obuf0_w_addr, obuf0_w_data, obuf0_w_count : the OBUF write port (``lanes``
        elements).
    """

    def __init__(self, arch: ArchConfig, *, lanes=POOL_LANES):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, not {lanes!r}")
        if not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be between 1 and 64, not {lanes!r}")
        self.arch = arch
        self.lanes = lanes
        self._e = element_bytes(arch.act_bits)
        members = {
            "start": In(1),
            "instr": In(INSTRUCTION),
            "busy": Out(1),
            "obuf0_w_addr": Out(range(arch.obuf_bytes)),
            "obuf0_w_data": Out(8 * self._e * lanes),
            "obuf0_w_count": Out(range(self._e * lanes + 1)),
        }
        self.banks = buffer_banks(arch)
        members["ibuf0_addr"] = Out(range(arch.ibuf_bytes))
        members["ibuf0_en"] = Out(1)
        members["ibuf0_data"] = In(8 * self.banks)
        super().__init__(members)

    # Port lists the core wires to the buffers.
    @property
    def ibuf_read_widths(self):
        return [self.banks]

    @property
    def wbuf_read_widths(self):
        return []

    @property
    def pbuf_read_ports(self):
        return 0

    @property
    def obuf_write_widths(self):
        return [self._e * self.lanes]

    def _port(self, prefix, *fields):
        return tuple(getattr(self, f"{prefix}_{name}") for name in fields)

    def ibuf_port(self, j):
        return self._port(f"ibuf{j}", "addr", "en", "data")

    def obuf_port(self, q):
        return self._port(f"obuf{q}", "w_addr", "w_data", "w_count")

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        P = self.lanes
        e = self._e
        c = self.instr.compute

        # Job configuration, latched at start --------------------------------------------
        cfg = {name: Signal(shape, name=f"cfg_{name}") for name, shape in (
            ("in_h", 16), ("in_w", 16), ("k_h", 16), ("k_w", 16), ("stride_h", 8),
            ("stride_w", 8), ("pad_top", 8), ("pad_left", 8), ("out_h", 16), ("out_w", 16),
            ("channels", 16), ("ibuf_addr", 32), ("obuf_addr", 32),
            ("mult", arch.mult_bits), ("shift", arch.shift_bits))}
        act_lo = Signal(signed(arch.act_bits))
        act_hi = Signal(signed(arch.act_bits))
        is_max = Signal()
        running = Signal()
        # Lanes of a window step: lane j's element is at byte j * stride_w * e of the
        # word, which must hold it (thresholds on the stride: no multiplier).
        n = self.banks
        step = Signal(range(P + 1))
        offs = [Signal(range(n + 1), name=f"off_{j}") for j in range(P)]
        fits = [c.stride_w <= (n - e) // (j * e) for j in range(1, P)]
        step_at_start = Signal(range(P + 1))
        m.d.comb += step_at_start.eq(1 + sum(f.as_unsigned() for f in fits) if fits else 1)
        with m.If(self.start):
            m.d.sync += step.eq(step_at_start)
            for j in range(P):
                m.d.sync += offs[j].eq(Mux(j * c.stride_w * e <= n - e, j * c.stride_w * e, 0)
                                       if j else 0)
        with m.If(self.start):
            avg = c.pool == Pool.AVG
            m.d.sync += [
                running.eq(1),
                cfg["in_h"].eq(c.in_h), cfg["in_w"].eq(c.in_w),
                cfg["k_h"].eq(c.k_h), cfg["k_w"].eq(c.k_w),
                cfg["stride_h"].eq(c.stride_h), cfg["stride_w"].eq(c.stride_w),
                cfg["pad_top"].eq(c.pad_top), cfg["pad_left"].eq(c.pad_left),
                cfg["out_h"].eq(c.out_h), cfg["out_w"].eq(c.out_w),
                cfg["channels"].eq(c.in_c),
                cfg["ibuf_addr"].eq(c.ibuf_addr), cfg["obuf_addr"].eq(c.obuf_addr),
                cfg["mult"].eq(Mux(avg, c.mult, 1)),
                cfg["shift"].eq(Mux(avg, c.shift, 0)),
                act_lo.eq(c.act_lo), act_hi.eq(c.act_hi),
                is_max.eq(c.pool == Pool.MAX),
            ]

        # Stage 0: loop counters ---------------------------------------------------------
        ch = Signal(16)
        oy = Signal(16)
        ox0 = Signal(16)
        ky = Signal(16)
        kx = Signal(16)
        last_kx = kx == cfg["k_w"] - 1
        last_ky = ky == cfg["k_h"] - 1
        last_ox = ox0 + step >= cfg["out_w"]
        last_oy = oy == cfg["out_h"] - 1
        last_ch = ch + 1 >= cfg["channels"]
        with m.If(self.start):
            m.d.sync += [ch.eq(0), oy.eq(0), ox0.eq(0), ky.eq(0), kx.eq(0)]
        with m.Elif(running):
            m.d.sync += kx.eq(kx + 1)
            with m.If(last_kx):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                with m.If(last_ky):
                    m.d.sync += [ky.eq(0), ox0.eq(ox0 + step)]
                    with m.If(last_ox):
                        m.d.sync += [ox0.eq(0), oy.eq(oy + 1)]
                        with m.If(last_oy):
                            m.d.sync += [oy.eq(0), ch.eq(ch + 1)]
                            with m.If(last_ch):
                                m.d.sync += running.eq(0)

        # IBUF addresses and padding masks, stepped by addition with the counters:
        # ``iy = oy * stride_h + ky - pad_top``, ``ix0 = ox0 * stride_w + kx - pad_left``
        # and ``row_base = (ch * in_h + iy) * in_w``; ``*_at`` hold their values at the
        # start of the current output row, column group and channel.
        # Widths: a legal POOL's rows and columns (padding included) fit the engine's
        # frame; the element indexes only address the buffers (modulo their sizes).
        ib = size_bits(arch) + 1
        iy = Signal(signed(20))
        ix0 = Signal(signed(20))
        row_base = Signal(signed(ib))
        oy_iy = Signal(signed(20))        # iy at ky = 0
        ox_ix = Signal(signed(20))        # ix0 at kx = 0
        oy_row = Signal(signed(ib))       # row_base at ky = 0
        ch_row = Signal(signed(ib))       # row_base at oy = 0, ky = 0
        out_row = Signal(ib)              # (ch * out_h + oy) * out_w
        plane = Signal(ib)                # in_h * in_w
        row_stride = Signal(24)           # stride_h * in_w
        ox_stride = Signal(16)            # lanes of a step * stride_w
        with m.If(self.start):
            top = Signal(signed(9))
            m.d.comb += top.eq(-c.pad_top)
            top_row = top * c.in_w
            m.d.sync += [
                plane.eq(c.in_h * c.in_w), row_stride.eq(c.stride_h * c.in_w),
                ox_stride.eq(c.stride_w * step_at_start),
                iy.eq(top), oy_iy.eq(top), ix0.eq(-c.pad_left), ox_ix.eq(-c.pad_left),
                row_base.eq(top_row), oy_row.eq(top_row), ch_row.eq(top_row), out_row.eq(0),
            ]
        with m.Elif(running):
            m.d.sync += ix0.eq(ix0 + 1)
            with m.If(last_kx):
                m.d.sync += [ix0.eq(ox_ix), iy.eq(iy + 1), row_base.eq(row_base + cfg["in_w"])]
                with m.If(last_ky):
                    m.d.sync += [ox_ix.eq(ox_ix + ox_stride), ix0.eq(ox_ix + ox_stride),
                                 iy.eq(oy_iy), row_base.eq(oy_row)]
                    with m.If(last_ox):
                        left_pad = -cfg["pad_left"]
                        m.d.sync += [ox_ix.eq(left_pad), ix0.eq(left_pad),
                                     oy_iy.eq(oy_iy + cfg["stride_h"]),
                                     iy.eq(oy_iy + cfg["stride_h"]),
                                     oy_row.eq(oy_row + row_stride),
                                     row_base.eq(oy_row + row_stride),
                                     out_row.eq(out_row + cfg["out_w"])]
                        with m.If(last_oy):
                            top_pad = -cfg["pad_top"]
                            m.d.sync += [oy_iy.eq(top_pad), iy.eq(top_pad),
                                         ch_row.eq(ch_row + plane),
                                         oy_row.eq(ch_row + plane),
                                         row_base.eq(ch_row + plane)]
        row_ok = (iy >= 0) & (iy < cfg["in_h"])
        tap_ok = []
        addr, en, word = self.ibuf_port(0)
        m.d.comb += [addr.eq(cfg["ibuf_addr"] + (row_base + ix0) * e), en.eq(1)]
        for j in range(P):
            ix = Signal(signed(40), name=f"ix_{j}")
            m.d.comb += ix.eq(ix0 + j * cfg["stride_w"])
            tap_ok.append(row_ok & (ix >= 0) & (ix < cfg["in_w"]))
        out_index = out_row + ox0
        left = cfg["out_w"] - ox0

        def reg(value, name, shape):
            sig = Signal(shape, name=name)
            m.d.sync += sig.eq(value)
            return sig

        # Stage 1: read data -------------------------------------------------------------
        v1 = reg(running & ~self.start, "v1", 1)
        first_tap1 = reg((kx == 0) & (ky == 0), "first_tap1", 1)
        last_tap1 = reg(last_kx & last_ky, "last_tap1", 1)
        ok1 = [reg(t, f"ok1_{j}", 1) for j, t in enumerate(tap_ok)]
        on1 = reg(ch < cfg["channels"], "on1", 1)
        out_addr1 = reg(cfg["obuf_addr"] + out_index * e, "out_addr1", 32)
        count1 = reg(Mux(left < step, left, step) * e, "count1", range(P * e + 1))
        xs = [lanes_from_bytes(m, (word >> (offs[j] * 8))[:8 * e], 1, arch.act_bits,
                               f"x1_{j}")[0] for j in range(P)]

        # Stage 2: accumulate ------------------------------------------------------------
        acc_bits = arch.acc_bits
        v2 = reg(v1, "v2", 1)
        first_tap2 = reg(first_tap1, "first_tap2", 1)
        last_tap2 = reg(last_tap1, "last_tap2", 1)
        ok2 = [reg(o, f"ok2_{j}", 1) for j, o in enumerate(ok1)]
        on2 = reg(on1, "on2", 1)
        x2 = [reg(x, f"x2_{j}", signed(arch.act_bits)) for j, x in enumerate(xs)]
        out_addr2 = reg(out_addr1, "out_addr2", 32)
        count2 = reg(count1, "count2", range(P * e + 1))
        finals = []
        for j in range(P):
            acc = Signal(signed(acc_bits), name=f"acc_{j}")
            f = Signal(signed(acc_bits), name=f"final_{j}")
            seen = Signal(name=f"seen_{j}")
            with m.If(is_max):
                # A padded position never wins: until a real element is seen, the next
                # real element replaces whatever the accumulator holds.
                takes = ok2[j] & (first_tap2 | ~seen | (x2[j] > acc))
                m.d.comb += f.eq(Mux(takes, x2[j], acc))
                with m.If(v2):
                    with m.If(ok2[j]):
                        m.d.sync += seen.eq(1)
                    with m.Elif(first_tap2):
                        m.d.sync += seen.eq(0)
            with m.Else():
                m.d.comb += f.eq(Mux(first_tap2, 0, acc) + Mux(ok2[j], x2[j], 0))
            with m.If(v2):
                m.d.sync += acc.eq(f)
            finals.append(f)

        # Stage 3: multiply by the requantization multiplier ----------------------------
        v3 = reg(v2 & last_tap2, "v3", 1)
        on3 = reg(on2, "on3", 1)
        out_addr3 = reg(out_addr2, "out_addr3", 32)
        count3 = reg(count2, "count3", range(P * e + 1))
        prod_bits = acc_bits + arch.mult_bits + 1
        prods = []
        for j, f in enumerate(finals):
            acc3 = reg(f, f"acc3_{j}", signed(acc_bits))
            prods.append(reg(acc3 * cfg["mult"], f"prod4_{j}", signed(prod_bits)))

        # Stage 4: rounding shift, clamp and write ---------------------------------------
        v4 = reg(v3, "v4", 1)
        on4 = reg(on3, "on4", 1)
        out_addr4 = reg(out_addr3, "out_addr4", 32)
        count4 = reg(count3, "count4", range(P * e + 1))
        shift = cfg["shift"]
        # wide enough for the rounding constant of the largest shift (2**(s - 1) may not
        # fit the product's width: the product then shifts out to 0 or -1 before rounding)
        wide = max(prod_bits, max_shift(arch.shift_bits) + 1)
        rounding = Signal(wide)
        m.d.comb += rounding.eq((Const(1, wide + 1) << shift) >> 1)
        ys = []
        for j, prod in enumerate(prods):
            shifted = Signal(signed(wide + 1), name=f"shifted_{j}")
            m.d.comb += shifted.eq((prod + rounding) >> shift)
            y = Signal(signed(arch.act_bits), name=f"y_{j}")
            m.d.comb += y.eq(Mux(shifted < act_lo, act_lo,
                                 Mux(shifted > act_hi, act_hi, shifted)))
            ys.append(y)
        addr, data_, count = self.obuf_port(0)
        m.d.comb += [addr.eq(out_addr4), data_.eq(bytes_from_lanes(ys, arch.act_bits))]
        with m.If(v4 & on4):
            m.d.comb += count.eq(count4)

        m.d.comb += self.busy.eq(running | v1 | v2 | v3 | v4)
        return m
