"""Instruction and header checks of the SEML core, from the layouts of :mod:`hw.isa`.

:class:`InstructionDecoder` looks at one instruction word and says whether it may run
and, if not, which :class:`hw.isa.ErrorCode` stops the core; the checks are those of
the instruction-set simulator (``sim/iss.py``) that the hardware can make before an
instruction starts. :class:`HeaderCheck` does the same for the ``program.bin`` header.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
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

__all__ = ["HeaderCheck", "InstructionDecoder", "reserved_mask"]


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


class InstructionDecoder(wiring.Component):
    """Legality of one instruction word, over :attr:`LATENCY` cycles.

    The sizes the range and shape checks need (products of up to four run-time fields)
    are computed in two registered stages, one multiplier between registers: ``error``
    is valid once ``word`` has been held for :attr:`LATENCY` clock edges (it follows
    the word's other fields combinationally).

    Checks: known opcode, zero reserved bits, enum values in range, the buffer of a
    LOAD / STORE, non-empty transfers, PBUF record sizes, buffer ranges, clamp
    bounds, and the COMPUTE limits of ``docs/isa.md`` (those of the engines: equal
    strides 1 or 2 and the ``K x K`` frame of CONV / DEPTHWISE, the fused 2x2 max pool
    of CONV only, the pixels of a POINTWISE job, the input-channel tiles of CONV and
    POINTWISE).

    Parameters
    ----------
    arch : ArchConfig

    Members
    -------
    word : In(INSTRUCTION)
    error : Out(ErrorCode)
        ``NONE`` when the instruction may run.
    """

    #: Clock edges ``word`` must be held before ``error`` reflects it.
    LATENCY = 2

    def __init__(self, arch: ArchConfig):
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
        self._arch = arch
        super().__init__({
            "word": In(INSTRUCTION),
            "error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        w = self.word
        raw = w.as_value()
        e = element_bytes(arch.act_bits)
        we = weight_element_bytes(arch)
        act_lo = -(1 << (arch.act_bits - 1))
        act_hi = (1 << (arch.act_bits - 1)) - 1

        illegal = Signal()
        out_of_range = Signal()

        # Sizes: stage 1 multiplies two fields of the word, stage 2 one stage-1 product
        # by a third field (the element bytes are a shift).
        def stage(value, width, name):
            reg = Signal(width, name=name)
            m.d.sync += reg.eq(value)
            return reg

        d, c = w.dma, w.compute
        is_dw = c.engine == Engine.DEPTHWISE
        fused = (c.engine != Engine.POOL) & (c.pool == Pool.MAX)
        sizes = {
            "dma_size": stage(d.rows * d.row_bytes, 64, "dma_size"),
            "pixels": stage(c.out_h * c.out_w, 32, "pixels"),
        }
        in_ch = stage(c.in_c * c.in_h, 32, "in_ch")
        out_ch = stage(c.out_c * c.out_h, 32, "out_ch")
        w_ch = stage(Mux(is_dw, c.out_c, c.out_c * c.in_c), 32, "w_ch")
        taps = stage(c.k_h * c.k_w, 32, "taps")
        for axis, out, stride in (("oh", c.out_h, c.stride_h), ("ow", c.out_w, c.stride_w)):
            # ``(x0 - 1) * s`` of the shape check, ``x0 = out`` (``2 * out`` when fused)
            x0 = Signal(18, name=f"{axis}_x0")
            m.d.comb += x0.eq(Mux(fused, out << 1, out))
            sizes[f"{axis}_x0"] = x0
            sizes[f"{axis}_low"] = stage((x0 - 1) * stride, 27, f"{axis}_low")
        sizes["in_bytes"] = stage(in_ch * c.in_w * e, 64, "in_bytes")
        sizes["out_bytes"] = stage(out_ch * c.out_w * e, 64, "out_bytes")
        sizes["w_elems"] = stage(w_ch * taps, 64, "w_elems")
        self._sizes = sizes

        def reserved_bits(opcode):
            return (raw & Const(reserved_mask(FORMATS[opcode]), INSTR_BITS)) != 0

        def clamp_bad(lo, hi):
            return (lo < act_lo) | (lo > hi) | (hi > act_hi)

        def beyond(start, size, limit):
            return (start + size) > limit

        with m.Switch(w.opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                d = w.dma
                size = sizes["dma_size"]
                is_load = w.opcode == Opcode.LOAD
                buf = d.buffer
                m.d.comb += illegal.eq(
                    reserved_bits(Opcode.LOAD) | (d.rows == 0) | (d.row_bytes == 0)
                    | (is_load & (buf == Buffer.OBUF)) | (~is_load & (buf != Buffer.OBUF))
                    | (buf.as_value() > 4)
                    | ((buf == Buffer.PBUF) & (d.row_bytes[:exact_log2(PBUF_ENTRY_BYTES)] != 0))
                    | ((buf == Buffer.TBUF)
                       & (d.buf_addr[:exact_log2(arch.axi_data_bytes)] != 0)))
                with m.Switch(buf):
                    with m.Case(Buffer.IBUF):
                        m.d.comb += out_of_range.eq(beyond(d.buf_addr, size, arch.ibuf_bytes))
                    with m.Case(Buffer.WBUF):
                        m.d.comb += out_of_range.eq(beyond(d.buf_addr, size, arch.wbuf_bytes))
                    with m.Case(Buffer.OBUF):
                        m.d.comb += out_of_range.eq(beyond(d.buf_addr, size, arch.obuf_bytes))
                    with m.Case(Buffer.PBUF):
                        m.d.comb += out_of_range.eq(
                            beyond(d.buf_addr, size // PBUF_ENTRY_BYTES, arch.pbuf_entries))
                    with m.Case(Buffer.TBUF):
                        m.d.comb += out_of_range.eq(
                            beyond(d.buf_addr, size, table_entries(arch.act_bits)))
            with m.Case(Opcode.ADD):
                a = w.add
                size = Signal(64)
                b_size = Signal(64)
                covered = Signal(64)
                is_mul = a.op == EltOp.MUL
                m.d.comb += [
                    size.eq(a.count * e),
                    b_size.eq(Mux(is_mul, a.b_count * e, size)),
                    covered.eq(a.b_count * a.group),
                ]
                # the rules of hw.isa.check_add
                op_bad = Mux(is_mul,
                             (a.group == 0) | (a.b_count == 0) | (a.mult_b != 0)
                             | (covered < a.count),
                             (a.group != 0) | (a.b_count != 0))
                table_bad = a.table & (table_entries(arch.act_bits) == 0)
                m.d.comb += [
                    illegal.eq(reserved_bits(Opcode.ADD) | clamp_bad(a.act_lo, a.act_hi)
                               | (a.shift > max_shift(arch.shift_bits))
                               | (a.mult_a >= (1 << arch.mult_bits))
                               | (a.mult_b >= (1 << arch.mult_bits))
                               | (a.op.as_value() > 1) | op_bad | table_bad),
                    out_of_range.eq(beyond(a.a_addr, size, arch.ibuf_bytes)
                                    | beyond(a.b_addr, b_size, arch.ibuf_bytes)
                                    | beyond(a.out_addr, size, arch.obuf_bytes)),
                ]
            with m.Case(Opcode.COMPUTE):
                c = w.compute
                self._compute_checks(m, c, illegal, out_of_range, reserved_bits, clamp_bad,
                                     beyond, e, we)
            with m.Case(Opcode.SYNC):
                m.d.comb += illegal.eq(reserved_bits(Opcode.SYNC)
                                       | (w.sync.mask.as_value() > 7))
            with m.Case(Opcode.END):
                m.d.comb += illegal.eq(reserved_bits(Opcode.END))
            with m.Default():
                m.d.comb += illegal.eq(1)

        with m.If(illegal):
            m.d.comb += self.error.eq(ErrorCode.ILLEGAL_INSTRUCTION)
        with m.Elif(out_of_range):
            m.d.comb += self.error.eq(ErrorCode.BUFFER_RANGE)
        with m.Else():
            m.d.comb += self.error.eq(ErrorCode.NONE)
        return m

    def _compute_checks(self, m, c, illegal, out_of_range, reserved_bits, clamp_bad, beyond,
                        e, we):
        arch = self._arch
        hp = Signal(18)
        wp = Signal(18)
        m.d.comb += [
            hp.eq(c.in_h + c.pad_top + c.pad_bottom),
            wp.eq(c.in_w + c.pad_left + c.pad_right),
        ]
        small = (hp < c.k_h) | (wp < c.k_w)
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
        kk = Signal(17)
        frame_h = Signal(19)
        frame_w = Signal(19)
        m.d.comb += [
            kk.eq(Mux(c.k_h > c.k_w, c.k_h, c.k_w) | 1),
            frame_h.eq(hp + kk - c.k_h),
            frame_w.eq(wp + kk - c.k_w),
        ]
        too_wide = ((is_pool & ((wp > arch.max_width) | (hp > arch.max_height)))
                    | (windowed & ((frame_w > arch.max_width) | (frame_h > arch.max_height))))
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
        sizes = self._sizes
        pixels = sizes["pixels"]
        pw_pixels = is_pw & (pixels > arch.max_width * arch.max_height)
        tiles_max = CIN_TILES_MAX
        tiles_bad = ((is_conv & (c.in_c > tiles_max * arch.conv_pi))
                     | (is_pw & (c.in_c > tiles_max * arch.pw_pi)))
        fused = ~is_pool & (pool == Pool.MAX)
        fuse_bad = fused & (~is_conv | (c.fpool_h != 2) | (c.fpool_w != 2))
        # The output shape without a divider: ``out = (span - k) // s + 1`` (then halved
        # by a fused 2x2 pool) holds iff ``x0 = out`` (``2 * out`` when fused) satisfies
        # ``(x0 - 1) * s <= span - k < (x0 - 1) * s + s`` (``+ 2 * s`` when fused: ``oh``
        # may be ``2 * out`` or ``2 * out + 1``), with ``x0 >= 1``. One multiplier per
        # axis; a fused pool with another size than 2 is refused by ``fuse_bad``.
        def shape_ok(span, k, stride, out, name):
            x0, low = sizes[f"{name}_x0"], sizes[f"{name}_low"]
            high = low + Mux(fused, stride << 1, stride)
            return (x0 != 0) & (low <= span - k) & (span - k < high)

        fpool_bad = fused & ((c.fpool_h == 0) | (c.fpool_w == 0))
        shape_bad = ~(shape_ok(hp, c.k_h, c.stride_h, c.out_h, "oh")
                      & shape_ok(wp, c.k_w, c.stride_w, c.out_w, "ow"))
        m.d.comb += illegal.eq(
            reserved_bits(Opcode.COMPUTE) | clamp_bad(c.act_lo, c.act_hi) | zero | pads_big
            | small | too_wide | kernel_big | stride_bad | pool_bad | avg_wide | dw_bad
            | pw_bad | pw_pixels | tiles_bad | fuse_bad
            | (fpool_bad & ~small) | (shape_bad & ~small & ~fpool_bad & ~zero))

        in_bytes, out_bytes, w_elems = sizes["in_bytes"], sizes["out_bytes"], sizes["w_elems"]
        weighted = ~is_pool
        m.d.comb += out_of_range.eq(
            beyond(c.ibuf_addr, in_bytes, arch.ibuf_bytes)
            | beyond(c.obuf_addr, out_bytes, arch.obuf_bytes)
            | (weighted & beyond(c.pbuf_addr, c.out_c, arch.pbuf_entries))
            | (weighted & beyond(c.wbuf_addr, w_elems * we, arch.wbuf_bytes)))

