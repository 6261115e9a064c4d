# amaranth: UnusedElaboratable=no
"""Header check, instruction decoder and CRC-32 of the SEML core, in Amaranth's simulator,
against the ISA's Python decoder, the instruction-set simulator and ``zlib``."""

import random
import zlib

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.arch import ArchConfig
from hw.isa import (
    INSTR_BYTES,
    ISA_VERSION,
    Buffer,
    Engine,
    ErrorCode,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    build_program,
    compute_fields,
    decode_instruction,
    encode_instruction,
    parse_program,
)
from hw.seml.decode import HeaderCheck, InstructionDecoder
from hw.seml.fetch import crc32_update
from sim.iss import ISS

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


def _run_decoder(dut, words):
    """Error code of each word, held for the decoder's ``LATENCY`` clock edges. An
    ``early`` decoder takes the word on ``early`` with ``early_en`` in the first cycle
    (``word`` still the previous one, as in the core) and sees another word there, not
    enabled, after it; its verdict must hold two cycles more."""
    out = []
    early = getattr(dut, "_early", False)

    async def bench(ctx):
        for i, w in enumerate(words):
            value = int.from_bytes(w, "little")
            if early:
                other = int.from_bytes(words[(i + 1) % len(words)], "little")
                ctx.set(dut.early.as_value(), value)
                ctx.set(dut.early_en, 1)
                await ctx.tick()
                ctx.set(dut.word.as_value(), value)
                ctx.set(dut.early.as_value(), other)
                ctx.set(dut.early_en, 0)
                await ctx.tick().repeat(dut.LATENCY - 1)
                code = ctx.get(dut.error)
                await ctx.tick().repeat(2)
                assert ctx.get(dut.error) == code, w.hex()
                out.append(code)
                continue
            ctx.set(dut.word.as_value(), value)
            await ctx.tick().repeat(dut.LATENCY)
            out.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
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


def _isa_code(word):
    """Error code of the ISA decoder for one word (ignoring buffer ranges)."""
    try:
        decode_instruction(word)
    except ProgramFormatError as e:
        return e.code
    return ErrorCode.NONE


def _iss_code(word):
    """Error code of the instruction-set simulator executing ``word`` then END (zeroed
    buffers and DDR)."""
    code = _isa_code(word)
    if code is not ErrorCode.NONE:
        return code
    program = build_program(ARCH.config_hash, [word, encode_instruction(Opcode.END)])
    try:
        ISS(ARCH).run(program, np.zeros(1 << 16, dtype=np.uint8))
    except ProgramFormatError as e:
        return e.code
    return ErrorCode.NONE


def _compute(engine, in_hw, k, stride=(1, 1), pads=(0, 0, 0, 0), pool=Pool.NONE,
             fpool=(1, 1), in_c=1, out_c=1, **fields):
    """A COMPUTE word whose ``out_h`` / ``out_w`` follow from its geometry."""
    return encode_instruction(Opcode.COMPUTE, **compute_fields(
        engine, in_hw, k, stride=stride, pads=pads, pool=pool, fpool=fpool, in_c=in_c,
        out_c=out_c, **fields))


def _random_compute(rng):
    """A COMPUTE word near the limits of ``ARCH``: each legality rule is hit now and then."""
    engine = rng.choice(list(Engine))
    pool = rng.choices([Pool.NONE, Pool.MAX, Pool.AVG], [6, 3, 1])[0]
    if engine is Engine.POINTWISE and rng.random() < 0.8:
        k = (1, 1)
    else:
        k = (rng.randint(1, 4), rng.randint(1, 4))
    s = rng.choice([1, 1, 2, 2, 3])
    stride = (s, s) if rng.random() < 0.7 else (rng.randint(1, 3), rng.randint(1, 3))
    pads = tuple(rng.randint(0, k[i % 2] - (rng.random() < 0.9)) for i in range(4))
    if engine is Engine.POINTWISE and rng.random() < 0.8:
        pads = (0, 0, 0, 0)
    in_hw = (rng.randint(1, 20), rng.randint(1, 20))
    hp, wp = in_hw[0] + pads[0] + pads[2], in_hw[1] + pads[1] + pads[3]
    if hp < k[0] or wp < k[1]:
        in_hw = (max(in_hw[0], k[0]), max(in_hw[1], k[1]))
    fpool = rng.choice([(2, 2), (2, 2), (1, 2), (3, 3)])
    in_c = rng.randint(1, 6)
    out_c = in_c if engine is Engine.DEPTHWISE and rng.random() < 0.8 else rng.randint(1, 6)
    extra = {}
    if rng.random() < 0.1:  # the input-channel tile counts of the CONV / POINTWISE engines
        in_c = rng.choice([4095 * ARCH.conv_pi, 4095 * ARCH.pw_pi]) + rng.randint(0, 1)
        in_hw, k, pads, stride = (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)
    if rng.random() < 0.1:
        extra["obuf_addr"] = rng.randint(3900, 4095)
    if pool is Pool.AVG:
        extra.update(mult=rng.randint(0, 1 << 16), shift=rng.randint(0, 64))
    word = bytearray(_compute(engine, in_hw, k, stride, pads, pool, fpool, in_c, out_c,
                              **extra))
    if rng.random() < 0.1:  # out_h / out_w off by one
        word[12 + 2 * rng.randrange(2)] ^= 1
    return bytes(word)


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


@pytest.mark.parametrize("early", [False, True])
def test_decoder_agrees_with_isa_decoder_and_iss(early):
    """Unknown opcodes, reserved bits and bad enum values are illegal in both decoders; on
    every COMPUTE word the hardware decoder reports what the ISS reports executing it
    (with ``early``: the first stage taking the word through its enable, as the core
    hands it over)."""
    rng = random.Random(3)
    dut = InstructionDecoder(ARCH, early=early)
    words = _random_words(rng)
    got = _run_decoder(dut, words)
    for word, code in zip(words, got):
        expected = _isa_code(word)
        if expected is not ErrorCode.NONE:
            assert code == expected, (word.hex(), code, expected)
        elif word[0] in (Opcode.COMPUTE.value, Opcode.ADD.value):
            assert code == _iss_code(word), (decode_instruction(word), code)


@pytest.mark.parametrize("early", [False, True])
def test_decoder_agrees_with_iss_on_compute_limits(early):
    """Random COMPUTE words around the engine limits: strides, engine frames, fused pools,
    POINTWISE pixels, input-channel tiles, shapes and ranges, as the ISS judges them."""
    rng = random.Random(11)
    dut = InstructionDecoder(ARCH, early=early)
    words = [_random_compute(rng) for _ in range(400)]
    got = _run_decoder(dut, words)
    codes = [_iss_code(w) for w in words]
    for word, code, expected in zip(words, got, codes):
        assert code == expected, (decode_instruction(word), code, expected)
    # the draw reaches every outcome
    assert {ErrorCode.NONE, ErrorCode.ILLEGAL_INSTRUCTION, ErrorCode.BUFFER_RANGE} <= set(codes)
    assert codes.count(ErrorCode.NONE) >= 40


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
        (encode_instruction(Opcode.ADD, count=10, shift=63, act_lo=0, act_hi=1),
         ErrorCode.ILLEGAL_INSTRUCTION),  # shift past the engine's shift_bits / 62
        (encode_instruction(Opcode.ADD, count=10, mult_a=1 << 16, act_lo=0, act_hi=1),
         ErrorCode.ILLEGAL_INSTRUCTION),  # mult_a wider than mult_bits
        (encode_instruction(Opcode.ADD, count=10, mult_b=1 << 16, act_lo=0, act_hi=1),
         ErrorCode.ILLEGAL_INSTRUCTION),
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
        # CONV / DEPTHWISE strides: equal on both axes, 1 or 2
        (_compute(Engine.CONV, (5, 5), (3, 3), (2, 2)), ErrorCode.NONE),
        (_compute(Engine.CONV, (5, 5), (3, 3), (1, 2)), ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.DEPTHWISE, (5, 5), (3, 3), (2, 1)), ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.CONV, (7, 7), (3, 3), (3, 3)), ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.POINTWISE, (5, 5), (1, 1), (1, 3)), ErrorCode.NONE),
        (_compute(Engine.POOL, (5, 5), (3, 3), (1, 3), pool=Pool.MAX), ErrorCode.NONE),
        # the engine frame: padded tile plus K - k_h rows, K - k_w columns (K x K kernel)
        (_compute(Engine.CONV, (14, 4), (1, 3)), ErrorCode.NONE),              # frame 16x4
        (_compute(Engine.CONV, (15, 4), (1, 3)), ErrorCode.ILLEGAL_INSTRUCTION),  # 17x4
        (_compute(Engine.DEPTHWISE, (4, 14), (3, 2), pads=(1, 1, 1, 1)),
         ErrorCode.ILLEGAL_INSTRUCTION),                                          # 6x17
        (_compute(Engine.CONV, (15, 15), (2, 2)), ErrorCode.NONE),             # 16x16
        (_compute(Engine.CONV, (16, 15), (2, 2)), ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.POOL, (16, 15), (2, 2), pool=Pool.MAX), ErrorCode.NONE),
        # fused max pool: CONV only, 2x2
        (_compute(Engine.CONV, (6, 6), (3, 3), pool=Pool.MAX, fpool=(2, 2)), ErrorCode.NONE),
        (_compute(Engine.CONV, (8, 8), (3, 3), pool=Pool.MAX, fpool=(3, 3)),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.CONV, (6, 6), (3, 3), pool=Pool.MAX, fpool=(1, 2)),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.DEPTHWISE, (6, 6), (3, 3), pool=Pool.MAX, fpool=(2, 2)),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.POINTWISE, (6, 6), (1, 1), pool=Pool.MAX, fpool=(2, 2)),
         ErrorCode.ILLEGAL_INSTRUCTION),
        # POINTWISE: at most max_width * max_height output pixels
        (_compute(Engine.POINTWISE, (16, 16), (1, 1)), ErrorCode.NONE),
        (_compute(Engine.POINTWISE, (17, 16), (1, 1)), ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.POINTWISE, (31, 16), (1, 1), (2, 1)), ErrorCode.NONE),
        # input-channel tiles: at most 4095 of conv_pi (CONV) / pw_pi (POINTWISE)
        (_compute(Engine.CONV, (1, 1), (1, 1), in_c=4095 * ARCH.conv_pi),
         ErrorCode.BUFFER_RANGE),
        (_compute(Engine.CONV, (1, 1), (1, 1), in_c=4095 * ARCH.conv_pi + 1),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.POINTWISE, (1, 1), (1, 1), in_c=4095 * ARCH.pw_pi),
         ErrorCode.BUFFER_RANGE),
        (_compute(Engine.POINTWISE, (1, 1), (1, 1), in_c=4095 * ARCH.pw_pi + 1),
         ErrorCode.ILLEGAL_INSTRUCTION),
        # an illegal instruction is illegal even when it also leaves a buffer
        (_compute(Engine.DEPTHWISE, (4, 4), (3, 3), in_c=2, out_c=3, ibuf_addr=4090),
         ErrorCode.ILLEGAL_INSTRUCTION),
        (_compute(Engine.DEPTHWISE, (4, 4), (3, 3), in_c=2, out_c=2, ibuf_addr=4090),
         ErrorCode.BUFFER_RANGE),
    ]
    got = _run_decoder(dut, [w for w, _ in cases])
    for (word, expected), code in zip(cases, got):
        assert code == expected, (decode_instruction(word), code, expected)
        assert _iss_code(word) == expected, decode_instruction(word)


def test_header_check():
    dut = HeaderCheck(ARCH)
    good = build_program(ARCH.config_hash, [encode_instruction(Opcode.END)])[:INSTR_BYTES]
    magic = b"XFPG" + good[4:]
    version = good[:4] + (ISA_VERSION - 1).to_bytes(2, "little") + good[6:]  # older ISA
    other = build_program(ARCH.replace(pw_po=2).config_hash,
                          [encode_instruction(Opcode.END)])[:INSTR_BYTES]
    cases = [(good, ErrorCode.NONE), (magic, ErrorCode.BAD_MAGIC),
             (version, ErrorCode.BAD_VERSION), (other, ErrorCode.ARCH_MISMATCH)]
    got = _run_comb(dut, [[(dut.header, int.from_bytes(h, "little"))] for h, _ in cases],
                    lambda ctx: (ctx.get(dut.error), ctx.get(dut.instr_count)))
    for (_, expected), (code, count) in zip(cases, got):
        assert code == expected
        assert count == 1


def test_header_check_bounds_the_instruction_count():
    """A count whose words do not fit ``ddr_bytes`` is refused (``BAD_CRC``) at once, by the
    core and the ISS alike: the core would otherwise read 2**31 words for its CRC pre-scan
    (a corrupted count hung the core before)."""
    dut = HeaderCheck(ARCH)
    end = [encode_instruction(Opcode.END)]

    def header(count, ddr_bytes):
        blob = build_program(ARCH.config_hash, end, ddr_bytes=ddr_bytes)
        return blob[:16] + count.to_bytes(4, "little") + blob[20:INSTR_BYTES], blob

    cases = [(1, 128, ErrorCode.NONE), (1, 127, ErrorCode.BAD_CRC),
             (0x80000001, 1 << 20, ErrorCode.BAD_CRC), (0x80000001, 0, ErrorCode.NONE),
             (0xFFFFFFFF, 0xFFFFFFFF, ErrorCode.BAD_CRC)]
    headers = [header(count, ddr) for count, ddr, _ in cases]
    got = _run_comb(dut, [[(dut.header, int.from_bytes(h, "little"))] for h, _ in headers],
                    lambda ctx: ctx.get(dut.error))
    for (count, ddr, expected), code, (h, blob) in zip(cases, got, headers):
        assert code == expected, (count, ddr)
        if expected is ErrorCode.BAD_CRC:
            with pytest.raises(ProgramFormatError, match=r"more than the \d+-byte image") as e:
                parse_program(h + blob[INSTR_BYTES:], ARCH.config_hash)
            assert e.value.code is ErrorCode.BAD_CRC


def test_decoder_arguments():
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not 3"):
        InstructionDecoder(3)
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not 'x'"):
        HeaderCheck("x")
