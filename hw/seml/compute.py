"""COMPUTE unit of the SEML core: convolution, depthwise, pointwise and pooling tiles.

One datapath executes every COMPUTE form of ``docs/isa.md`` exactly, whatever the
kernel, stride, padding and fused pool: a loop generator walks a group of output
channels ``m ..``, pooled output row ``py``, a group of ``lanes`` pooled output
columns ``px0 ..``, the fused-pool window ``(dy, dx)``, and the reduction taps (input
channel, ``ky``, ``kx``). An array of ``lanes x channels x reduce`` MACs works on each
step:
lane ``j`` is output column ``px0 + j``, so the lanes of one channel share the weight
and their results are consecutive OBUF bytes (one write per channel and group); each
lane reads its own input element through its own IBUF port (lane ``j`` reads column
``ix0 + j * stride_w * fpool_w``). CONV and POINTWISE share those inputs across
``channels`` output channels, each with its own WBUF and PBUF port and OBUF write
port, and take ``reduce`` input channels per tap (their products summed before the
accumulator); DEPTHWISE and POOL, whose output channel reads its own input channel,
use one channel at a time.

Pipeline (never stalls: OBUF has no other writer while it runs):

0. loop counters, buffer addresses, padding masks; IBUF / WBUF / PBUF reads;
1. read data; products (``hw.blocks.pe.MultiplierElement``, any weight scheme);
2. accumulate from the bias (sum, or max for a max pool, padding never winning);
3. ``acc * mult``;  4. rounding shift, clamp, fused max pool and OBUF write.

Latency: a group's results are written 4 cycles after its last reduction step; the
unit is idle again :data:`DRAIN_CYCLES` cycles after it, so an instruction keeps the
unit :func:`compute_steps` ``+ DRAIN_CYCLES`` cycles.

Throughput: one reduction step per cycle on ``lanes x channels x reduce`` MACs (CONV,
POINTWISE) or ``lanes`` MACs (DEPTHWISE, POOL).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.pe import MultiplierElement
from ..isa import INSTRUCTION, Engine, Pool, element_bytes, weight_element_bytes
from .units import bytes_from_lanes, lanes_from_bytes, pbuf_layout

__all__ = ["COMPUTE_LANES", "COMPUTE_REDUCE", "DRAIN_CYCLES", "ComputeUnit", "compute_steps"]

#: Output columns the core's compute unit computes in parallel (``lanes``).
COMPUTE_LANES = 8
#: Input channels its CONV / POINTWISE reduce in parallel (``reduce``).
COMPUTE_REDUCE = 2
#: Cycles from the last reduction step to the unit going idle: the four pipeline
#: stages after stage 0, plus the cycle ``busy`` falls in.
DRAIN_CYCLES = 5


def compute_steps(engine, pool, in_c, out_c, out_h, out_w, k_h, k_w, fpool_h, fpool_w, *,
                  lanes, channels, reduce):
    """Reduction steps (cycles of stage 0) of one COMPUTE instruction: the loop nest of
    :class:`ComputeUnit` (channel group, pooled row, column group, fused-pool window,
    input-channel group, ``k_h``, ``k_w``)."""
    shared = engine in (Engine.CONV, Engine.POINTWISE)
    fused = engine is not Engine.POOL and pool is Pool.MAX
    fh, fw = (fpool_h, fpool_w) if fused else (1, 1)
    nc = in_c if shared else 1
    step = channels if shared else 1
    planes = in_c if engine is Engine.POOL else out_c
    return (-(-planes // step) * out_h * -(-out_w // lanes) * fh * fw * -(-nc // reduce)
            * k_h * k_w)


class ComputeUnit(wiring.Component):
    """Executes COMPUTE instructions over IBUF / WBUF / PBUF into OBUF.

    Parameters
    ----------
    arch : ArchConfig
    lanes : int, optional
        Output columns computed in parallel (default 8).
    channels : int, optional
        Output channels computed in parallel by CONV and POINTWISE (default ``conv_po``).
    reduce : int, optional
        Input channels reduced in parallel by CONV and POINTWISE (default 2).

    Members
    -------
    start : In(1)
    instr : In(INSTRUCTION)
        A legal COMPUTE instruction (checked by the decoder), sampled with ``start``.
    busy : Out(1)
    ibuf{i}_addr, ibuf{i}_en, ibuf{i}_data : one IBUF read port per lane and reduced input
        channel (one element); port ``r * lanes + j``.
    wbuf{i}_addr, wbuf{i}_en, wbuf{i}_data : one WBUF read port per output and reduced
        input channel (one weight); port ``r * channels + q``.
    pbuf{q}_addr, pbuf{q}_en, pbuf{q}_data : one PBUF read port per channel.
    obuf{q}_w_addr, obuf{q}_w_data, obuf{q}_w_count : one OBUF write port per channel
        (``lanes`` elements).
    """

    def __init__(self, arch: ArchConfig, *, lanes=COMPUTE_LANES, channels=None,
                 reduce=COMPUTE_REDUCE, pool_only=False):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        if not isinstance(pool_only, bool):
            raise TypeError(f"pool_only must be a bool, not {pool_only!r}")
        if pool_only:
            channels, reduce = 1, 1
        if channels is None:
            channels = arch.conv_po
        for name, value in (("lanes", lanes), ("channels", channels), ("reduce", reduce)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not 1 <= value <= 64:
                raise ValueError(f"{name} must be between 1 and 64, not {value!r}")
        self.arch = arch
        self.lanes = lanes
        self.channels = channels
        self.reduce = reduce
        self.pool_only = pool_only
        self._e = element_bytes(arch.act_bits)
        self._we = weight_element_bytes(arch)
        members = {
            "start": In(1),
            "instr": In(INSTRUCTION),
            "busy": Out(1),
        }
        for q in range(channels):
            members.update({
                f"obuf{q}_w_addr": Out(range(arch.obuf_bytes)),
                f"obuf{q}_w_data": Out(8 * self._e * lanes),
                f"obuf{q}_w_count": Out(range(self._e * lanes + 1)),
            })
            if pool_only:
                continue
            members.update({
                f"pbuf{q}_addr": Out(range(max(arch.pbuf_entries, 2))),
                f"pbuf{q}_en": Out(1),
                f"pbuf{q}_data": In(pbuf_layout(arch)),
            })
        for i in range(0 if pool_only else channels * reduce):
            members.update({
                f"wbuf{i}_addr": Out(range(arch.wbuf_bytes)),
                f"wbuf{i}_en": Out(1),
                f"wbuf{i}_data": In(8 * self._we),
            })
        for i in range(lanes * reduce):
            members[f"ibuf{i}_addr"] = Out(range(arch.ibuf_bytes))
            members[f"ibuf{i}_en"] = Out(1)
            members[f"ibuf{i}_data"] = In(8 * self._e)
        super().__init__(members)

    # Port lists the core wires to the buffers.
    @property
    def ibuf_read_widths(self):
        return [self._e] * (self.lanes * self.reduce)

    @property
    def wbuf_read_widths(self):
        return [] if self.pool_only else [self._we] * (self.channels * self.reduce)

    @property
    def pbuf_read_ports(self):
        return 0 if self.pool_only else self.channels

    @property
    def obuf_write_width(self):
        return self._e * self.lanes

    @property
    def obuf_write_widths(self):
        return [self.obuf_write_width] * self.channels

    def _port(self, prefix, *fields):
        return tuple(getattr(self, f"{prefix}_{name}") for name in fields)

    def ibuf_port(self, j):
        return self._port(f"ibuf{j}", "addr", "en", "data")

    def wbuf_port(self, q):
        return self._port(f"wbuf{q}", "addr", "en", "data")

    def pbuf_port(self, q):
        return self._port(f"pbuf{q}", "addr", "en", "data")

    def obuf_port(self, q):
        return self._port(f"obuf{q}", "w_addr", "w_data", "w_count")

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        P = self.lanes
        Q = self.channels
        R = self.reduce
        e = self._e
        we = self._we
        c = self.instr.compute

        # Job configuration, latched at start --------------------------------------------
        cfg = {name: Signal(shape, name=f"cfg_{name}") for name, shape in (
            ("in_h", 16), ("in_w", 16), ("k_h", 16), ("k_w", 16), ("stride_h", 8),
            ("stride_w", 8), ("pad_top", 8), ("pad_left", 8), ("fh", 8), ("fw", 8),
            ("out_h", 16), ("out_w", 16), ("channels", 16), ("nc", 16), ("oc_step", 8),
            ("plane_in", 32),
            ("ibuf_addr", 32), ("wbuf_addr", 32), ("pbuf_addr", 32), ("obuf_addr", 32),
            ("mult", arch.mult_bits), ("shift", arch.shift_bits))}
        act_lo = Signal(signed(arch.act_bits))
        act_hi = Signal(signed(arch.act_bits))
        weighted = Signal()   # CONV, DEPTHWISE, POINTWISE: bias, weights, per-channel requant
        own_channel = Signal()  # DEPTHWISE, POOL: output channel m reads input channel m
        is_max = Signal()     # POOL MAX
        running = Signal()
        with m.If(self.start):
            fused = (c.engine != Engine.POOL) & (c.pool == Pool.MAX)
            shared = (c.engine == Engine.CONV) | (c.engine == Engine.POINTWISE)
            m.d.sync += [
                running.eq(1),
                cfg["in_h"].eq(c.in_h), cfg["in_w"].eq(c.in_w),
                cfg["k_h"].eq(c.k_h), cfg["k_w"].eq(c.k_w),
                cfg["stride_h"].eq(c.stride_h), cfg["stride_w"].eq(c.stride_w),
                cfg["pad_top"].eq(c.pad_top), cfg["pad_left"].eq(c.pad_left),
                cfg["fh"].eq(Mux(fused, c.fpool_h, 1)), cfg["fw"].eq(Mux(fused, c.fpool_w, 1)),
                cfg["out_h"].eq(c.out_h), cfg["out_w"].eq(c.out_w),
                cfg["channels"].eq(Mux(c.engine == Engine.POOL, c.in_c, c.out_c)),
                cfg["nc"].eq(Mux(shared, c.in_c, 1)),
                cfg["oc_step"].eq(Mux(shared, Q, 1)),
                cfg["plane_in"].eq(c.in_h * c.in_w * element_bytes(arch.act_bits)),
                cfg["ibuf_addr"].eq(c.ibuf_addr), cfg["wbuf_addr"].eq(c.wbuf_addr),
                cfg["pbuf_addr"].eq(c.pbuf_addr), cfg["obuf_addr"].eq(c.obuf_addr),
                cfg["mult"].eq(Mux(c.pool == Pool.AVG, c.mult, 1)),
                cfg["shift"].eq(Mux(c.pool == Pool.AVG, c.shift, 0)),
                act_lo.eq(c.act_lo), act_hi.eq(c.act_hi),
                weighted.eq((c.engine != Engine.POOL) & (not self.pool_only)),
                own_channel.eq(~shared),
                is_max.eq((c.engine == Engine.POOL) & (c.pool == Pool.MAX)),
            ]

        # Stage 0: loop counters ---------------------------------------------------------
        oc = Signal(16)
        py = Signal(16)
        px0 = Signal(16)
        dy = Signal(8)
        dx = Signal(8)
        ci = Signal(16)
        ky = Signal(16)
        kx = Signal(16)
        last_kx = kx == cfg["k_w"] - 1
        last_ky = ky == cfg["k_h"] - 1
        last_ci = ci + R >= cfg["nc"]
        last_dx = dx == cfg["fw"] - 1
        last_dy = dy == cfg["fh"] - 1
        last_px = px0 + P >= cfg["out_w"]
        last_py = py == cfg["out_h"] - 1
        last_oc = oc + cfg["oc_step"] >= cfg["channels"]
        last_tap = last_kx & last_ky & last_ci
        last_win = last_dx & last_dy
        first_tap = (kx == 0) & (ky == 0) & (ci == 0)
        first_win = (dx == 0) & (dy == 0)
        with m.If(self.start):
            m.d.sync += [oc.eq(0), py.eq(0), px0.eq(0), dy.eq(0), dx.eq(0), ci.eq(0),
                         ky.eq(0), kx.eq(0)]
        with m.Elif(running):
            m.d.sync += kx.eq(kx + 1)
            with m.If(last_kx):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                with m.If(last_ky):
                    m.d.sync += [ky.eq(0), ci.eq(ci + R)]
                    with m.If(last_ci):
                        m.d.sync += [ci.eq(0), dx.eq(dx + 1)]
                        with m.If(last_dx):
                            m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                            with m.If(last_dy):
                                m.d.sync += [dy.eq(0), px0.eq(px0 + P)]
                                with m.If(last_px):
                                    m.d.sync += [px0.eq(0), py.eq(py + 1)]
                                    with m.If(last_py):
                                        m.d.sync += [py.eq(0), oc.eq(oc + cfg["oc_step"])]
                                        with m.If(last_oc):
                                            m.d.sync += running.eq(0)

        # Addresses and padding masks.
        chan = Mux(own_channel, oc, ci)
        iy = Signal(signed(40))
        ix0 = Signal(signed(40))
        lane_step = Signal(16)
        m.d.comb += [
            iy.eq((py * cfg["fh"] + dy) * cfg["stride_h"] + ky - cfg["pad_top"]),
            ix0.eq((px0 * cfg["fw"] + dx) * cfg["stride_w"] + kx - cfg["pad_left"]),
            lane_step.eq(cfg["fw"] * cfg["stride_w"]),
        ]
        row_ok = (iy >= 0) & (iy < cfg["in_h"])
        row_base = Signal(signed(48))
        m.d.comb += row_base.eq((chan * cfg["in_h"] + iy) * cfg["in_w"])
        # Reduced input channel ``r`` is ``ci + r`` (CONV, POINTWISE; none past ``nc``),
        # one plane further on in IBUF.
        tap_ok = [[None] * P for _ in range(R)]
        for j in range(P):
            ix = Signal(signed(40), name=f"ix_{j}")
            m.d.comb += ix.eq(ix0 + j * lane_step)
            col_ok = row_ok & (ix >= 0) & (ix < cfg["in_w"])
            for r in range(R):
                addr, en, _ = self.ibuf_port(r * P + j)
                m.d.comb += [
                    addr.eq(cfg["ibuf_addr"] + (row_base + ix) * e + r * cfg["plane_in"]),
                    en.eq(1),
                ]
                tap_ok[r][j] = col_ok & ((ci + r) < cfg["nc"]) if r else col_ok
        # Channel ``q`` of the group is output channel ``oc + q``; the weights of
        # consecutive output channels are ``nc * k_h * k_w`` apart.
        w_index = ((oc * cfg["nc"] + ci) * cfg["k_h"] + ky) * cfg["k_w"] + kx
        w_stride = Signal(32)
        m.d.comb += w_stride.eq(cfg["nc"] * cfg["k_h"] * cfg["k_w"] * we)
        plane = Signal(32)
        m.d.comb += plane.eq(cfg["out_h"] * cfg["out_w"] * e)
        taps = Signal(16)
        m.d.comb += taps.eq(cfg["k_h"] * cfg["k_w"] * we)
        for q in range(0 if self.pool_only else Q):
            paddr, pen, _ = self.pbuf_port(q)
            m.d.comb += [paddr.eq(cfg["pbuf_addr"] + oc + q), pen.eq(1)]
            for r in range(R):
                waddr, wen, _ = self.wbuf_port(r * Q + q)
                m.d.comb += [
                    waddr.eq(cfg["wbuf_addr"] + w_index * we + q * w_stride + r * taps),
                    wen.eq(1),
                ]
        out_index = (oc * cfg["out_h"] + py) * cfg["out_w"] + px0
        left = cfg["out_w"] - px0
        chan_on = [oc < cfg["channels"]] + [(oc + q < cfg["channels"]) & ~own_channel
                                            for q in range(1, Q)]

        # Stage 1: read data, products -----------------------------------------------------
        def reg(value, name, shape=None):
            sig = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += sig.eq(value)
            return sig

        v1 = reg(running & ~self.start, "v1", 1)
        first_tap1 = reg(first_tap, "first_tap1", 1)
        last_tap1 = reg(last_tap, "last_tap1", 1)
        first_win1 = reg(first_win, "first_win1", 1)
        last_win1 = reg(last_win, "last_win1", 1)
        ok1 = [[reg(t, f"ok1_{r}_{j}", 1) for j, t in enumerate(row)]
               for r, row in enumerate(tap_ok)]
        on1 = [reg(o, f"on1_{q}", 1) for q, o in enumerate(chan_on)]
        out_addr1 = reg(cfg["obuf_addr"] + out_index * e, "out_addr1", 32)
        plane1 = reg(plane, "plane1", 32)
        count1 = reg(Mux(left < P, left, P) * e, "count1", range(P * e + 1))
        xr = [[lanes_from_bytes(m, self.ibuf_port(r * P + j)[2], 1, arch.act_bits,
                                f"x1_{r}_{j}")[0] for j in range(P)] for r in range(R)]
        xs = xr[0]

        # ``products[q][j]`` sums the ``R`` reduced channels' products of lane ``j``.
        products = [[Const(0, 1)] * P for _ in range(Q)]
        for q in range(0 if self.pool_only else Q):
            for j in range(P):
                terms = []
                for r in range(R):
                    weight = self.wbuf_port(r * Q + q)[2]
                    me = MultiplierElement(arch.weight_scheme, arch.act_bits, arch.weight_bits,
                                           arch.pot_exp_bits, registered=True)
                    m.submodules[f"mul{q}_{j}_{r}"] = me
                    code_bits = me.weight_shape.width
                    m.d.comb += [me.a.eq(Mux(ok1[r][j], xr[r][j], 0)),
                                 me.w.eq(weight[:code_bits]), me.en.eq(1)]
                    terms.append(me.p)
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                products[q][j] = total

        # Stage 2: accumulate ------------------------------------------------------------
        acc_bits = arch.acc_bits
        v2 = reg(v1, "v2", 1)
        first_tap2 = reg(first_tap1, "first_tap2", 1)
        last_tap2 = reg(last_tap1, "last_tap2", 1)
        first_win2 = reg(first_win1, "first_win2", 1)
        last_win2 = reg(last_win1, "last_win2", 1)
        ok2 = [reg(o, f"ok2_{j}", 1) for j, o in enumerate(ok1[0])]
        on2 = [reg(o, f"on2_{q}", 1) for q, o in enumerate(on1)]
        x2 = [reg(x, f"x2_{j}", signed(arch.act_bits)) for j, x in enumerate(xs)]
        out_addr2 = reg(out_addr1, "out_addr2", 32)
        plane2 = reg(plane1, "plane2", 32)
        count2 = reg(count1, "count2", range(P * e + 1))
        bias2, mult2, shift2 = [], [], []
        for q in range(Q):
            if self.pool_only:
                bias2.append(Const(0, signed(arch.bias_bits)))
                mult2.append(reg(cfg["mult"], f"mult2_{q}", arch.mult_bits))
                shift2.append(reg(cfg["shift"], f"shift2_{q}", arch.shift_bits))
                continue
            params = self.pbuf_port(q)[2]
            bias2.append(reg(params.bias, f"bias2_{q}", signed(arch.bias_bits)))
            mult2.append(reg(Mux(weighted, params.mult, cfg["mult"]), f"mult2_{q}",
                             arch.mult_bits))
            shift2.append(reg(Mux(weighted, params.shift, cfg["shift"]), f"shift2_{q}",
                              arch.shift_bits))

        finals = [[None] * P for _ in range(Q)]
        for q in range(Q):
            for j in range(P):
                acc = Signal(signed(acc_bits), name=f"acc_{q}_{j}")
                f = Signal(signed(acc_bits), name=f"final_{q}_{j}")
                if q == 0:
                    # Max pooling runs on channel 0 only (POOL uses one channel at a time).
                    seen = Signal(name=f"seen_{j}")
                    with m.If(is_max):
                        # A padded position never wins: until a real element is seen, the
                        # next real element replaces whatever the accumulator holds.
                        takes = ok2[j] & (first_tap2 | ~seen | (x2[j] > acc))
                        m.d.comb += f.eq(Mux(takes, x2[j], acc))
                        with m.If(v2):
                            with m.If(ok2[j]):
                                m.d.sync += seen.eq(1)
                            with m.Elif(first_tap2):
                                m.d.sync += seen.eq(0)
                    with m.Elif(weighted):
                        m.d.comb += f.eq(Mux(first_tap2, bias2[q], acc) + products[q][j])
                    with m.Else():
                        m.d.comb += f.eq(Mux(first_tap2, 0, acc) + Mux(ok2[j], x2[j], 0))
                else:
                    m.d.comb += f.eq(Mux(first_tap2, bias2[q], acc) + products[q][j])
                with m.If(v2):
                    m.d.sync += acc.eq(f)
                finals[q][j] = f

        # Stage 3: multiply by the requantization multiplier ----------------------------
        v3 = reg(v2 & last_tap2, "v3", 1)
        first_win3 = reg(first_win2, "first_win3", 1)
        last_win3 = reg(last_win2, "last_win3", 1)
        on3 = [reg(o, f"on3_{q}", 1) for q, o in enumerate(on2)]
        out_addr3 = reg(out_addr2, "out_addr3", 32)
        plane3 = reg(plane2, "plane3", 32)
        count3 = reg(count2, "count3", range(P * e + 1))
        shift3 = [reg(s, f"shift3_{q}", arch.shift_bits) for q, s in enumerate(shift2)]
        mult3 = [reg(s, f"mult3_{q}", unsigned(arch.mult_bits)) for q, s in enumerate(mult2)]
        prod_bits = acc_bits + arch.mult_bits + 1
        prods = [[None] * P for _ in range(Q)]
        for q in range(Q):
            for j in range(P):
                acc3 = reg(finals[q][j], f"acc3_{q}_{j}", signed(acc_bits))
                prod = Signal(signed(prod_bits), name=f"prod4_{q}_{j}")
                m.d.sync += prod.eq(acc3 * mult3[q])
                prods[q][j] = prod

        # Stage 4: rounding shift, clamp, fused max pool and write ----------------------------
        v4 = reg(v3, "v4", 1)
        first_win4 = reg(first_win3, "first_win4", 1)
        last_win4 = reg(last_win3, "last_win4", 1)
        on4 = [reg(o, f"on4_{q}", 1) for q, o in enumerate(on3)]
        out_addr4 = reg(out_addr3, "out_addr4", 32)
        plane4 = reg(plane3, "plane4", 32)
        count4 = reg(count3, "count4", range(P * e + 1))
        shift4 = [reg(s, f"shift4_{q}", arch.shift_bits) for q, s in enumerate(shift3)]
        for q in range(Q):
            rounding = Signal(prod_bits, name=f"round_{q}")
            m.d.comb += rounding.eq((Const(1, prod_bits) << shift4[q]) >> 1)
            pooled = []
            for j in range(P):
                shifted = Signal(signed(prod_bits + 1), name=f"shifted_{q}_{j}")
                m.d.comb += shifted.eq((prods[q][j] + rounding) >> shift4[q])
                y = Signal(signed(arch.act_bits), name=f"y_{q}_{j}")
                m.d.comb += y.eq(Mux(shifted < act_lo, act_lo,
                                     Mux(shifted > act_hi, act_hi, shifted)))
                best = Signal(signed(arch.act_bits), name=f"best_{q}_{j}")
                p = Signal(signed(arch.act_bits), name=f"pooled_{q}_{j}")
                m.d.comb += p.eq(Mux(first_win4 | (y > best), y, best))
                with m.If(v4):
                    m.d.sync += best.eq(p)
                pooled.append(p)
            addr, data_, count = self.obuf_port(q)
            m.d.comb += [
                addr.eq(out_addr4 + q * plane4),
                data_.eq(bytes_from_lanes(pooled, arch.act_bits)),
            ]
            with m.If(v4 & last_win4 & on4[q]):
                m.d.comb += count.eq(count4)

        m.d.comb += self.busy.eq(running | v1 | v2 | v3 | v4)
        return m
