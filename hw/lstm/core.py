"""Descartes LSTM core: CSC sparse matrix-vector engine with N PEs, element-wise unit with
sigmoid/tanh tables, scheduler, AXI4 master (:class:`hw.seml.dma.AxiDma`) and AXI4-Lite
control (:class:`hw.seml.csr.ControlStatusRegisters`).

One run executes the descriptor list at ``PROG_BASE`` (a header and one 64-byte
descriptor per layer, :mod:`hw.lstm.config`); descriptor offsets are relative to
``DATA_BASE``. Per layer: the CSC entries, column pointers and biases are loaded into
the PEs' memories, then each time step

1. the broadcaster reads the input vector ``[x_t; h_{t-1}]`` one element per cycle from
   the activation buffers and pushes it, with each PE's column end pointer, into every
   PE's activation FIFO (when all have room);
2. each PE decodes one CSC entry per cycle (12-bit weight, 4-bit relative row index),
   multiplies it by the column's activation and accumulates into its activation
   (accumulator) buffer at that row — read, add, write in a three-stage pipeline;
3. the element-wise unit reads the four gate sums of one hidden unit per cycle (rows
   ``4k..4k+3`` live in four PEs at the same local row), clears them, adds the bias,
   looks up sigmoid/tanh tables, updates the cell state and writes ``h_t``.

The input ``x_{t+1}`` is fetched while step ``t`` computes, and ``h_t`` is written to
DDR while step ``t + 1`` computes. Errors (bad header, arch mismatch, out-of-range
descriptor field, bus error) stop the run with an :class:`hw.isa.ErrorCode` and
``error_info`` = the layer index; the core never waits on anything that cannot come.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out
from amaranth.utils import exact_log2

from ..blocks.requant import clamp, round_shift
from ..isa import ErrorCode, qrange
from ..seml.csr import ControlStatusRegisters
from ..seml.dma import AxiDma
from .config import (
    CELL_BITS,
    CELL_FRAC,
    DESC_BYTES,
    HEADER_MAGIC,
    KIND_LINEAR,
    LAYER_FIELDS,
    TABLE_IN_BITS,
    TABLE_IN_FRAC,
    TABLE_OUT_FRAC,
    VERSION,
    LstmArch,
    sigmoid_table,
    tanh_table,
)

__all__ = ["LstmCore"]

_T_DESC, _T_W, _T_PTR, _T_BIAS, _T_X = range(5)


def _clamp(m, x, bits, name):
    out = Signal(signed(bits), name=name)
    m.d.comb += out.eq(clamp(x, *qrange(bits)))
    return out


def _round_shift(m, x, shift, name):
    """``round_shift(x, shift)`` (:func:`hw.blocks.requant.round_shift`) for ``shift >= 1``:
    a constant or a 6-bit shift signal."""
    if isinstance(shift, int):
        shift = Const(shift, 6)
    out = Signal(signed(len(x) + 1), name=name)
    m.d.comb += out.eq(round_shift(m, x, shift, len(shift)))
    return out


class LstmCore(wiring.Component):
    """The whole core: ``m_axi_*`` (AXI4 master) and ``s_axil_*`` (AXI4-Lite slave)."""

    def __init__(self, arch: LstmArch):
        if not isinstance(arch, LstmArch):
            raise TypeError(f"arch must be an LstmArch, not {arch!r}")
        self.arch = arch
        self._dma = AxiDma(data_bits=arch.data_bits, addr_bits=arch.addr_bits, max_burst=16,
                           outstanding=4)
        self._csr = ControlStatusRegisters(addr_bits=arch.addr_bits, trace_depth=512)
        members = {}
        for src in (self._dma, self._csr):
            for name, member in src.signature.members.items():
                if name.startswith(("m_axi_", "s_axil_")):
                    members[name] = member
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        a = self.arch
        m = Module()
        m.submodules.dma = dma = self._dma
        m.submodules.csr = csr = self._csr
        for name, member in self.signature.members.items():
            if name == "irq":
                continue
            src = dma if name.startswith("m_axi_") else csr
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(getattr(src, name))
            else:
                m.d.comb += getattr(src, name).eq(getattr(self, name))
        m.d.comb += self.irq.eq(csr.irq)

        n, g_cnt = a.n_pe, a.groups
        log_n, log_g = exact_log2(n), exact_log2(g_cnt)
        xbits = exact_log2(a.max_input)
        exact_log2(a.weight_depth)
        abits = max(1, exact_log2(a.acc_depth))
        addr_w = a.addr_bits

        # Layer fields --------------------------------------------------------------------
        dsr = Signal(DESC_BYTES * 8)          # descriptor being loaded, item 0 in the LSBs
        words = [dsr[32 * i:32 * i + 32] for i in range(16)]
        fld = {name: Signal(32, name=f"f_{name}") for name in LAYER_FIELDS}
        isz, hid, steps = fld["input_size"], fld["hidden"], fld["steps"]
        ents, gsh = fld["entries"], fld["gate_shift"]
        linear = Signal()   # a linear layer: columns x only, outputs requantized sums
        cols = Signal(17)
        rows = Signal(16)   # 4 * hidden / n: rows of each PE
        m.d.comb += [linear.eq(fld["kind"] == KIND_LINEAR),
                     cols.eq(Mux(linear, isz, isz + hid)), rows.eq((hid << 2) >> log_n)]

        # Memories ------------------------------------------------------------------------
        wmem = [Memory(shape=16, depth=a.weight_depth, init=[]) for _ in range(n)]
        pmem = [Memory(shape=16, depth=a.max_cols, init=[]) for _ in range(n)]
        amem = [Memory(shape=signed(a.acc_bits), depth=a.acc_depth, init=[]) for _ in range(n)]
        xmem = Memory(shape=16, depth=2 * a.max_input, init=[])
        hmem = Memory(shape=16, depth=a.max_hidden, init=[])
        omem = [Memory(shape=16, depth=max(1, a.max_hidden // 4), init=[]) for _ in range(4)]
        bmem = Memory(shape=128, depth=a.max_hidden, init=[])
        cmem = Memory(shape=signed(CELL_BITS), depth=a.max_hidden, init=[])
        sig = [Memory(shape=16, depth=1 << TABLE_IN_BITS, init=sigmoid_table())
               for _ in range(3)]
        tnh = [Memory(shape=signed(16), depth=1 << TABLE_IN_BITS, init=tanh_table())
               for _ in range(2)]
        for i in range(n):
            m.submodules[f"w{i}"] = wmem[i]
            m.submodules[f"p{i}"] = pmem[i]
            m.submodules[f"acc{i}"] = amem[i]
        for name, mem in (("xbuf", xmem), ("hbuf", hmem), ("bias", bmem), ("cell", cmem)):
            m.submodules[name] = mem
        for i in range(4):
            m.submodules[f"obuf{i}"] = omem[i]
        for i in range(3):
            m.submodules[f"sigmoid{i}"] = sig[i]
        for i in range(2):
            m.submodules[f"tanh{i}"] = tnh[i]
        w_wr = [mem.write_port() for mem in wmem]
        w_rd = [mem.read_port() for mem in wmem]
        p_wr = [mem.write_port() for mem in pmem]
        p_rd = [mem.read_port() for mem in pmem]
        a_wr = [mem.write_port() for mem in amem]
        a_rd = [mem.read_port(transparent_for=(wp,)) for mem, wp in zip(amem, a_wr)]
        x_wr, x_rd = xmem.write_port(), xmem.read_port()
        h_wr, h_rd = hmem.write_port(), hmem.read_port()
        o_wr = [mem.write_port() for mem in omem]
        o_rd = [mem.read_port() for mem in omem]
        b_wr, b_rd = bmem.write_port(), bmem.read_port()
        c_wr, c_rd = cmem.write_port(), cmem.read_port()
        s_rd = [mem.read_port() for mem in sig]
        t_rd = [mem.read_port() for mem in tnh]

        # Loader: DMA read words -> 16-bit items -> a target memory ---------------------
        ld_active = Signal()
        ld_target = Signal(3)
        ld_left = Signal(32)      # items still to write
        ld_count = Signal(32)     # items per PE (weights, pointers)
        ld_a = Signal(32)
        ld_p = Signal(range(n + 1))
        ld_sub = Signal(3)
        ld_xsel = Signal()
        lw = Signal(64)
        lw_valid = Signal()
        lw_last = Signal()
        lane = Signal(2)
        bsr = Signal(112)
        ld_done = Signal()
        item = Signal(16)
        m.d.comb += [
            item.eq(lw.word_select(lane, 16)),
            dma.rd_data.ready.eq(ld_active & (~lw_valid | (lane == 3))),
        ]
        with m.If(dma.rd_data.valid & dma.rd_data.ready):
            m.d.sync += [lw.eq(dma.rd_data.payload.data), lw_valid.eq(1),
                         lw_last.eq(dma.rd_data.payload.last), lane.eq(0)]
        with m.Elif(lw_valid & (lane == 3)):
            m.d.sync += lw_valid.eq(0)
        with m.If(lw_valid):
            m.d.sync += lane.eq(lane + 1)
            with m.If((lane == 3) & lw_last):
                m.d.comb += ld_done.eq(1)
                m.d.sync += ld_active.eq(0)
        write_item = Signal()
        m.d.comb += write_item.eq(lw_valid & (ld_left != 0))
        with m.If(write_item):
            m.d.sync += ld_left.eq(ld_left - 1)
            with m.Switch(ld_target):
                with m.Case(_T_DESC):
                    m.d.sync += dsr.eq(Cat(dsr[16:], item))
                with m.Case(_T_W, _T_PTR):
                    last_a = ld_a == ld_count - 1
                    m.d.sync += [ld_a.eq(Mux(last_a, 0, ld_a + 1)),
                                 ld_p.eq(ld_p + last_a)]
                with m.Case(_T_BIAS):
                    m.d.sync += [bsr.eq(Cat(bsr[16:], item)), ld_sub.eq(ld_sub + 1)]
                    with m.If(ld_sub == 7):
                        m.d.sync += ld_a.eq(ld_a + 1)
                with m.Case(_T_X):
                    m.d.sync += ld_a.eq(ld_a + 1)
        for i in range(n):
            m.d.comb += [
                w_wr[i].addr.eq(ld_a), w_wr[i].data.eq(item),
                w_wr[i].en.eq(write_item & (ld_target == _T_W) & (ld_p == i)),
                p_wr[i].addr.eq(ld_a), p_wr[i].data.eq(item),
                p_wr[i].en.eq(write_item & (ld_target == _T_PTR) & (ld_p == i)),
            ]
        m.d.comb += [
            b_wr.addr.eq(ld_a), b_wr.data.eq(Cat(bsr, item)),
            b_wr.en.eq(write_item & (ld_target == _T_BIAS) & (ld_sub == 7)),
            x_wr.addr.eq(Cat(ld_a[:xbits], ld_xsel)), x_wr.data.eq(item),
            x_wr.en.eq(write_item & (ld_target == _T_X)),
        ]

        def start_load(target, nbytes, addr, count=0, xsel=0):
            """Statements issuing one read (the caller holds ``rd_cmd.valid``)."""
            m.d.comb += [dma.rd_cmd.valid.eq(1), dma.rd_cmd.payload.addr.eq(addr),
                         dma.rd_cmd.payload.rows.eq(1), dma.rd_cmd.payload.row_bytes.eq(nbytes),
                         dma.rd_cmd.payload.stride.eq(0)]
            return [ld_active.eq(1), ld_target.eq(target), ld_left.eq(nbytes >> 1),
                    ld_count.eq(count), ld_a.eq(0), ld_p.eq(0), ld_sub.eq(0),
                    ld_xsel.eq(xsel)]

        # Broadcaster + PEs (matrix-vector phase) ------------------------------------------
        bc_start = Signal()
        bc_run = Signal()
        bc_col = Signal(17)
        bc_valid = Signal()
        bc_is_x = Signal()
        xsel = Signal()   # activation-buffer half holding x_t
        fifos = [SyncFIFO(width=32, depth=a.fifo_depth) for _ in range(n)]
        for i, f in enumerate(fifos):
            m.submodules[f"fifo{i}"] = f
        all_room = Signal()
        m.d.comb += all_room.eq(Cat(*[f.w_rdy for f in fifos]).all())
        bc_fire = Signal()
        bc_en = Signal()
        m.d.comb += [bc_fire.eq(bc_valid & all_room), bc_en.eq(bc_run & (~bc_valid | bc_fire))]
        m.d.comb += [
            x_rd.addr.eq(Cat(bc_col[:xbits], xsel)), x_rd.en.eq(bc_en),
            h_rd.addr.eq(bc_col - isz), h_rd.en.eq(bc_en),
        ]
        for i in range(n):
            m.d.comb += [p_rd[i].addr.eq(bc_col), p_rd[i].en.eq(bc_en)]
        with m.If(bc_start):
            m.d.sync += [bc_run.eq(1), bc_col.eq(0), bc_valid.eq(0)]
        with m.Elif(bc_en):
            with m.If(bc_col < cols):
                m.d.sync += [bc_valid.eq(1), bc_col.eq(bc_col + 1), bc_is_x.eq(bc_col < isz)]
            with m.Else():
                m.d.sync += [bc_valid.eq(0), bc_run.eq(0)]
        bc_v = Signal(16)
        m.d.comb += bc_v.eq(Mux(bc_is_x, x_rd.data, h_rd.data))
        for i, f in enumerate(fifos):
            m.d.comb += [f.w_data.eq(Cat(bc_v, p_rd[i].data)), f.w_en.eq(bc_fire)]

        ew_phase = Signal()
        pe_idle = []
        for i, f in enumerate(fifos):
            e = Signal(17, name=f"pe{i}_e")
            in_col = Signal(name=f"pe{i}_in_col")
            v = f.r_data[:16]
            end = f.r_data[16:32]
            s1_valid = Signal(name=f"pe{i}_s1_valid")
            s1_first = Signal(name=f"pe{i}_s1_first")
            s1_v = Signal(signed(16), name=f"pe{i}_s1_v")
            with m.If(bc_start):
                m.d.sync += [e.eq(0), in_col.eq(0)]
            m.d.comb += w_rd[i].addr.eq(e)
            m.d.sync += s1_valid.eq(0)
            with m.If(f.r_rdy & ~bc_start):
                with m.If(e < end):
                    m.d.sync += [e.eq(e + 1), s1_valid.eq(1), s1_v.eq(v),
                                 s1_first.eq(~in_col), in_col.eq(1)]
                    with m.If(e + 1 >= end):
                        m.d.comb += f.r_en.eq(1)
                        m.d.sync += in_col.eq(0)
                with m.Else():
                    m.d.comb += f.r_en.eq(1)
                    m.d.sync += in_col.eq(0)
            ent = w_rd[i].data
            gap = ent[12:16]
            row = Signal(16, name=f"pe{i}_row")
            prev = Signal(16, name=f"pe{i}_prev")
            m.d.comb += row.eq(Mux(s1_first, gap, prev + 1 + gap))
            s2_valid = Signal(name=f"pe{i}_s2_valid")
            s2_row = Signal(16, name=f"pe{i}_s2_row")
            s2_prod = Signal(signed(28), name=f"pe{i}_s2_prod")
            m.d.sync += [s2_valid.eq(s1_valid), s2_row.eq(row),
                         s2_prod.eq(ent[:12].as_signed() * s1_v)]
            with m.If(s1_valid):
                m.d.sync += prev.eq(row)
            s3_valid = Signal(name=f"pe{i}_s3_valid")
            s3_row = Signal(16, name=f"pe{i}_s3_row")
            s3_prod = Signal(signed(28), name=f"pe{i}_s3_prod")
            m.d.sync += [s3_valid.eq(s2_valid), s3_row.eq(s2_row), s3_prod.eq(s2_prod)]
            pe_idle.append(~f.r_rdy & ~s1_valid & ~s2_valid & ~s3_valid)
            # Accumulator ports: the MV pipeline, or the element-wise unit (set below).
            with m.If(~ew_phase):
                m.d.comb += [
                    a_rd[i].addr.eq(s2_row[:abits]),
                    a_wr[i].addr.eq(s3_row[:abits]),
                    a_wr[i].data.eq(a_rd[i].data + s3_prod),
                    a_wr[i].en.eq(s3_valid),
                ]
        mv_done = Signal()
        m.d.comb += mv_done.eq(~bc_run & ~bc_valid & Cat(*pe_idle).all())

        # Element-wise unit ----------------------------------------------------------------
        ew_start = Signal()
        ew_run = Signal()
        ew_k = Signal(16)
        ew_grp = Signal(max(1, log_g))
        ew_l = Signal(16)
        with m.If(ew_start):
            m.d.sync += [ew_run.eq(1), ew_k.eq(0), ew_grp.eq(0), ew_l.eq(0)]
        with m.Elif(ew_run):
            with m.If(ew_k + 1 == hid):
                m.d.sync += ew_run.eq(0)
            m.d.sync += ew_k.eq(ew_k + 1)
            if g_cnt > 1:
                m.d.sync += ew_grp.eq(ew_grp + 1)
                with m.If(ew_grp == g_cnt - 1):
                    m.d.sync += ew_l.eq(ew_l + 1)
            else:
                m.d.sync += ew_l.eq(ew_l + 1)
        m.d.comb += [b_rd.addr.eq(ew_k), c_rd.addr.eq(ew_k)]
        e1_valid, e1_grp, e1_l, e1_k = (Signal(name="e1_valid"), Signal.like(ew_grp, name="e1_grp"),
                                        Signal.like(ew_l, name="e1_l"), Signal(16, name="e1_k"))
        m.d.sync += [e1_valid.eq(ew_run), e1_grp.eq(ew_grp), e1_l.eq(ew_l), e1_k.eq(ew_k)]
        for i in range(n):
            with m.If(ew_phase):
                m.d.comb += [
                    a_rd[i].addr.eq(ew_l[:abits]),
                    a_wr[i].addr.eq(e1_l[:abits]),
                    a_wr[i].data.eq(0),
                    a_wr[i].en.eq(e1_valid & (e1_grp == (i >> 2))),
                ]
        sums = []
        bias_w = b_rd.data
        for g in range(4):
            sel = Signal(signed(a.acc_bits), name=f"e1_acc{g}")
            with m.Switch(e1_grp):
                for grp in range(g_cnt):
                    with m.Case(grp):
                        m.d.comb += sel.eq(a_rd[4 * grp + g].data)
            s = Signal(signed(a.acc_bits), name=f"e2_sum{g}")
            m.d.sync += s.eq(sel + bias_w[32 * g:32 * g + 32].as_signed())
            sums.append(s)
        e2_valid, e2_k = Signal(name="e2_valid"), Signal(16, name="e2_k")
        e2_c = Signal(signed(CELL_BITS), name="e2_c")
        m.d.sync += [e2_valid.eq(e1_valid), e2_k.eq(e1_k), e2_c.eq(c_rd.data)]
        tbl_mask = (1 << TABLE_IN_BITS) - 1
        e3_lin = []
        for g in range(4):
            r = _round_shift(m, sums[g], gsh[:6], f"e2_rs{g}")
            idx = _clamp(m, r, TABLE_IN_BITS, f"e2_idx{g}")
            lin = Signal(16, name=f"e3_lin{g}")   # a linear layer's output 4k + g
            m.d.sync += lin.eq(_clamp(m, r, 16, f"e2_lin{g}"))
            e3_lin.append(lin)
            port = s_rd[g] if g < 3 else t_rd[0]
            m.d.comb += port.addr.eq(idx[:TABLE_IN_BITS] & tbl_mask)
        e3_valid, e3_k = Signal(name="e3_valid"), Signal(16, name="e3_k")
        e3_c = Signal(signed(CELL_BITS), name="e3_c")
        m.d.sync += [e3_valid.eq(e2_valid), e3_k.eq(e2_k), e3_c.eq(e2_c)]
        ti, to, tf = (s_rd[0].data.as_signed(), s_rd[1].data.as_signed(),
                      s_rd[2].data.as_signed())
        tg = t_rd[0].data
        e4_pf = Signal(signed(16 + CELL_BITS), name="e4_pf")
        e4_pi = Signal(signed(32), name="e4_pi")
        e4_to = Signal(signed(16), name="e4_to")
        e4_valid, e4_k = Signal(name="e4_valid"), Signal(16, name="e4_k")
        m.d.sync += [e4_pf.eq(tf * e3_c), e4_pi.eq(ti * tg), e4_to.eq(to),
                     e4_valid.eq(e3_valid), e4_k.eq(e3_k)]
        rf = _round_shift(m, e4_pf, TABLE_OUT_FRAC, "e4_rf")
        ri = _round_shift(m, e4_pi, TABLE_OUT_FRAC, "e4_ri")
        c_new = _clamp(m, rf + ri, CELL_BITS, "e4_cnew")
        e5_c = Signal(signed(CELL_BITS), name="e5_c")
        e5_to = Signal(signed(16), name="e5_to")
        e5_valid, e5_k = Signal(name="e5_valid"), Signal(16, name="e5_k")
        m.d.sync += [e5_c.eq(c_new), e5_to.eq(e4_to), e5_valid.eq(e4_valid), e5_k.eq(e4_k)]
        m.d.comb += [c_wr.addr.eq(e5_k), c_wr.data.eq(e5_c), c_wr.en.eq(e5_valid)]
        rc = _round_shift(m, e5_c, CELL_FRAC - TABLE_IN_FRAC, "e5_rc")
        cidx = _clamp(m, rc, TABLE_IN_BITS, "e5_cidx")
        m.d.comb += t_rd[1].addr.eq(cidx[:TABLE_IN_BITS] & tbl_mask)
        e6_to = Signal(signed(16), name="e6_to")
        e6_valid, e6_k = Signal(name="e6_valid"), Signal(16, name="e6_k")
        m.d.sync += [e6_to.eq(e5_to), e6_valid.eq(e5_valid), e6_k.eq(e5_k)]
        e6_p = Signal(signed(32), name="e6_p")
        m.d.comb += e6_p.eq(e6_to * t_rd[1].data)
        rh = _round_shift(m, e6_p, TABLE_OUT_FRAC, "e6_rh")
        hval = _clamp(m, rh, 16, "e6_h")
        e7_h = Signal(16, name="e7_h")
        e7_valid, e7_k = Signal(name="e7_valid"), Signal(16, name="e7_k")
        m.d.sync += [e7_h.eq(hval), e7_valid.eq(e6_valid), e7_k.eq(e6_k)]
        ew_busy = Signal()
        m.d.comb += ew_busy.eq(ew_run | e1_valid | e2_valid | e3_valid | e4_valid | e5_valid
                               | e6_valid | e7_valid)

        # Cell and hidden state writes: the element-wise unit, or zeroing at layer start.
        clr = Signal()
        clr_i = Signal(16)
        with m.If(clr):
            m.d.comb += [c_wr.addr.eq(clr_i), c_wr.data.eq(0), c_wr.en.eq(1),
                         h_wr.addr.eq(clr_i), h_wr.data.eq(0), h_wr.en.eq(1)]
            for i in range(n):
                m.d.comb += [a_wr[i].addr.eq(clr_i[:abits]), a_wr[i].data.eq(0),
                             a_wr[i].en.eq(clr_i < rows)]
        with m.Else():
            m.d.comb += [h_wr.addr.eq(e7_k), h_wr.data.eq(e7_h), h_wr.en.eq(e7_valid & ~linear)]
        for q in range(4):
            with m.If(linear):
                # the four outputs of row group k: one word of the output buffer
                m.d.comb += [o_wr[q].addr.eq(e3_k), o_wr[q].data.eq(e3_lin[q]),
                             o_wr[q].en.eq(e3_valid)]
            with m.Else():
                m.d.comb += [o_wr[q].addr.eq(e7_k >> 2), o_wr[q].data.eq(e7_h),
                             o_wr[q].en.eq(e7_valid & (e7_k[:2] == q))]

        # Packer: output buffer -> DMA write words ------------------------------------------
        pk_start = Signal()
        pk_active = Signal()
        pk_w = Signal(16)
        pk_valid = Signal()
        pk_last = Signal()
        pk_fire = Signal()
        pk_en = Signal()
        pk_words = Signal(16)
        m.d.comb += pk_words.eq(Mux(linear, hid, hid >> 2))
        m.d.comb += [
            dma.wr_data.valid.eq(pk_valid),
            dma.wr_data.payload.data.eq(Cat(*[p.data for p in o_rd])),
            dma.wr_data.payload.last.eq(pk_last),
            pk_fire.eq(pk_valid & dma.wr_data.ready),
            pk_en.eq(pk_active & (~pk_valid | pk_fire)),
        ]
        for p in o_rd:
            m.d.comb += [p.addr.eq(pk_w), p.en.eq(pk_en)]
        with m.If(pk_start):
            m.d.sync += [pk_active.eq(1), pk_w.eq(0), pk_valid.eq(0)]
        with m.Elif(pk_en):
            with m.If(pk_w < pk_words):
                m.d.sync += [pk_valid.eq(1), pk_last.eq(pk_w + 1 == pk_words),
                             pk_w.eq(pk_w + 1)]
            with m.Else():
                m.d.sync += [pk_valid.eq(0), pk_active.eq(0)]

        # Scheduler ------------------------------------------------------------------------
        prog = Signal(addr_w)
        base = Signal(addr_w)
        n_layers = Signal(32)
        layer = Signal(32)
        t = Signal(32)
        x_ptr = Signal(addr_w)
        h_ptr = Signal(addr_w)
        err = Signal(8)
        steps_done = Signal(32)
        m.d.comb += [csr.busy.eq(0), csr.instr_count.eq(steps_done),
                     csr.error_info.eq(Mux(err != 0, layer, 0))]
        bus_err = Signal()
        m.d.comb += bus_err.eq(dma.rd_error | dma.wr_error)
        quiet = Signal()
        m.d.comb += quiet.eq(~ld_active & ~pk_active & dma.rd_idle & dma.wr_idle & ~lw_valid)

        def fail(code):
            m.d.sync += err.eq(code.value)
            m.next = "DRAIN"

        with m.FSM():
            with m.State("IDLE"), m.If(csr.start):
                m.d.sync += [prog.eq(csr.prog_base), base.eq(csr.data_base), layer.eq(0),
                             steps_done.eq(0), err.eq(0)]
                m.d.comb += dma.clear.eq(1)
                m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += csr.busy.eq(1)
                with m.If(dma.rd_cmd.ready):
                    m.d.sync += start_load(_T_DESC, DESC_BYTES, prog)
                    m.next = "HDR_WAIT"
            with m.State("HDR_WAIT"):
                m.d.comb += csr.busy.eq(1)
                with m.If(~ld_active):
                    with m.If(bus_err):
                        fail(ErrorCode.BUS_ERROR)
                    with m.Elif(words[0] != HEADER_MAGIC):
                        fail(ErrorCode.BAD_MAGIC)
                    with m.Elif((words[1] != VERSION) | (words[2] == 0)):
                        fail(ErrorCode.BAD_VERSION)
                    with m.Elif(words[3] != a.config_hash):
                        fail(ErrorCode.ARCH_MISMATCH)
                    with m.Else():
                        m.d.sync += [n_layers.eq(words[2]), prog.eq(prog + DESC_BYTES)]
                        m.next = "DESC"
            with m.State("DESC"):
                m.d.comb += csr.busy.eq(1)
                with m.If(dma.rd_cmd.ready):
                    m.d.sync += start_load(_T_DESC, DESC_BYTES, prog)
                    m.next = "DESC_WAIT"
            with m.State("DESC_WAIT"):
                m.d.comb += csr.busy.eq(1)
                with m.If(~ld_active):
                    m.d.sync += [fld[name].eq(words[i]) for i, name in enumerate(LAYER_FIELDS)]
                    m.d.sync += prog.eq(prog + DESC_BYTES)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += csr.busy.eq(1)
                bad_lstm = (hid < 4) | (hid > a.max_hidden) | (hid[:2] != 0)
                if log_g > 2:
                    bad_lstm = bad_lstm | (hid[:log_g] != 0)
                bad_linear = (hid == 0) | (hid > max(1, a.max_hidden // 4))
                if log_g > 0:
                    bad_linear = bad_linear | (hid[:log_g] != 0)
                bad = ((isz == 0) | (isz > a.max_input) | (cols > a.max_cols) | (ents == 0)
                       | (ents > min(a.weight_depth, 0xFFFF)) | (steps == 0)
                       | (gsh == 0) | (gsh > a.acc_bits - 2) | (fld["kind"] > KIND_LINEAR)
                       | Mux(linear, bad_linear, bad_lstm))
                with m.If(bus_err):
                    fail(ErrorCode.BUS_ERROR)
                with m.Elif(bad):
                    fail(ErrorCode.BUFFER_RANGE)
                with m.Else():
                    m.d.sync += [x_ptr.eq(base + fld["x_offset"]),
                                 h_ptr.eq(base + fld["h_offset"]), t.eq(0)]
                    m.next = "LOAD_W"
            for state, nxt, target, nbytes, offset, count in (
                    ("LOAD_W", "LOAD_P", _T_W, (ents << (log_n + 1)), "w_offset", ents),
                    ("LOAD_P", "LOAD_B", _T_PTR, (cols << (log_n + 1)), "ptr_offset", cols),
                    ("LOAD_B", "LOAD_X0", _T_BIAS, hid << 4, "bias_offset", 0)):
                with m.State(state):
                    m.d.comb += csr.busy.eq(1)
                    with m.If(~ld_active & dma.rd_cmd.ready):
                        m.d.sync += start_load(target, nbytes, base + fld[offset], count)
                        m.next = nxt
            with m.State("LOAD_X0"):
                m.d.comb += csr.busy.eq(1)
                with m.If(~ld_active & dma.rd_cmd.ready):
                    m.d.sync += start_load(_T_X, isz << 1, x_ptr, 0, 0)
                    m.d.sync += [xsel.eq(0), x_ptr.eq(x_ptr + (isz << 1)), clr_i.eq(0)]
                    m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += [csr.busy.eq(1), clr.eq(1)]
                m.d.sync += clr_i.eq(clr_i + 1)
                with m.If(clr_i + 1 == hid):
                    m.next = "STEP"
            with m.State("STEP"):
                m.d.comb += csr.busy.eq(1)
                with m.If(~ld_active & ~lw_valid):
                    with m.If(bus_err):
                        fail(ErrorCode.BUS_ERROR)
                    with m.Elif(dma.rd_cmd.ready):
                        m.d.comb += [bc_start.eq(1), csr.mark.eq(1)]
                        with m.If(t + 1 < steps):
                            m.d.sync += start_load(_T_X, isz << 1, x_ptr, 0, ~xsel)
                            m.d.sync += x_ptr.eq(x_ptr + (isz << 1))
                        m.next = "MV"
            with m.State("MV"):
                m.d.comb += csr.busy.eq(1)
                with m.If(mv_done & ~bc_start):
                    m.next = "EW_WAIT"
            with m.State("EW_WAIT"):
                m.d.comb += [csr.busy.eq(1), ew_phase.eq(1)]
                with m.If(~pk_active):
                    m.d.comb += [ew_start.eq(1), csr.mark.eq(1)]
                    m.next = "EW"
            with m.State("EW"):
                m.d.comb += [csr.busy.eq(1), ew_phase.eq(1)]
                with m.If(~ew_busy & ~ew_start):
                    m.next = "WRITE_H"
            with m.State("WRITE_H"):
                m.d.comb += [csr.busy.eq(1), ew_phase.eq(1)]
                m.d.comb += [dma.wr_cmd.valid.eq(1), dma.wr_cmd.payload.addr.eq(h_ptr),
                             dma.wr_cmd.payload.rows.eq(1),
                             dma.wr_cmd.payload.row_bytes.eq(Mux(linear, hid << 3, hid << 1)),
                             dma.wr_cmd.payload.stride.eq(0)]
                with m.If(dma.wr_cmd.ready):
                    m.d.comb += pk_start.eq(1)
                    m.d.sync += [h_ptr.eq(h_ptr + Mux(linear, hid << 3, hid << 1)), t.eq(t + 1),
                                 xsel.eq(~xsel),
                                 steps_done.eq(steps_done + 1)]
                    with m.If(t + 1 == steps):
                        m.next = "LAYER_END"
                    with m.Else():
                        m.next = "STEP"
            with m.State("LAYER_END"):
                m.d.comb += csr.busy.eq(1)
                with m.If(quiet & ~pk_start):
                    with m.If(bus_err):
                        fail(ErrorCode.BUS_ERROR)
                    with m.Elif(layer + 1 == n_layers):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "DESC"
            with m.State("DRAIN"):
                # Let every started transfer finish (the DMA always completes them).
                m.d.comb += csr.busy.eq(1)
                with m.If(quiet):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [csr.done.eq(1), csr.error_code.eq(err)]
                m.next = "IDLE"
        return m
