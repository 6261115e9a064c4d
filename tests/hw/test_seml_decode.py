# amaranth: UnusedElaboratable=no
"""Header check, instruction decoder and CRC-32 of the SEML core, in Amaranth's simulator,
against the ISA's Python decoder and ``zlib``."""

import random
import zlib

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.arch import ArchConfig
from hw.isa import (
    INSTR_BYTES,
    Buffer,
    Engine,
    ErrorCode,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    build_program,
    decode_instruction,
    encode_instruction,
)
from hw.seml.decode import HeaderCheck, InstructionDecoder
from hw.seml.fetch import crc32_update

ARCH = ArchConfig(name="decode-test", ibuf_bytes=4096, obuf_bytes=4096, wbuf_bytes=2048,
                  pbuf_entries=64, max_width=16, max_height=16)


def _run_comb(dut, stimuli, probe):
    """Apply each stimulus (``(signal, value)`` pairs) and collect ``probe(ctx)``."""
    out = []

    async def bench(ctx):
        for values in stimuli:
            for sig, v in values:
                ctx.set(sig, v)
            await ctx.delay(1e-9)
            out.append(probe(ctx))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("nbytes", [4, 8, 60, 64])
def test_crc32_update_matches_zlib(nbytes):
    rng = random.Random(nbytes)
    m = Module()
    crc = Signal(32)
    value = Signal(8 * nbytes)
    nxt = Signal(32)
    m.d.comb += nxt.eq(crc32_update(crc, value, nbytes))
    cases = []
    for _ in range(20):
        data = bytes(rng.getrandbits(8) for _ in range(nbytes))
        start = rng.getrandbits(32)
        cases.append((start, data))
    got = _run_comb(m, [[(crc, s ^ 0xFFFFFFFF), (value, int.from_bytes(d, "little"))]
                        for s, d in cases], lambda ctx: ctx.get(nxt))
    for (start, data), g in zip(cases, got):
        assert g ^ 0xFFFFFFFF == zlib.crc32(data, start)


def _iss_code(word):
    """Error code of the ISA decoder for one word (ignoring buffer ranges)."""
    try:
        decode_instruction(word)
    except ProgramFormatError as e:
        return e.code
    return ErrorCode.NONE


def _random_words(rng):
    words = [
        encode_instruction(Opcode.LOAD, buffer=Buffer.WBUF, ddr_addr=5, ddr_stride=7,
                           buf_addr=10, rows=3, row_bytes=20),
        encode_instruction(Opcode.STORE, buffer=Buffer.OBUF, rows=1, row_bytes=64),
        encode_instruction(Opcode.SYNC, mask=Unit.LOAD | Unit.STORE),
        encode_instruction(Opcode.END),
        encode_instruction(Opcode.ADD, count=10, a_addr=0, b_addr=100, out_addr=0,
                           act_lo=-128, act_hi=127),
        encode_instruction(Opcode.COMPUTE, engine=Engine.CONV, pool=Pool.NONE, in_c=3, out_c=4,
                           in_h=5, in_w=5, out_h=5, out_w=5, k_h=3, k_w=3, stride_h=1,
                           stride_w=1, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1,
                           act_lo=0, act_hi=127),
    ]
    out = list(words)
    for _ in range(60):
        w = bytearray(rng.choice(words))
        what = rng.randrange(4)
        if what == 0:
            w[0] = rng.randrange(256)           # opcode
        elif what == 1:
            w[rng.randrange(24, 64)] |= 1 << rng.randrange(8)   # reserved / high fields
        elif what == 2:
            w[1] = rng.randrange(256)           # buffer / engine / pool nibbles
        out.append(bytes(w))
    return out


def test_decoder_agrees_with_isa_decoder():
    """Unknown opcodes, reserved bits and bad enum values are illegal in both decoders."""
    rng = random.Random(3)
    dut = InstructionDecoder(ARCH)
    words = _random_words(rng)
    got = _run_comb(dut, [[(dut.word.as_value(), int.from_bytes(w, "little"))] for w in words],
                    lambda ctx: ctx.get(dut.error))
    for word, code in zip(words, got):
        expected = _iss_code(word)
        if expected is not ErrorCode.NONE:
            assert code == expected, (word.hex(), code, expected)


def test_decoder_semantic_checks():
    dut = InstructionDecoder(ARCH)
    cases = [
        (encode_instruction(Opcode.LOAD, buffer=Buffer.OBUF, rows=1, row_bytes=1),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.STORE, buffer=Buffer.IBUF, rows=1, row_bytes=1),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.LOAD, buffer=Buffer.PBUF, rows=1, row_bytes=24),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.LOAD, buffer=Buffer.PBUF, rows=2, row_bytes=32,
                            buf_addr=61), ErrorCode.BUFFER_RANGE),
        (encode_instruction(Opcode.LOAD, buffer=Buffer.IBUF, rows=0, row_bytes=3),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.LOAD, buffer=Buffer.WBUF, rows=2, row_bytes=1024,
                            buf_addr=1), ErrorCode.BUFFER_RANGE),
        (encode_instruction(Opcode.ADD, count=10, act_lo=5, act_hi=4),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.ADD, count=4000, out_addr=100, act_lo=0, act_hi=1),
         ErrorCode.BUFFER_RANGE),
        (encode_instruction(Opcode.COMPUTE, engine=Engine.CONV, in_c=1, out_c=1, in_h=5,
                            in_w=5, out_h=3, out_w=3, k_h=5, k_w=5, stride_h=1, stride_w=1,
                            act_lo=0, act_hi=1), ErrorCode.ILLEGAL_INSTRUCTION),  # k > k_max
        (encode_instruction(Opcode.COMPUTE, engine=Engine.CONV, in_c=1, out_c=1, in_h=5,
                            in_w=5, out_h=4, out_w=3, k_h=3, k_w=3, stride_h=1, stride_w=1,
                            act_lo=0, act_hi=1), ErrorCode.ILLEGAL_INSTRUCTION),  # out_h wrong
        (encode_instruction(Opcode.COMPUTE, engine=Engine.POINTWISE, in_c=2, out_c=2, in_h=2,
                            in_w=2, out_h=1, out_w=1, k_h=1, k_w=1, stride_h=2, stride_w=2,
                            act_lo=0, act_hi=1), ErrorCode.NONE),
        (encode_instruction(Opcode.COMPUTE, engine=Engine.POOL, pool=Pool.NONE, in_c=1,
                            out_c=1, in_h=2, in_w=2, out_h=1, out_w=1, k_h=2, k_w=2,
                            stride_h=2, stride_w=2, act_lo=0, act_hi=1),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (encode_instruction(Opcode.SYNC, mask=Unit.COMPUTE), ErrorCode.NONE),
    ]
    got = _run_comb(dut, [[(dut.word.as_value(), int.from_bytes(w, "little"))] for w, _ in cases],
                    lambda ctx: ctx.get(dut.error))
    for (word, expected), code in zip(cases, got):
        assert code == expected, (decode_instruction(word), code, expected)


def test_header_check():
    dut = HeaderCheck(ARCH)
    good = build_program(ARCH.config_hash, [encode_instruction(Opcode.END)])[:INSTR_BYTES]
    magic = b"XFPG" + good[4:]
    version = good[:4] + b"\x02\x00" + good[6:]
    other = build_program(ARCH.replace(pw_po=2).config_hash,
                          [encode_instruction(Opcode.END)])[:INSTR_BYTES]
    cases = [(good, ErrorCode.NONE), (magic, ErrorCode.BAD_MAGIC),
             (version, ErrorCode.BAD_VERSION), (other, ErrorCode.ARCH_MISMATCH)]
    got = _run_comb(dut, [[(dut.header, int.from_bytes(h, "little"))] for h, _ in cases],
                    lambda ctx: (ctx.get(dut.error), ctx.get(dut.instr_count)))
    for (_, expected), (code, count) in zip(cases, got):
        assert code == expected
        assert count == 1


def test_decoder_arguments():
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not 3"):
        InstructionDecoder(3)
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not 'x'"):
        HeaderCheck("x")
