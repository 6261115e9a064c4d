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

Pipeline (never stalls: OBUF has no other writer while it runs), after one set-up
cycle that derives from the latched fields every step, bound and start address the loop
uses (the loop's carries are registered flags, its addresses step by addition):

0. loop counters, IBUF address, padding masks; IBUF reads;
1. read data (the buffer's rotated word);
1a. one stage per IBUF read stage, while the read passes the buffer's registered rows;
1b. the word registered; each lane's element shifted out of it;
2. accumulate (sum, or max with padding never winning);
3. ``acc * mult`` (average pooling; 1 for max pooling) as two partial products;
4. their sum;
5. the shift (``>> (shift - 1)``; the rounding is an increment after it);
6. round (``(x + 1) >> 1``, the output's bits only) and the clamp's compares, side by
   side, each registered;
6b. the clamp's select;
7. OBUF write from registers.

Latency: a group's results are written ``9 + BUFFER_READ_STAGES`` cycles after its last
window step; an instruction keeps the unit :func:`pool_steps` ``+ DRAIN_CYCLES`` cycles
(the set-up cycle, the window steps, the stages after stage 0 and the cycle ``busy``
falls in).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..arch import ArchConfig
from ..engine_kinds import buffer_banks
from ..isa import INSTRUCTION, Pool, element_bytes
from ..timing import BUFFER_READ_STAGES, DRAIN_CYCLES, POOL_LANES, pool_steps
from .buffers import bank_select
from .decode import size_bits
from .units import bytes_from_lanes, lanes_from_bytes

# The unit's lane count, drain cycles and loop-nest steps are the cycle model's (one
# definition, in :mod:`hw.timing`); the unit's tests measure them on the RTL.
__all__ = ["DRAIN_CYCLES", "POOL_LANES", "PoolWindowUnit", "pool_steps"]


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
        A legal POOL instruction (checked by the decoder), sampled with ``start``. It
        must hold its value in the cycle before ``start`` too (the core's instruction
        register does: a word is decoded for at least one cycle before it issues): the
        products and compares of its fields that the job starts from are registered
        from ``instr`` in every cycle the unit is idle.
    busy : Out(1)
    ibuf0_addr, ibuf0_en, ibuf0_data : the IBUF read port (``banks`` bytes from lane 0's
        element, in bank order: :class:`~hw.seml.buffers.ByteBuffer` with
        ``raw_reads``); the address is 0 while the unit does not read.
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
    def pbuf_lanes(self):
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
        # the largest stride at which the word holds lane j's element (j >= 1)
        fit_limit = {j: (n - e) // (j * e) for j in range(1, P)}
        fits = [c.stride_w <= fit_limit[j] for j in range(1, P)]
        step_at_start = Signal(range(P + 1))
        m.d.comb += step_at_start.eq(1 + sum(f.as_unsigned() for f in fits) if fits else 1)
        # lane j's column offset ``j * stride_w`` (a constant times a field)
        joff = [Signal(range(max(j, 1) * 255 + 1), name=f"joff_{j}") for j in range(P)]
        # products of two fields, taken at start: ``in_h * in_w``, ``stride_h * in_w`` and
        # ``pad_top * in_w`` (the elements above the first row, padding included)
        ib = size_bits(arch) + 1
        plane = Signal(ib)
        row_stride = Signal(24)
        top_rows = Signal(24)
        # Two registered stages from ``instr``: its fields are copied every cycle, and the
        # products and compares are taken from the copies while the unit is idle and held
        # from ``start`` until it is idle again. The job starts from registers, and no
        # path runs from the instruction register (which fans out to every unit) through
        # arithmetic: ``instr`` holds the same word in the two cycles before ``start``
        # (the core's DECODE, or the wait for the unit to go idle).
        f_in_h, f_in_w = Signal(16, name="f_in_h"), Signal(16, name="f_in_w")
        f_stride_h, f_stride_w = Signal(8, name="f_stride_h"), Signal(8, name="f_stride_w")
        f_pad_top = Signal(8, name="f_pad_top")
        f_step = Signal(range(P + 1), name="f_step")
        m.d.sync += [f_in_h.eq(c.in_h), f_in_w.eq(c.in_w), f_stride_h.eq(c.stride_h),
                     f_stride_w.eq(c.stride_w), f_pad_top.eq(c.pad_top),
                     f_step.eq(step_at_start)]
        with m.If(~self.busy & ~self.start):
            m.d.sync += step.eq(f_step)
            for j in range(P):
                # (a compare of the stride with a constant beside the constant product,
                # not after it)
                m.d.sync += offs[j].eq(Mux(f_stride_w <= fit_limit[j], j * f_stride_w * e, 0)
                                       if j else 0)
                m.d.sync += joff[j].eq(j * f_stride_w)
            m.d.sync += [plane.eq(f_in_h * f_in_w), row_stride.eq(f_stride_h * f_in_w),
                         top_rows.eq(f_pad_top * f_in_w)]
        with m.If(self.start):
            avg = c.pool == Pool.AVG
            m.d.sync += [
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

        # Set-up: one cycle after start, everything the loop steps by or compares with,
        # from the latched fields and the start products (no product, sum or compare of
        # fields left in the loop's own paths) -------------------------------------------
        setup = Signal()
        m.d.sync += setup.eq(self.start)
        kw_m2 = Signal(16)                # k_w - 2: kx that precedes the last tap of a row
        kh_m2 = Signal(16)
        oh_m2 = Signal(16)
        ch_m2 = Signal(signed(18))        # channels - 2
        kw_one = Signal()
        kh_one = Signal()
        oh_one = Signal()
        ow_one_step = Signal()            # out_w <= step: a row is one column group
        neg_top = Signal(signed(9))
        neg_left = Signal(signed(9))
        nlo = [Signal(signed(10 + max(j, 1).bit_length()), name=f"nlo_{j}") for j in range(P)]
        hi = [Signal(signed(18), name=f"hi_{j}") for j in range(P)]
        aw = len(self.ibuf0_addr)
        ow = len(self.obuf0_w_addr)
        in_w_e = Signal(aw)               # the buffer step of one input row
        ox_stride = Signal(16)            # columns between groups: step * stride_w
        ox_stride_e = Signal(aw)
        row_stride_e = Signal(aw)
        plane_e = Signal(aw)
        step_e = Signal(ow)
        out_w_e = Signal(ow)
        shift_m1 = Signal(arch.shift_bits)   # the shift less one, and whether it is zero
        shift_0 = Signal()
        below = Signal(signed(arch.act_bits + 2))   # 2 * act_lo - 1
        above = Signal(signed(arch.act_bits + 2))   # 2 * act_hi
        with m.If(setup):
            m.d.sync += [
                kw_m2.eq(cfg["k_w"] - 2), kh_m2.eq(cfg["k_h"] - 2), oh_m2.eq(cfg["out_h"] - 2),
                ch_m2.eq(cfg["channels"] - 2),
                kw_one.eq(cfg["k_w"] == 1), kh_one.eq(cfg["k_h"] == 1),
                oh_one.eq(cfg["out_h"] == 1), ow_one_step.eq(cfg["out_w"] <= step),
                neg_top.eq(-cfg["pad_top"]), neg_left.eq(-cfg["pad_left"]),
                in_w_e.eq(cfg["in_w"] * e), ox_stride.eq(cfg["stride_w"] * step),
                ox_stride_e.eq(cfg["stride_w"] * step * e), row_stride_e.eq(row_stride * e),
                plane_e.eq(plane * e), step_e.eq(step * e), out_w_e.eq(cfg["out_w"] * e),
                shift_m1.eq(cfg["shift"] - 1), shift_0.eq(cfg["shift"] == 0),
                below.eq(act_lo * 2 - 1), above.eq(act_hi * 2),
            ]
            for j in range(P):
                m.d.sync += [nlo[j].eq(-joff[j]), hi[j].eq(cfg["in_w"] - joff[j])]

        # Stage 0: loop counters ---------------------------------------------------------
        # ``l*`` are registered flags: the counter is at its last value (``lch``: the
        # channel is the last), each set the step before, so that a step's carries are an
        # AND of flags. ``first``: the step is a window's first tap.
        ch = Signal(16)
        oy = Signal(16)
        ky = Signal(16)
        kx = Signal(16)
        ox_left = Signal(16)              # out_w - ox0: output columns from the group on
        lkx, lky, lox, loy, lch, first = (Signal(name=f) for f in (
            "last_kx", "last_ky", "last_ox", "last_oy", "last_ch", "first_tap"))
        wrap_kx = lkx
        wrap_ky = lkx & lky
        wrap_ox = wrap_ky & lox
        wrap_oy = wrap_ox & loy
        with m.If(setup):
            m.d.sync += [
                running.eq(1), ch.eq(0), oy.eq(0), ky.eq(0), kx.eq(0),
                ox_left.eq(cfg["out_w"]), first.eq(1),
                lkx.eq(cfg["k_w"] == 1), lky.eq(cfg["k_h"] == 1),
                lox.eq(cfg["out_w"] <= step), loy.eq(cfg["out_h"] == 1),
                lch.eq(cfg["channels"] <= 1),
            ]
        with m.Elif(running):
            m.d.sync += [kx.eq(kx + 1), lkx.eq(kx == kw_m2), first.eq(wrap_ky)]
            with m.If(wrap_kx):
                m.d.sync += [kx.eq(0), lkx.eq(kw_one), ky.eq(ky + 1), lky.eq(ky == kh_m2)]
                with m.If(wrap_ky):
                    m.d.sync += [ky.eq(0), lky.eq(kh_one), ox_left.eq(ox_left - step),
                                 lox.eq(ox_left <= (step << 1))]
                    with m.If(wrap_ox):
                        m.d.sync += [ox_left.eq(cfg["out_w"]), lox.eq(ow_one_step),
                                     oy.eq(oy + 1), loy.eq(oy == oh_m2)]
                        with m.If(wrap_oy):
                            m.d.sync += [oy.eq(0), loy.eq(oh_one), ch.eq(ch + 1),
                                         lch.eq(ch >= ch_m2)]
                            with m.If(lch):
                                m.d.sync += running.eq(0)

        # Input rows and columns (padding checks) and buffer addresses, stepped by
        # addition with the counters: ``iy = oy * stride_h + ky - pad_top``, ``ix0 = ox0 *
        # stride_w + kx - pad_left``; the IBUF read address ``ibuf_addr + ((ch * in_h + iy)
        # * in_w + ix0) * e`` and the OBUF write address ``obuf_addr + ((ch * out_h + oy) *
        # out_w + ox0) * e`` (modulo the buffers' address ranges); ``*_at`` registers hold
        # their values at the start of the current input row, column group, output row
        # and channel. A legal POOL's rows and columns (padding included) fit the engine's
        # frame.
        iy = Signal(signed(20))
        ix0 = Signal(signed(20))
        oy_iy = Signal(signed(20))        # iy at ky = 0
        ox_ix = Signal(signed(20))        # ix0 at kx = 0
        rd = Signal(aw)                   # IBUF address of lane 0's element
        rd_row = Signal(aw)               # at kx = 0
        rd_grp = Signal(aw)               # at kx = ky = 0
        rd_oy = Signal(aw)                # at kx = ky = 0, ox0 = 0
        rd_ch = Signal(aw)                # at kx = ky = 0, ox0 = 0, oy = 0
        o_addr = Signal(ow)               # OBUF address of the group's first column
        o_row = Signal(ow)                # at ox0 = 0
        with m.If(setup):
            first_rd = Signal(aw)
            m.d.comb += first_rd.eq(cfg["ibuf_addr"] - (top_rows + cfg["pad_left"]) * e)
            m.d.sync += [
                iy.eq(-cfg["pad_top"]), oy_iy.eq(-cfg["pad_top"]),
                ix0.eq(-cfg["pad_left"]), ox_ix.eq(-cfg["pad_left"]),
                rd.eq(first_rd), rd_row.eq(first_rd), rd_grp.eq(first_rd),
                rd_oy.eq(first_rd), rd_ch.eq(first_rd),
                o_addr.eq(cfg["obuf_addr"]), o_row.eq(cfg["obuf_addr"]),
            ]
        with m.Elif(running):
            m.d.sync += [ix0.eq(ix0 + 1), rd.eq(rd + e)]
            with m.If(wrap_kx):
                m.d.sync += [ix0.eq(ox_ix), iy.eq(iy + 1), rd_row.eq(rd_row + in_w_e),
                             rd.eq(rd_row + in_w_e)]
                with m.If(wrap_ky):
                    ix_next = ox_ix + ox_stride
                    rd_next = rd_grp + ox_stride_e
                    m.d.sync += [ox_ix.eq(ix_next), ix0.eq(ix_next), iy.eq(oy_iy),
                                 rd_grp.eq(rd_next), rd_row.eq(rd_next), rd.eq(rd_next),
                                 o_addr.eq(o_addr + step_e)]
                    with m.If(wrap_ox):
                        iy_next = oy_iy + cfg["stride_h"]
                        rd_next = rd_oy + row_stride_e
                        o_next = o_row + out_w_e
                        m.d.sync += [ox_ix.eq(neg_left), ix0.eq(neg_left),
                                     oy_iy.eq(iy_next), iy.eq(iy_next),
                                     rd_oy.eq(rd_next), rd_grp.eq(rd_next),
                                     rd_row.eq(rd_next), rd.eq(rd_next),
                                     o_row.eq(o_next), o_addr.eq(o_next)]
                        with m.If(wrap_oy):
                            rd_next = rd_ch + plane_e
                            m.d.sync += [oy_iy.eq(neg_top), iy.eq(neg_top),
                                         rd_ch.eq(rd_next), rd_oy.eq(rd_next),
                                         rd_grp.eq(rd_next), rd_row.eq(rd_next),
                                         rd.eq(rd_next)]
        row_ok = (iy >= 0) & (iy < cfg["in_h"])
        # lane j's column ``ix0 + j * stride_w`` is in the tile: compares with the set-up
        # bounds, no adder
        tap_ok = [row_ok & (ix0 >= nlo[j]) & (ix0 < hi[j]) for j in range(P)]
        # the read port: 0 while the unit does not read (the core ORs its IBUF readers)
        addr, en, word = self.ibuf_port(0)
        m.d.comb += [addr.eq(Mux(running, rd, 0)), en.eq(running)]

        def reg(value, name, shape):
            sig = Signal(shape, name=name)
            m.d.sync += sig.eq(value)
            return sig

        # Stage 1: read data -------------------------------------------------------------
        v1 = v1_read = reg(running, "v1", 1)
        first_tap1 = reg(first, "first_tap1", 1)
        last_tap1 = reg(wrap_ky, "last_tap1", 1)
        ok1 = [reg(t, f"ok1_{j}", 1) for j, t in enumerate(tap_ok)]
        on1 = reg(ch < cfg["channels"], "on1", 1)
        out_addr1 = reg(o_addr, "out_addr1", ow)
        count1 = reg(Mux(ox_left < step, ox_left, step) * e, "count1", range(P * e + 1))
        # lane j's element starts at bank ``(rd + offs[j]) mod banks`` of the raw word
        lg = max(exact_log2(n), 1)
        first1 = [reg((rd + offs[j])[:lg], f"first1_{j}", lg) for j in range(P)]

        # Stage 1a (one per IBUF read stage, :data:`hw.timing.BUFFER_READ_STAGES`): the
        # read is still on its way through the buffer's registered rows ------------------
        waits = []
        for k in range(BUFFER_READ_STAGES):
            v1 = reg(v1, f"v1a{k}", 1)
            first_tap1 = reg(first_tap1, f"first_tap1a{k}", 1)
            last_tap1 = reg(last_tap1, f"last_tap1a{k}", 1)
            ok1 = [reg(o, f"ok1a{k}_{j}", 1) for j, o in enumerate(ok1)]
            on1 = reg(on1, f"on1a{k}", 1)
            out_addr1 = reg(out_addr1, f"out_addr1a{k}", ow)
            count1 = reg(count1, f"count1a{k}", range(P * e + 1))
            first1 = [reg(f, f"first1a{k}_{j}", lg) for j, f in enumerate(first1)]
            waits.append(v1)

        # Stage 1b: the read word registered, so that the banks' outputs end at
        # flip-flops and the lanes' selects start from them ------------------------------
        v1b = reg(v1, "v1b", 1)
        first_tap1b = reg(first_tap1, "first_tap1b", 1)
        last_tap1b = reg(last_tap1, "last_tap1b", 1)
        ok1b = [reg(o, f"ok1b_{j}", 1) for j, o in enumerate(ok1)]
        on1b = reg(on1, "on1b", 1)
        out_addr1b = reg(out_addr1, "out_addr1b", ow)
        count1b = reg(count1, "count1b", range(P * e + 1))
        word1b = reg(word, "word1b", len(word))
        first1b = [reg(f, f"first1b_{j}", lg) for j, f in enumerate(first1)]
        xs = [lanes_from_bytes(m, bank_select(word1b, n, first1b[j], e), 1, arch.act_bits,
                               f"x1_{j}")[0] for j in range(P)]

        # Stage 2: accumulate ------------------------------------------------------------
        acc_bits = arch.acc_bits
        v2 = reg(v1b, "v2", 1)
        first_tap2 = reg(first_tap1b, "first_tap2", 1)
        last_tap2 = reg(last_tap1b, "last_tap2", 1)
        ok2 = [reg(o, f"ok2_{j}", 1) for j, o in enumerate(ok1b)]
        on2 = reg(on1b, "on2", 1)
        x2 = [reg(x, f"x2_{j}", signed(arch.act_bits)) for j, x in enumerate(xs)]
        # the element as the sum takes it (0 at a padded position), masked a stage early
        x2s = [reg(Mux(o, x, 0), f"x2s_{j}", signed(arch.act_bits))
               for j, (o, x) in enumerate(zip(ok1b, xs))]
        out_addr2 = reg(out_addr1b, "out_addr2", ow)
        count2 = reg(count1b, "count2", range(P * e + 1))
        finals = []
        for j in range(P):
            # Two accumulators, each with nothing but its own update in its loop: the
            # window's largest element (``act_bits``) and its sum (``acc_bits``); the mode
            # picks one after them.
            acc_m = Signal(signed(arch.act_bits), name=f"acc_max_{j}")
            acc_s = Signal(signed(acc_bits), name=f"acc_{j}")
            fm = Signal(signed(arch.act_bits), name=f"final_max_{j}")
            fs = Signal(signed(acc_bits), name=f"final_sum_{j}")
            f = Signal(signed(acc_bits), name=f"final_{j}")
            seen = Signal(name=f"seen_{j}")
            # A padded position never wins: until a real element is seen, the next real
            # element replaces whatever the accumulator holds.
            takes = ok2[j] & (first_tap2 | ~seen | (x2[j] > acc_m))
            m.d.comb += [
                fm.eq(Mux(takes, x2[j], acc_m)),
                fs.eq(Mux(first_tap2, 0, acc_s) + x2s[j]),
                f.eq(Mux(is_max, fm, fs)),
            ]
            with m.If(v2):
                m.d.sync += [acc_m.eq(fm), acc_s.eq(fs)]
                with m.If(ok2[j]):
                    m.d.sync += seen.eq(1)
                with m.Elif(first_tap2):
                    m.d.sync += seen.eq(0)
            finals.append(f)

        # Stage 3: multiply by the requantization multiplier ----------------------------
        v3 = reg(v2 & last_tap2, "v3", 1)
        on3 = reg(on2, "on3", 1)
        out_addr3 = reg(out_addr2, "out_addr3", ow)
        count3 = reg(count2, "count3", range(P * e + 1))
        prod_bits = acc_bits + arch.mult_bits + 1
        # two partial products of one multiplier each (the low 17 bits of the sum, which
        # an 18-bit signed multiplier input takes unsigned, and the rest), summed in stage 4
        # (one product when the sum fits one multiplier)
        lo_bits = 17
        parts = []
        for j, f in enumerate(finals):
            acc3 = reg(f, f"acc3_{j}", signed(acc_bits))
            if acc_bits <= 18:
                parts.append((reg(acc3 * cfg["mult"], f"prod4_{j}", signed(prod_bits)), None))
                continue
            lo = reg(acc3[:lo_bits] * cfg["mult"], f"prod_lo4_{j}", lo_bits + arch.mult_bits)
            hi = reg(acc3[lo_bits:].as_signed() * cfg["mult"], f"prod_hi4_{j}",
                     signed(prod_bits - lo_bits))
            parts.append((lo, hi))

        # Stage 4: sum of the partial products ------------------------------------------
        v4 = reg(v3, "v4", 1)
        on4 = reg(on3, "on4", 1)
        out_addr4 = reg(out_addr3, "out_addr4", ow)
        count4 = reg(count3, "count4", range(P * e + 1))
        prods = [reg(lo if hi is None else (hi << lo_bits) + lo, f"prod5_{j}",
                     signed(prod_bits)) for j, (lo, hi) in enumerate(parts)]

        # Stage 5: the shift. ``(prod + 2**(s - 1)) >> s == (pre + 1) >> 1`` with ``pre =
        # prod >> (s - 1)``, and ``prod == (2 * prod + 1) >> 1`` for ``s == 0``: no rounding
        # constant as wide as the largest shift, and no add before the shift ---------------
        v5 = reg(v4, "v5", 1)
        on5 = reg(on4, "on5", 1)
        out_addr5 = reg(out_addr4, "out_addr5", ow)
        count5 = reg(count4, "count5", range(P * e + 1))
        pres = [reg(Mux(shift_0, prod * 2, prod >> shift_m1), f"pre6_{j}",
                    signed(prod_bits + 1)) for j, prod in enumerate(prods)]

        # Stage 6: round and clamp. ``(pre + 1) >> 1`` is below ``act_lo`` exactly when
        # ``pre < 2 * act_lo - 1`` and above ``act_hi`` when ``pre > 2 * act_hi``: the
        # compares read ``pre`` in parallel with the rounding add, which only the output's
        # bits need -----------------------------------------------------------------------
        v6 = reg(v5, "v6", 1)
        on6 = reg(on5, "on6", 1)
        out_addr6 = reg(out_addr5, "out_addr6", ow)
        count6 = reg(count5, "count6", range(P * e + 1))
        a = arch.act_bits
        rounded = []
        for j, pre in enumerate(pres):
            rounded.append((reg(pre < below, f"under7_{j}", 1),
                            reg(pre > above, f"over7_{j}", 1),
                            reg((pre[:a + 1] + 1)[1:a + 1], f"low7_{j}", a)))

        # Stage 6b: the clamp's select, from the registered compares ----------------------
        v6b = reg(v6, "v6b", 1)
        on6b = reg(on6, "on6b", 1)
        out_addr6b = reg(out_addr6, "out_addr6b", ow)
        count6b = reg(count6, "count6b", range(P * e + 1))
        ys = []
        for j, (under, over, low) in enumerate(rounded):
            y = Signal(signed(a), name=f"y_{j}")
            m.d.comb += y.eq(Mux(under, act_lo, Mux(over, act_hi, low)))
            ys.append(y)

        # Stage 7: OBUF write, from registers (the core's write multiplexer and the
        # buffer's lane rotation follow) ---------------------------------------------------
        v7 = reg(v6b & on6b, "v7", 1)
        data7 = reg(bytes_from_lanes(ys, arch.act_bits), "data7", len(self.obuf0_w_data))
        out_addr7 = reg(out_addr6b, "out_addr7", ow)
        count7 = reg(count6b, "count7", range(P * e + 1))
        addr, data_, count = self.obuf_port(0)
        m.d.comb += [addr.eq(out_addr7), data_.eq(data7)]
        with m.If(v7):
            m.d.comb += count.eq(count7)

        m.d.comb += self.busy.eq(setup | running | v1_read | Cat(*waits).any() | v1b | v2 | v3
                                 | v4 | v5 | v6 | v6b | v7)
        return m
