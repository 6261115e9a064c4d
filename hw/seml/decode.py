"""Instruction and header checks of the SEML core, from the layouts of :mod:`hw.isa`.

:class:`InstructionDecoder` looks at one instruction word and says whether it may run
and, if not, which :class:`hw.isa.ErrorCode` stops the core; the checks are those of
the instruction-set simulator (``sim/iss.py``) that the hardware can make before an
instruction starts. :class:`HeaderCheck` does the same for the ``program.bin`` header.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.data import View
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..arch import ArchConfig
from ..isa import (
    CIN_TILES_MAX,
    ENGINE_STRIDES,
    FORMATS,
    HEADER_BYTES,
    HEADER_LAYOUT,
    INSTR_BITS,
    INSTR_BYTES,
    INSTRUCTION,
    ISA_VERSION,
    MAGIC,
    PBUF_ENTRY_BYTES,
    Buffer,
    EltOp,
    Engine,
    ErrorCode,
    Opcode,
    Pool,
    element_bytes,
    max_shift,
    table_entries,
    weight_element_bytes,
)

__all__ = ["HeaderCheck", "InstructionDecoder", "range_room_bits", "range_rooms", "reserved_mask",
           "size_bits"]


def size_bits(arch: ArchConfig) -> int:
    """Bits of a size that fits a buffer: ``2**size_bits`` exceeds every buffer's limit
    (bytes of IBUF, WBUF, OBUF, PBUF records and the activation table)."""
    return max(arch.ibuf_bytes, arch.wbuf_bytes, arch.obuf_bytes,
               arch.pbuf_entries * PBUF_ENTRY_BYTES, table_entries(arch.act_bits),
               1).bit_length()


def reserved_mask(layout) -> int:
    """Bits of ``layout`` that must be zero (``_pad*`` and ``reserved`` fields)."""
    mask = 0
    for name, field in layout:
        if name == "reserved" or name.startswith("_pad"):
            mask |= ((1 << field.width) - 1) << field.offset
    return mask


class HeaderCheck(wiring.Component):
    """Checks the 64-byte ``program.bin`` header (combinational).

    Parameters
    ----------
    arch : ArchConfig
        The arch whose ``config_hash`` the header must carry.

    Members
    -------
    header : In(512)
        The header bytes, byte 0 in the LSBs.
    error : Out(ErrorCode)
        First failing check (magic, version and sizes, arch hash, instruction count
        against ``ddr_bytes``), or ``NONE``.
    instr_count, crc : Out(32)
        Instruction count and the CRC-32 field.
    """

    def __init__(self, arch: ArchConfig):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self._arch = arch
        super().__init__({
            "header": In(INSTR_BITS),
            "error": Out(ErrorCode),
            "instr_count": Out(32),
            "crc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        h = View(HEADER_LAYOUT, self.header)

        magic = int.from_bytes(MAGIC, "little")
        m.d.comb += [self.instr_count.eq(h.instr_count), self.crc.eq(h.crc32)]
        with m.If(h.magic != magic):
            m.d.comb += self.error.eq(ErrorCode.BAD_MAGIC)
        with m.Elif((h.version != ISA_VERSION) | (h.header_bytes != HEADER_BYTES)
                    | (h.instr_bytes != INSTR_BYTES)):
            m.d.comb += self.error.eq(ErrorCode.BAD_VERSION)
        with m.Elif(h.arch_hash != Const(self._arch.config_hash, 64)):
            m.d.comb += self.error.eq(ErrorCode.ARCH_MISMATCH)
        with m.Elif((h.ddr_bytes != 0)
                    & (h.instr_count * INSTR_BYTES + HEADER_BYTES > h.ddr_bytes)):
            # more instruction words than the image holds (a corrupted count): refused
            # before the CRC pre-scan would read them all
            m.d.comb += self.error.eq(ErrorCode.BAD_CRC)
        with m.Else():
            m.d.comb += self.error.eq(ErrorCode.NONE)
        return m


def range_rooms(arch: ArchConfig):
    """The buffer ranges :class:`InstructionDecoder` checks: ``(key, (format, address
    field), limit)`` for each, ``limit - start`` a register of the first stage."""
    return [
        *((buf.name.lower(), ("dma", "buf_addr"), limit) for buf, limit in (
            (Buffer.IBUF, arch.ibuf_bytes), (Buffer.WBUF, arch.wbuf_bytes),
            (Buffer.OBUF, arch.obuf_bytes), (Buffer.PBUF, arch.pbuf_entries),
            (Buffer.TBUF, table_entries(arch.act_bits)))),
        ("a", ("add", "a_addr"), arch.ibuf_bytes),
        ("b", ("add", "b_addr"), arch.ibuf_bytes),
        ("out", ("add", "out_addr"), arch.obuf_bytes),
        ("c_ibuf", ("compute", "ibuf_addr"), arch.ibuf_bytes),
        ("c_obuf", ("compute", "obuf_addr"), arch.obuf_bytes),
        ("c_pbuf", ("compute", "pbuf_addr"), arch.pbuf_entries),
        ("c_wbuf", ("compute", "wbuf_addr"), arch.wbuf_bytes),
    ]


def range_room_bits(arch: ArchConfig) -> int:
    """Flip-flops of :func:`range_rooms`' registers (each two bits wider than its field)."""
    return sum(Shape.cast(INSTRUCTION[fmt].shape[field].shape).width + 2
               for _, (fmt, field), _ in range_rooms(arch))


class InstructionDecoder(wiring.Component):
    """Legality of one instruction word, over :attr:`LATENCY` cycles.

    The checks run in three registered stages, with at most one multiplier or one
    adder chain and compare between registers:

    1. products of two fields of the word (16 x 16 bits, or the 16-bit halves of two
       32-bit fields), padded spans and kernel sizes;
    2. the products of a stage-1 product and a third field, the sum of the partial
       products, and every check that needs no buffer range;
    3. the buffer ranges (``start + size > limit``) and the ``error`` register.

    A size only takes part in a range check, so each stage-2 factor is cut to the
    ``K`` bits that hold the largest buffer limit: a factor with a bit above them makes
    the range fail (the other factors are at least 1, or the instruction is illegal
    anyway, which wins), and below them the product is exact. ``error`` is valid once
    ``word`` has been held for :attr:`LATENCY` clock edges.

    Checks: known opcode, zero reserved bits, enum values in range, the buffer of a
    LOAD / STORE, non-empty transfers, PBUF record sizes, buffer ranges, clamp
    bounds, and the COMPUTE limits of ``docs/isa.md`` (those of the engines: equal
    strides 1 or 2 and the ``K x K`` frame of CONV / DEPTHWISE, the fused 2x2 max pool
    of CONV only, the pixels of a POINTWISE job, the input-channel tiles of CONV and
    POINTWISE).

    Parameters
    ----------
    arch : ArchConfig
    early : bool
        Stage 1 takes its word from ``early`` when ``early_en`` is high (and holds
        otherwise) instead of from ``word`` every cycle: the core hands it the fetched
        word as it enters the instruction register, through no multiplexer. ``word``
        must then equal that word from the next cycle on.

    Members
    -------
    word : In(INSTRUCTION)
    early, early_en : In
        With ``early``: stage 1's word and its enable.
    error : Out(ErrorCode)
        ``NONE`` when the instruction may run (a register).
    dma_size : Out(size_bits(arch))
        ``rows * row_bytes`` of a LOAD / STORE ``word`` (exact when it is legal), from a
        stage-2 register: valid with ``error``, and taken by the LOAD and STORE units.
    """

    #: Clock edges ``word`` must be held before ``error`` reflects it.
    LATENCY = 3

    def __init__(self, arch: ArchConfig, *, early: bool = False):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self._arch = arch
        self._early = bool(early)
        members = {
            "word": In(INSTRUCTION),
            "error": Out(ErrorCode),
            "dma_size": Out(size_bits(arch)),
        }
        if self._early:
            members.update({"early": In(INSTRUCTION), "early_en": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        w = self.word
        raw = w.as_value()
        e = element_bytes(arch.act_bits)
        we = weight_element_bytes(arch)
        act_lo = -(1 << (arch.act_bits - 1))
        act_hi = (1 << (arch.act_bits - 1)) - 1
        K = size_bits(arch)

        def reg(value, width, name, stage1=False):
            r = Signal(width, name=name)
            if stage1 and self._early:
                with m.If(self.early_en):
                    m.d.sync += r.eq(value)
            else:
                m.d.sync += r.eq(value)
            return r

        def cut(value, name):
            """``(low K bits, any bit above them)`` of a stage-1 field, registered."""
            big = value[K:].any() if len(value) > K else Const(0, 1)
            return (reg(value[:K], K, f"{name}_lo", True),
                    reg(big, 1, f"{name}_big", True))

        # Stage 1: products of two fields ------------------------------------------------
        w1 = self.early if self._early else w
        d, c, a = w1.dma, w1.compute, w1.add
        is_dw = c.engine == Engine.DEPTHWISE
        fused = (c.engine != Engine.POOL) & (c.pool == Pool.MAX)
        s1 = {
            "pixels": reg(c.out_h * c.out_w, 32, "pixels", True),
            "in_ch": reg(c.in_c * c.in_h, 32, "in_ch", True),
            "out_ch": reg(c.out_c * c.out_h, 32, "out_ch", True),
            "w_ch": reg(Mux(is_dw, c.out_c, c.out_c * c.in_c), 32, "w_ch", True),
            "taps": reg(c.k_h * c.k_w, 32, "taps", True),
            "hp": reg(c.in_h + c.pad_top + c.pad_bottom, 18, "hp", True),
            "wp": reg(c.in_w + c.pad_left + c.pad_right, 18, "wp", True),
            "kk": reg(Mux(c.k_h > c.k_w, c.k_h, c.k_w) | 1, 16, "kk", True),
        }
        s1["fused"] = reg(fused, 1, "fused", True)
        for axis, out, stride, span, k in (
                ("oh", c.out_h, c.stride_h, c.in_h + c.pad_top + c.pad_bottom, c.k_h),
                ("ow", c.out_w, c.stride_w, c.in_w + c.pad_left + c.pad_right, c.k_w)):
            # the shape check's terms: ``out * s`` (a product of two fields, nothing
            # before the multiplier), ``span - k``, ``span - k + s`` and ``span - k - s``
            # (``span - k`` when not fused)
            s1[f"{axis}_prod"] = reg(out * stride, len(out) + len(stride), f"{axis}_prod",
                                     True)
            s1[f"{axis}_span_k"] = reg(span - k, signed(20), f"{axis}_span_k", True)
            s1[f"{axis}_span_hi"] = reg(span - k + stride, signed(21), f"{axis}_span_hi",
                                        True)
            s1[f"{axis}_span_lo"] = reg(span - k - Mux(fused, stride, 0), signed(21),
                                        f"{axis}_span_lo", True)
        rows_lo, rows_big = cut(d.rows, "rows")
        rb_lo, rb_big = cut(d.row_bytes, "row_bytes")
        # b_count x group of a MUL, from the products of their 16-bit halves
        halves = [(a.b_count[16 * i:16 * (i + 1)], a.group[16 * j:16 * (j + 1)], i + j)
                  for i in range(2) for j in range(2)]
        partial = [(reg(x * y, 32, f"covered_pp{n}", True), 16 * k)
                   for n, (x, y, k) in enumerate(halves)]

        # each buffer range's room, ``limit - start`` (stage 3 then compares a size with
        # it: no adder before the compare)
        rooms = {}
        for key, (fmt, field), limit in range_rooms(arch):
            start = getattr(getattr(w1, fmt), field)
            rooms[key] = reg(limit - start, signed(len(start) + 2), f"room_{key}", True)

        # Stage 2: products of a stage-1 product and a field; the checks without ranges --
        d, c, a = w.dma, w.compute, w.add

        def cut1(value, name):
            big = value[K:].any() if len(value) > K else Const(0, 1)
            return value[:K], big

        s2 = {}
        for name, first, field in (("in", "in_ch", c.in_w), ("out", "out_ch", c.out_w)):
            lo, big = cut1(s1[first], name)
            s2[f"{name}_elems"] = reg(lo * field, K + 16, f"{name}_elems")
            s2[f"{name}_big"] = reg(big, 1, f"{name}_big")
        wch_lo, wch_big = cut1(s1["w_ch"], "w_ch")
        taps_lo, taps_big = cut1(s1["taps"], "taps")
        s2["w_elems"] = reg(wch_lo * taps_lo, 2 * K, "w_elems")
        s2["w_big"] = reg(wch_big | taps_big, 1, "w_big")
        s2["dma_size"] = reg(rows_lo * rb_lo, 2 * K, "dma_size")
        s2["dma_big"] = reg(rows_big | rb_big, 1, "dma_big")
        s2["covered"] = reg(sum(pp << k for pp, k in partial), 64, "covered")
        self._sizes = s2
        m.d.comb += self.dma_size.eq(s2["dma_size"][:K])

        def reserved_bits(opcode):
            return (raw & Const(reserved_mask(FORMATS[opcode]), INSTR_BITS)) != 0

        def clamp_bad(lo, hi):
            return (lo < act_lo) | (lo > hi) | (hi > act_hi)

        illegal = Signal()          # stage 2: every check that needs no range
        self._frame_check = Signal(name="frame_check")
        with m.Switch(w.opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                is_load = w.opcode == Opcode.LOAD
                buf = d.buffer
                m.d.comb += illegal.eq(
                    reserved_bits(Opcode.LOAD) | (d.rows == 0) | (d.row_bytes == 0)
                    | (is_load & (buf == Buffer.OBUF)) | (~is_load & (buf != Buffer.OBUF))
                    | (buf.as_value() > 4)
                    | ((buf == Buffer.PBUF) & (d.row_bytes[:exact_log2(PBUF_ENTRY_BYTES)] != 0))
                    | ((buf == Buffer.TBUF)
                       & (d.buf_addr[:exact_log2(arch.axi_data_bytes)] != 0)))
            with m.Case(Opcode.ADD):
                is_mul = a.op == EltOp.MUL
                # the rules of hw.isa.check_add (``b_count * group < count`` in stage 3)
                op_bad = Mux(is_mul,
                             (a.group == 0) | (a.b_count == 0) | (a.mult_b != 0),
                             (a.group != 0) | (a.b_count != 0))
                table_bad = a.table & (table_entries(arch.act_bits) == 0)
                m.d.comb += illegal.eq(
                    reserved_bits(Opcode.ADD) | clamp_bad(a.act_lo, a.act_hi)
                    | (a.shift > max_shift(arch.shift_bits))
                    | (a.mult_a >= (1 << arch.mult_bits))
                    | (a.mult_b >= (1 << arch.mult_bits))
                    | (a.op.as_value() > 1) | op_bad | table_bad)
            with m.Case(Opcode.COMPUTE):
                self._compute_checks(m, c, s1, illegal, reserved_bits, clamp_bad)
            with m.Case(Opcode.SYNC):
                m.d.comb += illegal.eq(reserved_bits(Opcode.SYNC)
                                       | (w.sync.mask.as_value() > 7))
            with m.Case(Opcode.END):
                m.d.comb += illegal.eq(reserved_bits(Opcode.END))
            with m.Default():
                m.d.comb += illegal.eq(1)
        illegal2 = reg(illegal, 1, "illegal2")

        # Stage 3: buffer ranges and the error register ----------------------------------
        def beyond(key, size):
            # ``start + size > limit``
            return size > rooms[key]

        # MUL: b_count x group covers fewer than count; CONV / DEPTHWISE: the K x K frame
        # is wider or taller than the engine's
        late_illegal = Signal()
        out_of_range = Signal()
        with m.Switch(w.opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                size = s2["dma_size"]
                sizes = {Buffer.IBUF: size, Buffer.WBUF: size, Buffer.OBUF: size,
                         Buffer.PBUF: size >> exact_log2(PBUF_ENTRY_BYTES), Buffer.TBUF: size}
                with m.Switch(d.buffer):
                    for buf, n in sizes.items():
                        with m.Case(buf):
                            m.d.comb += out_of_range.eq(s2["dma_big"]
                                                        | beyond(buf.name.lower(), n))
            with m.Case(Opcode.ADD):
                is_mul = a.op == EltOp.MUL
                size = a.count * e
                b_size = Mux(is_mul, a.b_count * e, size)
                m.d.comb += [
                    late_illegal.eq(is_mul & (s2["covered"] < a.count)),
                    out_of_range.eq(beyond("a", size) | beyond("b", b_size)
                                    | beyond("out", size)),
                ]
            with m.Case(Opcode.COMPUTE):
                weighted = c.engine != Engine.POOL
                frame_h, frame_w = self._frame
                m.d.comb += late_illegal.eq(self._frame_check & ((frame_w > arch.max_width)
                                                                 | (frame_h > arch.max_height)))
                m.d.comb += out_of_range.eq(
                    s2["in_big"] | beyond("c_ibuf", s2["in_elems"] * e)
                    | s2["out_big"] | beyond("c_obuf", s2["out_elems"] * e)
                    | (weighted & beyond("c_pbuf", c.out_c))
                    | (weighted & (s2["w_big"] | beyond("c_wbuf", s2["w_elems"] * we))))

        with m.If(illegal2 | late_illegal):
            m.d.sync += self.error.eq(ErrorCode.ILLEGAL_INSTRUCTION)
        with m.Elif(out_of_range):
            m.d.sync += self.error.eq(ErrorCode.BUFFER_RANGE)
        with m.Else():
            m.d.sync += self.error.eq(ErrorCode.NONE)
        return m

    def _compute_checks(self, m, c, s1, illegal, reserved_bits, clamp_bad):
        arch = self._arch
        hp, wp, kk = s1["hp"], s1["wp"], s1["kk"]
        hk, wk = s1["oh_span_k"], s1["ow_span_k"]      # hp - k_h, wp - k_w
        small = (hk < 0) | (wk < 0)
        engine = c.engine
        pool = c.pool
        zero = ((c.in_c == 0) | (c.out_c == 0) | (c.in_h == 0) | (c.in_w == 0) | (c.k_h == 0)
                | (c.k_w == 0) | (c.stride_h == 0) | (c.stride_w == 0))
        pads_big = ((c.pad_top >= c.k_h) | (c.pad_bottom >= c.k_h) | (c.pad_left >= c.k_w)
                    | (c.pad_right >= c.k_w))
        is_conv = engine == Engine.CONV
        is_dw = engine == Engine.DEPTHWISE
        is_pw = engine == Engine.POINTWISE
        is_pool = engine == Engine.POOL
        windowed = is_conv | is_dw
        # CONV / DEPTHWISE run the kernel as K x K, K = engine_kernel(k_h, k_w), with the
        # bottom / right padding grown by K - k_h / K - k_w: the frame the engine streams.
        # (summed here, compared with the engine's frame in stage 3: ``frame_bad``)
        frame_h = Signal(19, name="frame_h")
        frame_w = Signal(19, name="frame_w")
        m.d.sync += [
            frame_h.eq(hk + kk),
            frame_w.eq(wk + kk),
            self._frame_check.eq(windowed),
        ]
        self._frame = (frame_h, frame_w)
        too_wide = is_pool & ((wp > arch.max_width) | (hp > arch.max_height))
        kernel_big = windowed & ((c.k_h > arch.conv_k_max) | (c.k_w > arch.conv_k_max))
        stride_bad = windowed & ((c.stride_h != c.stride_w) | (c.stride_h > max(ENGINE_STRIDES)))
        pool_bad = ((is_pool & (pool != Pool.MAX) & (pool != Pool.AVG))
                    | (~is_pool & (pool == Pool.AVG))
                    | (pool.as_value() > 2) | (engine.as_value() > 3))
        avg_wide = (is_pool & (pool == Pool.AVG)
                    & ((c.shift >= (1 << arch.shift_bits)) | (c.mult >= (1 << arch.mult_bits))))
        dw_bad = is_dw & (c.out_c != c.in_c)
        pw_bad = is_pw & ((c.k_h != 1) | (c.k_w != 1) | (c.pad_top != 0) | (c.pad_left != 0)
                          | (c.pad_bottom != 0) | (c.pad_right != 0))
        pw_pixels = is_pw & (s1["pixels"] > arch.max_width * arch.max_height)
        tiles_max = CIN_TILES_MAX
        tiles_bad = ((is_conv & (c.in_c > tiles_max * arch.conv_pi))
                     | (is_pw & (c.in_c > tiles_max * arch.pw_pi)))
        fused = ~is_pool & (pool == Pool.MAX)
        fuse_bad = fused & (~is_conv | (c.fpool_h != 2) | (c.fpool_w != 2))
        # The output shape without a divider: ``out = (span - k) // s + 1`` (then halved
        # by a fused 2x2 pool) holds iff ``x0 = out`` (``2 * out`` when fused) satisfies
        # ``(x0 - 1) * s <= span - k < (x0 - 1) * s + s`` (``+ 2 * s`` when fused: ``oh``
        # may be ``2 * out`` or ``2 * out + 1``), with ``x0 >= 1``. With ``P = x0 * s``
        # (stage 1's ``out * s``, doubled when fused) that is ``P <= span - k + s`` and
        # ``span - k - s < P`` (``span - k < P`` when not fused). One multiplier per axis
        # (stage 1); a fused pool with another size than 2 is refused by ``fuse_bad``.
        def shape_ok(out, name):
            prod = s1[f"{name}_prod"]
            x0s = Mux(s1["fused"], prod << 1, prod)
            return ((out != 0) & (x0s <= s1[f"{name}_span_hi"])
                    & (s1[f"{name}_span_lo"] < x0s))

        fpool_bad = fused & ((c.fpool_h == 0) | (c.fpool_w == 0))
        shape_bad = ~(shape_ok(c.out_h, "oh") & shape_ok(c.out_w, "ow"))
        m.d.comb += illegal.eq(
            reserved_bits(Opcode.COMPUTE) | clamp_bad(c.act_lo, c.act_hi) | zero | pads_big
            | small | too_wide | kernel_big | stride_bad | pool_bad | avg_wide | dw_bad
            | pw_bad | pw_pixels | tiles_bad | fuse_bad
            | (fpool_bad & ~small) | (shape_bad & ~small & ~fpool_bad & ~zero))
