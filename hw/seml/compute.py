"""COMPUTE unit of the SEML core: convolution, depthwise, pointwise and pooling tiles.

One datapath executes every COMPUTE form of ``docs/isa.md`` exactly, whatever the
kernel, stride, padding and fused pool: a loop generator walks output channel
``m``, pooled output row ``py``, a group of ``lanes`` pooled output columns
``px0 ..``, the fused-pool window ``(dy, dx)``, and the reduction taps (input
channel, ``ky``, ``kx``). Each lane is one output column, so the lanes share the
weight and their results are consecutive OBUF bytes (one write per group); each lane
reads its own input element through its own IBUF port (lane ``j`` reads column
``ix0 + j * stride_w * fpool_w``).

Pipeline (never stalls: OBUF has no other writer while it runs):

0. loop counters, buffer addresses, padding masks; IBUF / WBUF / PBUF reads;
1. read data; products (``hw.blocks.pe.MultiplierElement``, any weight scheme);
2. accumulate from the bias (sum, or max for a max pool, padding never winning);
3. ``acc * mult``;  4. rounding shift and clamp;  5. fused max pool and OBUF write.

Throughput: ``lanes`` MACs per cycle, one reduction tap per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch import ArchConfig
from ..blocks.pe import MultiplierElement
from ..isa import INSTRUCTION, Engine, Pool, element_bytes, weight_element_bytes
from .units import bytes_from_lanes, lanes_from_bytes, pbuf_layout

__all__ = ["ComputeUnit"]


class ComputeUnit(wiring.Component):
    """Executes COMPUTE instructions over IBUF / WBUF / PBUF into OBUF.

    Parameters
    ----------
    arch : ArchConfig
    lanes : int, optional
        Output columns computed in parallel (default ``max(conv_po, pw_po, dw_channels)``).

    Members
    -------
    start : In(1)
    instr : In(INSTRUCTION)
        A legal COMPUTE instruction (checked by the decoder), sampled with ``start``.
    busy : Out(1)
    ibuf{j}_addr, ibuf{j}_en, ibuf{j}_data : one IBUF read port per lane (one element).
    wbuf0_addr, wbuf0_en, wbuf0_data : the WBUF read port (one weight).
    pbuf0_addr, pbuf0_en, pbuf0_data : the PBUF read port.
    obuf_w_addr, obuf_w_data, obuf_w_count : the OBUF write port (``lanes`` elements).
    """

    def __init__(self, arch: ArchConfig, *, lanes=None):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        if lanes is None:
            lanes = max(arch.conv_po, arch.pw_po, arch.dw_channels)
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an integer, not {lanes!r}")
        if not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be between 1 and 64, not {lanes!r}")
        self.arch = arch
        self.lanes = lanes
        self._e = element_bytes(arch.act_bits)
        self._we = weight_element_bytes(arch)
        members = {
            "start": In(1),
            "instr": In(INSTRUCTION),
            "busy": Out(1),
            "obuf_w_addr": Out(range(arch.obuf_bytes)),
            "obuf_w_data": Out(8 * self._e * lanes),
            "obuf_w_count": Out(range(self._e * lanes + 1)),
            "wbuf0_addr": Out(range(arch.wbuf_bytes)),
            "wbuf0_en": Out(1),
            "wbuf0_data": In(8 * self._we),
            "pbuf0_addr": Out(range(max(arch.pbuf_entries, 2))),
            "pbuf0_en": Out(1),
            "pbuf0_data": In(pbuf_layout(arch)),
        }
        for j in range(lanes):
            members[f"ibuf{j}_addr"] = Out(range(arch.ibuf_bytes))
            members[f"ibuf{j}_en"] = Out(1)
            members[f"ibuf{j}_data"] = In(8 * self._e)
        super().__init__(members)

    # Port lists the core wires to the buffers.
    @property
    def ibuf_read_widths(self):
        return [self._e] * self.lanes

    @property
    def wbuf_read_widths(self):
        return [self._we]

    @property
    def pbuf_read_ports(self):
        return 1

    @property
    def obuf_write_width(self):
        return self._e * self.lanes

    def ibuf_port(self, j):
        return (getattr(self, f"ibuf{j}_addr"), getattr(self, f"ibuf{j}_en"),
                getattr(self, f"ibuf{j}_data"))

    def wbuf_port(self, i):
        return self.wbuf0_addr, self.wbuf0_en, self.wbuf0_data

    def pbuf_port(self, i):
        return self.pbuf0_addr, self.pbuf0_en, self.pbuf0_data

    def elaborate(self, platform):
        m = Module()
        arch = self.arch
        P = self.lanes
        e = self._e
        we = self._we
        c = self.instr.compute

        # Job configuration, latched at start --------------------------------------------
        cfg = {name: Signal(shape, name=f"cfg_{name}") for name, shape in (
            ("in_h", 16), ("in_w", 16), ("k_h", 16), ("k_w", 16), ("stride_h", 8),
            ("stride_w", 8), ("pad_top", 8), ("pad_left", 8), ("fh", 8), ("fw", 8),
            ("out_h", 16), ("out_w", 16), ("channels", 16), ("in_c", 16), ("nc", 16),
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
            m.d.sync += [
                running.eq(1),
                cfg["in_h"].eq(c.in_h), cfg["in_w"].eq(c.in_w),
                cfg["k_h"].eq(c.k_h), cfg["k_w"].eq(c.k_w),
                cfg["stride_h"].eq(c.stride_h), cfg["stride_w"].eq(c.stride_w),
                cfg["pad_top"].eq(c.pad_top), cfg["pad_left"].eq(c.pad_left),
                cfg["fh"].eq(Mux(fused, c.fpool_h, 1)), cfg["fw"].eq(Mux(fused, c.fpool_w, 1)),
                cfg["out_h"].eq(c.out_h), cfg["out_w"].eq(c.out_w),
                cfg["channels"].eq(Mux(c.engine == Engine.POOL, c.in_c, c.out_c)),
                cfg["in_c"].eq(c.in_c),
                cfg["nc"].eq(Mux((c.engine == Engine.CONV) | (c.engine == Engine.POINTWISE),
                                 c.in_c, 1)),
                cfg["ibuf_addr"].eq(c.ibuf_addr), cfg["wbuf_addr"].eq(c.wbuf_addr),
                cfg["pbuf_addr"].eq(c.pbuf_addr), cfg["obuf_addr"].eq(c.obuf_addr),
                cfg["mult"].eq(Mux(c.pool == Pool.AVG, c.mult, 1)),
                cfg["shift"].eq(Mux(c.pool == Pool.AVG, c.shift, 0)),
                act_lo.eq(c.act_lo), act_hi.eq(c.act_hi),
                weighted.eq(c.engine != Engine.POOL),
                own_channel.eq((c.engine == Engine.DEPTHWISE) | (c.engine == Engine.POOL)),
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
        last_ci = ci == cfg["nc"] - 1
        last_dx = dx == cfg["fw"] - 1
        last_dy = dy == cfg["fh"] - 1
        last_px = px0 + P >= cfg["out_w"]
        last_py = py == cfg["out_h"] - 1
        last_oc = oc == cfg["channels"] - 1
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
                    m.d.sync += [ky.eq(0), ci.eq(ci + 1)]
                    with m.If(last_ci):
                        m.d.sync += [ci.eq(0), dx.eq(dx + 1)]
                        with m.If(last_dx):
                            m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                            with m.If(last_dy):
                                m.d.sync += [dy.eq(0), px0.eq(px0 + P)]
                                with m.If(last_px):
                                    m.d.sync += [px0.eq(0), py.eq(py + 1)]
                                    with m.If(last_py):
                                        m.d.sync += [py.eq(0), oc.eq(oc + 1)]
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
        tap_ok = []
        for j in range(P):
            ix = Signal(signed(40), name=f"ix_{j}")
            m.d.comb += ix.eq(ix0 + j * lane_step)
            addr, en, _ = self.ibuf_port(j)
            m.d.comb += [
                addr.eq(cfg["ibuf_addr"] + (row_base + ix) * e),
                en.eq(1),
            ]
            tap_ok.append(row_ok & (ix >= 0) & (ix < cfg["in_w"]))
        w_index = ((oc * cfg["nc"] + ci) * cfg["k_h"] + ky) * cfg["k_w"] + kx
        m.d.comb += [
            self.wbuf0_addr.eq(cfg["wbuf_addr"] + w_index * we),
            self.wbuf0_en.eq(1),
            self.pbuf0_addr.eq(cfg["pbuf_addr"] + oc),
            self.pbuf0_en.eq(1),
        ]
        out_index = (oc * cfg["out_h"] + py) * cfg["out_w"] + px0
        left = cfg["out_w"] - px0

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
        ok1 = [reg(t, f"ok1_{j}", 1) for j, t in enumerate(tap_ok)]
        out_addr1 = reg(cfg["obuf_addr"] + out_index * e, "out_addr1", 32)
        count1 = reg(Mux(left < P, left, P) * e, "count1", range(P * e + 1))
        xs = [lanes_from_bytes(m, self.ibuf_port(j)[2], 1, arch.act_bits, f"x1_{j}")[0]
              for j in range(P)]
        weight = self.wbuf0_data
        params = self.pbuf0_data

        products = []
        for j in range(P):
            me = MultiplierElement(arch.weight_scheme, arch.act_bits, arch.weight_bits,
                                   arch.pot_exp_bits, registered=True)
            m.submodules[f"mul{j}"] = me
            code_bits = me.weight_shape.width
            m.d.comb += [me.a.eq(Mux(ok1[j], xs[j], 0)), me.w.eq(weight[:code_bits]),
                         me.en.eq(1)]
            products.append(me.p)

        # Stage 2: accumulate ------------------------------------------------------------
        acc_bits = arch.acc_bits
        v2 = reg(v1, "v2", 1)
        first_tap2 = reg(first_tap1, "first_tap2", 1)
        last_tap2 = reg(last_tap1, "last_tap2", 1)
        first_win2 = reg(first_win1, "first_win2", 1)
        last_win2 = reg(last_win1, "last_win2", 1)
        ok2 = [reg(o, f"ok2_{j}", 1) for j, o in enumerate(ok1)]
        x2 = [reg(x, f"x2_{j}", signed(arch.act_bits)) for j, x in enumerate(xs)]
        out_addr2 = reg(out_addr1, "out_addr2", 32)
        count2 = reg(count1, "count2", range(P * e + 1))
        bias2 = reg(params.bias, "bias2", signed(arch.bias_bits))
        mult2 = reg(Mux(weighted, params.mult, cfg["mult"]), "mult2", arch.mult_bits)
        shift2 = reg(Mux(weighted, params.shift, cfg["shift"]), "shift2", arch.shift_bits)

        accs = [Signal(signed(acc_bits), name=f"acc_{j}") for j in range(P)]
        seen = [Signal(name=f"seen_{j}") for j in range(P)]
        final = []
        for j in range(P):
            f = Signal(signed(acc_bits), name=f"final_{j}")
            with m.If(is_max):
                # A padded position never wins: until a real element is seen, the next
                # real element replaces whatever the accumulator holds.
                takes = ok2[j] & (first_tap2 | ~seen[j] | (x2[j] > accs[j]))
                m.d.comb += f.eq(Mux(takes, x2[j], accs[j]))
                with m.If(v2):
                    with m.If(ok2[j]):
                        m.d.sync += seen[j].eq(1)
                    with m.Elif(first_tap2):
                        m.d.sync += seen[j].eq(0)
            with m.Elif(weighted):
                m.d.comb += f.eq(Mux(first_tap2, bias2, accs[j]) + products[j])
            with m.Else():
                m.d.comb += f.eq(Mux(first_tap2, 0, accs[j]) + Mux(ok2[j], x2[j], 0))
            with m.If(v2):
                m.d.sync += accs[j].eq(f)
            final.append(f)

        # Stage 3: multiply by the requantization multiplier ----------------------------
        v3 = reg(v2 & last_tap2, "v3", 1)
        first_win3 = reg(first_win2, "first_win3", 1)
        last_win3 = reg(last_win2, "last_win3", 1)
        out_addr3 = reg(out_addr2, "out_addr3", 32)
        count3 = reg(count2, "count3", range(P * e + 1))
        shift3 = reg(shift2, "shift3", arch.shift_bits)
        mult3 = reg(mult2, "mult3", unsigned(arch.mult_bits))
        prod_bits = acc_bits + arch.mult_bits + 1
        acc3 = [reg(f, f"acc3_{j}", signed(acc_bits)) for j, f in enumerate(final)]
        prods = [Signal(signed(prod_bits), name=f"prod4_{j}") for j in range(P)]
        for j in range(P):
            m.d.sync += prods[j].eq(acc3[j] * mult3)

        # Stage 4: rounding shift and clamp -------------------------------------------------
        v4 = reg(v3, "v4", 1)
        first_win4 = reg(first_win3, "first_win4", 1)
        last_win4 = reg(last_win3, "last_win4", 1)
        out_addr4 = reg(out_addr3, "out_addr4", 32)
        count4 = reg(count3, "count4", range(P * e + 1))
        shift4 = reg(shift3, "shift4", arch.shift_bits)
        ys = []
        for j in range(P):
            rounding = Signal(prod_bits, name=f"round_{j}")
            m.d.comb += rounding.eq((Const(1, prod_bits) << shift4) >> 1)
            shifted = Signal(signed(prod_bits + 1), name=f"shifted_{j}")
            m.d.comb += shifted.eq((prods[j] + rounding) >> shift4)
            y = Signal(signed(arch.act_bits), name=f"y_{j}")
            m.d.comb += y.eq(Mux(shifted < act_lo, act_lo, Mux(shifted > act_hi, act_hi,
                                                                 shifted)))
            ys.append(y)

        # Stage 5: fused max pool and write --------------------------------------------------
        best = [Signal(signed(arch.act_bits), name=f"best_{j}") for j in range(P)]
        pooled = []
        for j in range(P):
            p = Signal(signed(arch.act_bits), name=f"pooled_{j}")
            m.d.comb += p.eq(Mux(first_win4 | (ys[j] > best[j]), ys[j], best[j]))
            pooled.append(p)
            with m.If(v4):
                m.d.sync += best[j].eq(p)
        m.d.comb += [
            self.obuf_w_addr.eq(out_addr4),
            self.obuf_w_data.eq(bytes_from_lanes(pooled, arch.act_bits)),
        ]
        with m.If(v4 & last_win4):
            m.d.comb += self.obuf_w_count.eq(count4)

        m.d.comb += self.busy.eq(running | v1 | v2 | v3 | v4)
        return m
