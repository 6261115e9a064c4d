"""The instruction-set simulator on hand-written programs, against sim.golden."""

import numpy as np
import pytest

from hw import weight_codes
from hw.arch import ArchConfig
from hw.isa import (
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    ErrorCode,
    Instruction,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    build_program,
    compute_fields,
    pack_pbuf_entry,
)
from sim import golden
from sim.iss import (
    ISS,
    ISSUE_BUSY_LAG,
    ISSUE_INTERVAL,
    ISSUE_LATENCY,
    START_LAG,
    decode_activations,
    decode_weights,
    encode_activations,
    encode_weights,
    fetch_cycles,
    instruction_cycles,
    startup_cycles,
    timeline,
)

ARCH = ArchConfig(conv_k_max=5, max_width=32, max_height=32, ibuf_bytes=8192, obuf_bytes=8192,
                  wbuf_bytes=4096, pbuf_entries=64)
X_AT, W_AT, P_AT, Y_AT, DDR = 0x1000, 0x3000, 0x5000, 0x6000, 0x9000


def I(opcode, **fields):
    return Instruction(opcode, fields)


def load(buffer, ddr_addr, size, buf_addr=0, rows=1, stride=0):
    return I(Opcode.LOAD, buffer=buffer, ddr_addr=ddr_addr, buf_addr=buf_addr, rows=rows,
             row_bytes=size // rows, ddr_stride=stride)


def store(ddr_addr, size, buf_addr=0, rows=1, stride=0):
    return I(Opcode.STORE, buffer=Buffer.OBUF, ddr_addr=ddr_addr, buf_addr=buf_addr, rows=rows,
             row_bytes=size // rows, ddr_stride=stride)


SYNC_ALL = I(Opcode.SYNC, mask=Unit.LOAD | Unit.COMPUTE | Unit.STORE)
END = I(Opcode.END)


def run(instrs, ddr, arch=ARCH, **kw):
    program = build_program(arch.config_hash, instrs)
    return ISS(arch).run(program, ddr, **kw)


def put(ddr, addr, raw):
    ddr[addr:addr + raw.size] = raw


def params_bytes(bias, mult, shift):
    return np.frombuffer(b"".join(pack_pbuf_entry(int(b), int(m), int(s))
                                  for b, m, s in zip(bias, mult, shift)), dtype=np.uint8)


def conv_case(rng, engine, c, m, h, w, k, stride, pads, fpool=(1, 1)):
    ddr = np.zeros(DDR, dtype=np.uint8)
    x = rng.integers(-128, 128, size=(1, c, h, w))
    if engine is Engine.DEPTHWISE:
        wt = rng.integers(-127, 128, size=(m, 1, k[0], k[1]))
        groups = c
    else:
        wt = rng.integers(-127, 128, size=(m, c, k[0], k[1]))
        groups = 1
    bias = rng.integers(-5000, 5000, size=m)
    mult = rng.integers(1, 1 << 16, size=m)
    shift = rng.integers(10, 22, size=m)
    lo, hi = -20, 100
    put(ddr, X_AT, encode_activations(x, 8))
    put(ddr, W_AT, encode_weights(wt, ARCH))
    put(ddr, P_AT, params_bytes(bias, mult, shift))
    acc = golden.conv2d(x, wt, bias, stride, pads, groups)
    y = golden.requantize(acc, mult, shift, lo, hi)
    if fpool != (1, 1):
        y = golden.max_pool2d(y, fpool, fpool)
    pool = Pool.MAX if fpool != (1, 1) else Pool.NONE
    instrs = [
        load(Buffer.IBUF, X_AT, x.size, buf_addr=64),
        load(Buffer.WBUF, W_AT, wt.size, buf_addr=32),
        load(Buffer.PBUF, P_AT, m * PBUF_ENTRY_BYTES, buf_addr=3),
        I(Opcode.SYNC, mask=Unit.LOAD),
        I(Opcode.COMPUTE, engine=engine, pool=pool, in_c=c, out_c=m, in_h=h, in_w=w,
          out_h=y.shape[2], out_w=y.shape[3], k_h=k[0], k_w=k[1], stride_h=stride[0],
          stride_w=stride[1], pad_top=pads[0], pad_left=pads[1], pad_bottom=pads[2],
          pad_right=pads[3], fpool_h=fpool[0], fpool_w=fpool[1], act_lo=lo, act_hi=hi,
          ibuf_addr=64, wbuf_addr=32, pbuf_addr=3, obuf_addr=128),
        I(Opcode.SYNC, mask=Unit.COMPUTE),
        store(Y_AT, y.size, buf_addr=128),
        END,
    ]
    return instrs, ddr, y


@pytest.mark.parametrize("engine,c,m,h,w,k,stride,pads,fpool", [
    (Engine.CONV, 3, 5, 9, 11, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (Engine.CONV, 4, 6, 12, 10, (5, 5), (2, 2), (2, 1, 2, 2), (1, 1)),
    (Engine.CONV, 2, 4, 1, 27, (1, 5), (2, 2), (0, 2, 0, 2), (1, 1)),  # 1-D: frame 5x31
    (Engine.CONV, 3, 4, 10, 10, (3, 3), (1, 1), (1, 1, 1, 1), (2, 2)),
    (Engine.CONV, 3, 4, 9, 10, (2, 4), (2, 2), (1, 0, 0, 3), (2, 2)),  # even: runs as 5x5
    (Engine.DEPTHWISE, 6, 6, 9, 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (Engine.DEPTHWISE, 5, 5, 8, 7, (3, 1), (1, 1), (1, 0, 1, 0), (1, 1)),
    (Engine.POINTWISE, 16, 7, 5, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    (Engine.POINTWISE, 8, 4, 6, 6, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    (Engine.POINTWISE, 100, 9, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),  # FC
])
def test_engines_match_golden(engine, c, m, h, w, k, stride, pads, fpool):
    rng = np.random.default_rng(c * 100 + m)
    instrs, ddr, y = conv_case(rng, engine, c, m, h, w, k, stride, pads, fpool)
    result = run(instrs, ddr)
    got = decode_activations(ddr[Y_AT:Y_AT + y.size], 8).reshape(y.shape)
    np.testing.assert_array_equal(got, y)
    assert result.cycles > 0 and len(result.finish) == len(instrs)


@pytest.mark.parametrize("pool", [Pool.MAX, Pool.AVG])
def test_pool_engine(pool):
    rng = np.random.default_rng(3)
    c, h, w, k, s, pads = 5, 9, 8, (3, 2), (2, 2), (1, 0, 1, 1)
    x = rng.integers(-128, 128, size=(1, c, h, w))
    ddr = np.zeros(DDR, dtype=np.uint8)
    put(ddr, X_AT, encode_activations(x, 8))
    if pool is Pool.MAX:
        y = np.clip(golden.max_pool2d(x, k, s, pads), -128, 127)
        mult, shift, lo, hi = 0, 0, -128, 127
    else:
        mult, shift, lo, hi = 43691, 18, -128, 127
        y = golden.avg_pool2d(x, k, s, mult, shift, lo, hi, pads)
    instrs = [load(Buffer.IBUF, X_AT, x.size), SYNC_ALL,
              I(Opcode.COMPUTE, engine=Engine.POOL, pool=pool, in_c=c, out_c=c, in_h=h, in_w=w,
                out_h=y.shape[2], out_w=y.shape[3], k_h=k[0], k_w=k[1], stride_h=s[0],
                stride_w=s[1], pad_top=pads[0], pad_left=pads[1], pad_bottom=pads[2],
                pad_right=pads[3], act_lo=lo, act_hi=hi, mult=mult, shift=shift,
                fpool_h=1, fpool_w=1),
              SYNC_ALL, store(Y_AT, y.size), END]
    run(instrs, ddr)
    np.testing.assert_array_equal(decode_activations(ddr[Y_AT:Y_AT + y.size], 8),
                                  y.reshape(-1))


def test_add_and_strided_dma():
    """ADD rescales two operands; 2-D LOAD/STORE gather and scatter rows with strides."""
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, size=(4, 10))
    b = rng.integers(-128, 128, size=(4, 10))
    ddr = np.zeros(DDR, dtype=np.uint8)
    # a's rows are 16 bytes apart in DDR; b is dense
    for r in range(4):
        put(ddr, X_AT + 16 * r, encode_activations(a[r], 8))
    put(ddr, W_AT, encode_activations(b, 8))
    y = golden.add(a, b, 300, 1000, 10, -50, 90)
    instrs = [load(Buffer.IBUF, X_AT, 40, rows=4, stride=16),
              load(Buffer.IBUF, W_AT, 40, buf_addr=100),
              SYNC_ALL,
              I(Opcode.ADD, a_addr=0, b_addr=100, out_addr=8, count=40, mult_a=300,
                mult_b=1000, shift=10, act_lo=-50, act_hi=90),
              SYNC_ALL,
              store(Y_AT, 40, buf_addr=8, rows=4, stride=32),
              END]
    run(instrs, ddr)
    for r in range(4):
        np.testing.assert_array_equal(
            decode_activations(ddr[Y_AT + 32 * r:Y_AT + 32 * r + 10], 8), y[r])
    assert not ddr[Y_AT + 10:Y_AT + 32].any()


def test_sixteen_bit_activations_and_apot_weights():
    arch = ARCH.replace(act_bits=16, weight_scheme="apot", acc_bits=48, bias_bits=32)
    rng = np.random.default_rng(5)
    c, m, h, w = 3, 4, 6, 7
    x = rng.integers(-30000, 30000, size=(1, c, h, w))
    levels = np.array(weight_codes.values("apot", 8, 3))
    wt = rng.choice(levels, size=(m, c, 3, 3))
    raw_w = encode_weights(wt, arch)
    assert raw_w.size == wt.size * 2
    np.testing.assert_array_equal(decode_weights(raw_w, arch), wt.reshape(-1))
    bias = rng.integers(-1000, 1000, size=m)
    ddr = np.zeros(DDR, dtype=np.uint8)
    put(ddr, X_AT, encode_activations(x, 16))
    put(ddr, W_AT, raw_w)
    put(ddr, P_AT, params_bytes(bias, [1] * m, [6] * m))
    y = golden.requantize(golden.conv2d(x, wt, bias, 1, (1, 1, 1, 1)), 1, 6, -32768, 32767)
    instrs = [load(Buffer.IBUF, X_AT, x.size * 2), load(Buffer.WBUF, W_AT, raw_w.size),
              load(Buffer.PBUF, P_AT, m * 16), SYNC_ALL,
              I(Opcode.COMPUTE, engine=Engine.CONV, in_c=c, out_c=m, in_h=h, in_w=w, out_h=h,
                out_w=w, k_h=3, k_w=3, stride_h=1, stride_w=1, pad_top=1, pad_left=1,
                pad_bottom=1, pad_right=1, fpool_h=1, fpool_w=1, act_lo=-32768, act_hi=32767),
              SYNC_ALL, store(Y_AT, y.size * 2), END]
    run(instrs, ddr, arch)
    np.testing.assert_array_equal(decode_activations(ddr[Y_AT:Y_AT + y.size * 2], 16),
                                  y.reshape(-1))


def test_pot_weight_without_code_is_refused():
    with pytest.raises(ValueError, match="weight 3 has no pot code"):
        encode_weights(np.array([1, 3]), ARCH.replace(weight_scheme="pot"))


def _error(instrs, match, code, arch=ARCH):
    with pytest.raises(ProgramFormatError, match=match) as exc:
        run(instrs, np.zeros(DDR, dtype=np.uint8), arch)
    assert exc.value.code is code


def test_illegal_instructions_are_refused():
    _error([load(Buffer.IBUF, 0, 100, buf_addr=8150), END],
           r"Instruction 0 \(LOAD\): IBUF range \[8150, 8250\) is outside 0..8192",
           ErrorCode.BUFFER_RANGE)
    _error([load(Buffer.OBUF, 0, 16), END], "LOAD cannot target OBUF",
           ErrorCode.ILLEGAL_INSTRUCTION)
    _error([I(Opcode.STORE, buffer=Buffer.IBUF, rows=1, row_bytes=4), END],
           "STORE reads OBUF, not IBUF", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([load(Buffer.IBUF, DDR - 8, 16), END], "past the", ErrorCode.BUS_ERROR)
    _error([load(Buffer.PBUF, 0, 24), END], "multiple of 16", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([SYNC_ALL], "no END instruction", ErrorCode.ILLEGAL_INSTRUCTION)
    conv = {"engine": Engine.CONV, "in_c": 1, "out_c": 1, "in_h": 8, "in_w": 8, "out_h": 2,
            "out_w": 2, "k_h": 7, "k_w": 7, "stride_h": 1, "stride_w": 1, "fpool_h": 1,
            "fpool_w": 1, "act_lo": 0, "act_hi": 5}
    _error([I(Opcode.COMPUTE, **conv), END], "exceeds conv_k_max 5",
           ErrorCode.ILLEGAL_INSTRUCTION)
    conv.update(k_h=3, k_w=3)
    _error([I(Opcode.COMPUTE, **conv), END], "out_h x out_w is 2x2, but the fields give 6x6",
           ErrorCode.ILLEGAL_INSTRUCTION)
    conv.update(out_h=6, out_w=6, in_w=40)
    _error([I(Opcode.COMPUTE, **conv), END], "exceeds max_height x max_width 32x32",
           ErrorCode.ILLEGAL_INSTRUCTION)
    conv.update(in_w=8, act_lo=10)
    _error([I(Opcode.COMPUTE, **conv), END], r"act_lo..act_hi \[10, 5\]",
           ErrorCode.ILLEGAL_INSTRUCTION)


def _conv_word(engine=Engine.CONV, in_hw=(8, 8), k=(3, 3), **kwargs):
    """A COMPUTE whose ``out_h`` / ``out_w`` follow from its geometry."""
    return I(Opcode.COMPUTE, **compute_fields(engine, in_hw, k, **kwargs))


def _legal(*instrs, arch=ARCH):
    run([*instrs, END], np.zeros(DDR, dtype=np.uint8), arch)


def test_conv_and_depthwise_strides_are_equal_one_or_two():
    _legal(_conv_word(stride=(2, 2)), _conv_word(Engine.DEPTHWISE, stride=(1, 1)),
           _conv_word(Engine.POINTWISE, k=(1, 1), stride=(1, 3)),
           _conv_word(Engine.POOL, stride=(3, 1), pool=Pool.MAX))
    _error([_conv_word(stride=(1, 2)), END],
           r"Instruction 0 \(COMPUTE\): stride_h x stride_w is 1x2; the CONV engine runs "
           r"stride 1 or 2, equal on both axes", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(Engine.DEPTHWISE, stride=(3, 3)), END],
           r"stride_h x stride_w is 3x3; the DEPTHWISE engine runs stride 1 or 2, equal on "
           r"both axes", ErrorCode.ILLEGAL_INSTRUCTION)


def test_engine_frame_includes_the_embedded_kernel():
    """A k_h x k_w kernel runs as K x K: the frame grows by K - k_h rows, K - k_w columns."""
    _legal(_conv_word(in_hw=(28, 10), k=(1, 5)),  # frame 32x10
           _conv_word(Engine.DEPTHWISE, in_hw=(29, 29), k=(4, 4), pads=(1, 1, 1, 1)),
           _conv_word(Engine.POOL, in_hw=(29, 10), k=(1, 5), pool=Pool.MAX))  # padded 29x10
    _error([_conv_word(in_hw=(29, 10), k=(1, 5)), END],
           r"engine frame 33x10 \(padded tile 29x10, the 1x5 kernel run as 5x5\) exceeds "
           r"max_height x max_width 32x32", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(Engine.DEPTHWISE, in_hw=(4, 31), k=(2, 2), pads=(0, 0, 1, 1)), END],
           r"engine frame 6x33 \(padded tile 5x32, the 2x2 kernel run as 3x3\) exceeds "
           r"max_height x max_width 32x32", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(Engine.POOL, in_hw=(33, 10), k=(1, 5), pool=Pool.MAX), END],
           r"padded tile 33x10 exceeds max_height x max_width 32x32",
           ErrorCode.ILLEGAL_INSTRUCTION)


def test_fused_max_pool_is_2x2_on_conv_only():
    _legal(_conv_word(pool=Pool.MAX, fpool=(2, 2)))
    _error([_conv_word(in_hw=(11, 11), pool=Pool.MAX, fpool=(3, 3)), END],
           r"fused max pool fpool_h x fpool_w is 3x3; the CONV engine fuses a 2x2 stride-2 "
           r"max pool only", ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(Engine.DEPTHWISE, pool=Pool.MAX, fpool=(2, 2)), END],
           r"the DEPTHWISE engine has no fused pool: pool must be NONE, not MAX",
           ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(Engine.POINTWISE, k=(1, 1), pool=Pool.MAX, fpool=(2, 2)), END],
           r"the POINTWISE engine has no fused pool: pool must be NONE, not MAX",
           ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(in_hw=(3, 8), pool=Pool.MAX, fpool=(2, 2), out_h=1), END],
           r"fused pool 2x2 does not fit the 1x6 result", ErrorCode.ILLEGAL_INSTRUCTION)


def test_pointwise_job_holds_max_width_times_max_height_pixels():
    _legal(_conv_word(Engine.POINTWISE, in_hw=(16, 64), k=(1, 1)),  # 1024 pixels
           _conv_word(Engine.POINTWISE, in_hw=(63, 32), k=(1, 1), stride=(2, 1)))
    _error([_conv_word(Engine.POINTWISE, in_hw=(33, 32), k=(1, 1)), END],
           r"out_h x out_w 33x32 is 1056 pixels, more than the max_width x max_height = 1024 "
           r"a POINTWISE job holds", ErrorCode.ILLEGAL_INSTRUCTION)


def test_input_channel_tiles_fit_the_engines_counters():
    arch = ARCH.replace(conv_pi=1, pw_pi=2, ibuf_bytes=16384, wbuf_bytes=16384)
    _legal(_conv_word(in_hw=(1, 1), k=(1, 1), in_c=4095),
           _conv_word(Engine.POINTWISE, in_hw=(1, 1), k=(1, 1), in_c=8190), arch=arch)
    _error([_conv_word(in_hw=(1, 1), k=(1, 1), in_c=4096), END],
           r"in_c 4096 is 4096 input-channel tiles of conv_pi=1; the CONV engine counts at "
           r"most 4095", ErrorCode.ILLEGAL_INSTRUCTION, arch)
    _error([_conv_word(Engine.POINTWISE, in_hw=(1, 1), k=(1, 1), in_c=8191), END],
           r"in_c 8191 is 4096 input-channel tiles of pw_pi=2; the POINTWISE engine counts "
           r"at most 4095", ErrorCode.ILLEGAL_INSTRUCTION, arch)


def test_illegal_comes_before_buffer_range():
    """As in the core's decoder, an illegal COMPUTE is illegal even if it leaves a buffer."""
    _error([_conv_word(stride=(1, 2), ibuf_addr=8190), END], "stride_h x stride_w is 1x2",
           ErrorCode.ILLEGAL_INSTRUCTION)
    _error([_conv_word(ibuf_addr=8190), END], r"IBUF range \[8190, 8254\) is outside 0..8192",
           ErrorCode.BUFFER_RANGE)


def test_program_for_other_arch_is_refused():
    program = build_program(ARCH.replace(conv_po=8).config_hash, [END])
    with pytest.raises(ProgramFormatError, match="compiled for arch hash") as exc:
        ISS(ARCH).run(program, np.zeros(16, dtype=np.uint8))
    assert exc.value.code is ErrorCode.ARCH_MISMATCH
    with pytest.raises(TypeError, match="arch must be an ArchConfig, not 3"):
        ISS(3)
    with pytest.raises(TypeError, match="ddr must be a 1-D uint8 numpy array"):
        ISS(ARCH).run(program, bytearray(16))


def test_timeline_overlaps_units_and_waits_at_sync():
    a = load(Buffer.IBUF, 0, 512)
    b = load(Buffer.WBUF, 0, 512)
    c = I(Opcode.ADD, a_addr=1024, b_addr=1024, out_addr=0, count=300, mult_a=1, act_lo=-1,
          act_hi=1)
    f = fetch_cycles(ARCH)
    t0 = startup_cycles(5, ARCH)
    la, lc = instruction_cycles(a, ARCH), instruction_cycles(c, ARCH)
    # LOAD, ADD run concurrently (different units); the second LOAD waits for the first.
    starts, finishes, total = timeline([a, c, b, SYNC_ALL, END], ARCH)
    # words arrive back to back, one every ``f`` cycles: issue is fetch-bound
    assert starts[0] == t0 + f - 1 + ISSUE_LATENCY
    assert starts[1] == starts[0] + f
    # the first LOAD's bursts queue behind the instruction words already requested, as
    # many as its busy cycles assume (a unit starts START_LAG cycles after its issue,
    # and the core sees the first LOAD idle ISSUE_BUSY_LAG cycles after it is)
    assert starts[2] == finishes[0] == starts[0] + START_LAG + la + ISSUE_BUSY_LAG
    assert finishes[1] == starts[1] + START_LAG + lc + ISSUE_BUSY_LAG
    assert starts[3] == max(finishes[1], finishes[2])  # SYNC waits for every unit
    assert starts[4] == starts[3] + ISSUE_INTERVAL  # END's word waits in the fetch buffer
    assert total == starts[4] + 2
    # with a SYNC between them, the ADD waits for the load
    starts, finishes, _ = timeline([a, I(Opcode.SYNC, mask=Unit.LOAD), c, END], ARCH)
    assert starts[1] == finishes[0] and starts[2] == starts[1] + ISSUE_INTERVAL


RTL_ARCH = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384, wbuf_bytes=8192,
                      pbuf_entries=256, max_width=34, max_height=34, conv_k_max=5)


def _compute(engine, in_c, out_c, out_h, out_w, k, pool=Pool.NONE, fpool=(1, 1)):
    return I(Opcode.COMPUTE, engine=engine, pool=pool, in_c=in_c, out_c=out_c, out_h=out_h,
             out_w=out_w, k_h=k[0], k_w=k[1], fpool_h=fpool[0], fpool_w=fpool[1],
             stride_h=1, stride_w=1)


def _window(engine, in_c, out_c, in_h, in_w, k, stride, pads, pool=Pool.NONE):
    return I(Opcode.COMPUTE, **compute_fields(
        engine, (in_h, in_w), k, stride=(stride, stride), pads=pads, pool=pool,
        fpool=(2, 2) if pool is Pool.MAX else (1, 1), in_c=in_c, out_c=out_c))


@pytest.mark.parametrize("instr, rtl", [
    # busy cycles counted on the SEML core under Verilator (issue stamp to the next
    # SYNC's, less the START_LAG cycle before the unit's start and the ISSUE_BUSY_LAG
    # cycle in which the core's registered busy flag still shows the unit busy), with
    # cocotbext-axi's AxiRam as DDR
    # CONV / DEPTHWISE / POINTWISE: busy cycles of the engine unit's RTL from start (with
    # its IBUF / WBUF lane fetchers; measured in Amaranth's simulator as
    # tests/hw/test_seml_engine_units.py does); ADD: the unit's, as
    # tests/hw/test_seml_units.py::test_add_unit_cycles_match_the_model measures them
    (_window(Engine.CONV, 3, 4, 8, 8, (3, 3), 1, (1, 1, 1, 1)), 127),
    (_window(Engine.CONV, 8, 8, 8, 8, (3, 3), 1, (1, 1, 1, 1)), 421),
    (_window(Engine.CONV, 5, 7, 9, 9, (3, 3), 2, (1, 1, 1, 1)), 495),
    (_window(Engine.CONV, 3, 4, 8, 8, (3, 3), 1, (1, 1, 1, 1), Pool.MAX), 127),
    (_window(Engine.CONV, 4, 4, 1, 30, (1, 5), 1, (0, 2, 0, 2)), 196),
    (_window(Engine.DEPTHWISE, 8, 8, 10, 10, (3, 3), 1, (1, 1, 1, 1)), 303),
    (_window(Engine.DEPTHWISE, 8, 8, 16, 16, (3, 3), 2, (0, 0, 1, 1)), 639),
    (_window(Engine.POINTWISE, 256, 10, 1, 1, (1, 1), 1, (0, 0, 0, 0)), 297),  # packed
    (_window(Engine.POINTWISE, 24, 16, 8, 8, (1, 1), 1, (0, 0, 0, 0)), 497),
    (_compute(Engine.POOL, 8, 8, 4, 4, (2, 2), Pool.MAX), 141),
    (_compute(Engine.POOL, 16, 16, 1, 1, (4, 4), Pool.AVG), 269),
    (I(Opcode.ADD, count=100), 39),
    (I(Opcode.ADD, count=6000), 1522),
    # LOAD / STORE followed by more SYNCs than the fetch unit buffers, so that
    # instruction fetch shares the read channel as in a real program
    (load(Buffer.IBUF, 0x4000, 512), 100),
    (load(Buffer.IBUF, 0x4003, 1000), 162),
    (load(Buffer.IBUF, 0x4001, 1021), 165),  # last beat holds more than the last word
    (load(Buffer.IBUF, 0x4FF3, 3000), 412),  # across a 4 KiB page
    (load(Buffer.IBUF, 0x4000, 480, rows=16, stride=70), 108),
    (load(Buffer.IBUF, 0x4003, 480, rows=16, stride=70), 112),
    (load(Buffer.IBUF, 0x4007, 1665, rows=5, stride=333), 250),
    (load(Buffer.IBUF, 0x4006, 120, rows=40, stride=3), 86),
    (load(Buffer.WBUF, 0x4002, 6, rows=3, stride=9), 39),
    (load(Buffer.PBUF, 0x4000, 320), 76),
    (store(0x8003, 512), 72),
    (store(0x8000, 400, rows=4, stride=140), 59),
    (store(0x8003, 480, rows=16, stride=70), 83),
    (store(0x8007, 1665, rows=5, stride=333), 220),
    (store(0x8FF3, 2100, rows=3, stride=1029), 272),  # first row across a 4 KiB page
    (store(0x8006, 120, rows=40, stride=3), 67),  # single-beat bursts held back by DDR
])
def test_cycle_model_matches_the_rtl(instr, rtl):
    assert instruction_cycles(instr, RTL_ARCH) == rtl


@pytest.mark.parametrize("program, rtl_issue, rtl_total", [
    # the core's issue stamps and cycle counter under Verilator (``sim.axi.
    # run_program_rtl``), with cocotbext-axi's AxiRam as DDR: start-up (header, CRC
    # pre-scan), fetch-bound issue, and a LOAD with instruction fetch beside it
    ([SYNC_ALL] * 12 + [END], list(range(151, 248, 8)), 249),
    ([load(Buffer.IBUF, 0x4000, 512)] + [SYNC_ALL] * 8 + [END],
     [127, 229, 233, 237, 241, 245, 249, 254, 262, 270], 272),
])
def test_timeline_matches_the_rtl_issue_stamps(program, rtl_issue, rtl_total):
    starts, _, total = timeline(program, RTL_ARCH)
    assert (starts, total) == (rtl_issue, rtl_total)


def test_missing_sync_is_a_hazard():
    rng = np.random.default_rng(0)
    instrs, ddr, _ = conv_case(rng, Engine.CONV, 3, 4, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1))
    run(instrs, ddr.copy())  # correct program passes the hazard check
    unsafe = [i for i in instrs if i.opcode is not Opcode.SYNC]
    with pytest.raises(ProgramFormatError, match=r"a SYNC is missing between them"):
        run(unsafe, ddr.copy())
    run(unsafe, ddr.copy(), check_hazards=False)
