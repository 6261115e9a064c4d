# amaranth: UnusedElaboratable=no
"""The SEML core under Verilator: directed programs, one per instruction form, and the
error paths (illegal instruction, wrong arch, bad header, AXI error response), each
compared with the instruction-set simulator bit for bit."""

import random
from pathlib import Path

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock

from hw.arch import ArchConfig
from hw.isa import (
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    ErrorCode,
    Opcode,
    Pool,
    Unit,
    build_program,
    encode_instruction,
    pack_pbuf_entry,
)
from hw.seml.core import SemlCore
from sim.axi import DdrModel, Host
from sim.iss import ISS
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl


#: A small arch: quick to build, every buffer a few KiB.
ARCH = ArchConfig(name="core-test", ibuf_bytes=4096, obuf_bytes=4096, wbuf_bytes=2048,
                  pbuf_entries=64, max_width=16, max_height=16, conv_pi=2, conv_po=2,
                  pw_pi=4, pw_po=4, dw_channels=4, conv_k_max=3)
BASE = 0x10000
DATA = 0x2000          # feature maps and weights start here (offset from the image base)
IMAGE_BYTES = 0x6000


def _image(rng):
    img = np.frombuffer(bytes(rng.getrandbits(8) for _ in range(IMAGE_BYTES)),
                        dtype=np.uint8).copy()
    return img


def _program(instrs, arch=ARCH):
    return build_program(arch.config_hash, [encode_instruction(op, **f) for op, f in instrs])


def _place(img, program):
    img[:len(program)] = np.frombuffer(program, dtype=np.uint8)
    return img


# Directed programs ----------------------------------------------------------------------

def case_load_store(rng):
    """LOAD into IBUF at odd offsets / strides, ADD as a copy, STORE with a 2-D stride."""
    n = 37
    instrs = [
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA + 3, "ddr_stride": 50,
                           "buf_addr": 5, "rows": 3, "row_bytes": n}),
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.ADD, {"a_addr": 5, "b_addr": 5, "out_addr": 7, "count": 3 * n, "mult_a": 1, "mult_b": 0,
                          "shift": 0, "act_lo": -128, "act_hi": 127}),
        (Opcode.SYNC, {"mask": Unit.COMPUTE}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": DATA + 0x1001, "ddr_stride": 64,
                            "buf_addr": 7, "rows": 3, "row_bytes": n}),
        (Opcode.END, {}),
    ]
    return instrs


def case_add(rng):
    """Residual add with rescaling and a ReLU clamp."""
    count = 45
    instrs = [
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA, "ddr_stride": count, "buf_addr": 0,
                           "rows": 2, "row_bytes": count}),
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.ADD, {"a_addr": 0, "b_addr": count, "out_addr": 1, "count": count,
                          "mult_a": rng.randrange(1, 1 << 12), "mult_b": rng.randrange(1, 1 << 12),
                          "shift": 13, "act_lo": 0, "act_hi": 100}),
        (Opcode.SYNC, {"mask": Unit.COMPUTE}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": DATA + 0x1000, "ddr_stride": count,
                            "buf_addr": 1, "rows": 1, "row_bytes": count}),
        (Opcode.END, {}),
    ]
    return instrs


def _params(img, offset, n, rng, shift_lo=8):
    for i in range(n):
        rec = pack_pbuf_entry(rng.randrange(-3000, 3000), rng.randrange(1, 1 << 12),
                              rng.randrange(shift_lo, shift_lo + 8))
        img[offset + i * PBUF_ENTRY_BYTES:offset + (i + 1) * PBUF_ENTRY_BYTES] = list(rec)


def _compute_case(rng, engine, *, in_c, out_c, in_h, in_w, k, stride, pads, pool=Pool.NONE,
                  fpool=(1, 1), act=(-128, 127), mult=0, shift=0):
    kh, kw = k
    sh, sw = stride
    pt, pl, pb, pr = pads
    oh = (in_h + pt + pb - kh) // sh + 1
    ow = (in_w + pl + pr - kw) // sw + 1
    if engine is not Engine.POOL and pool is Pool.MAX:
        oh, ow = oh // fpool[0], ow // fpool[1]
    in_bytes = in_c * in_h * in_w
    if engine is Engine.DEPTHWISE:
        w_bytes = out_c * kh * kw
    else:
        w_bytes = out_c * in_c * kh * kw
    channels = in_c if engine is Engine.POOL else out_c
    out_bytes = channels * oh * ow
    x_at, w_at, p_at, y_at = DATA, DATA + 0x800, DATA + 0xC00, DATA + 0x1000
    instrs = [
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": x_at, "ddr_stride": in_bytes, "buf_addr": 3,
                           "rows": 1, "row_bytes": in_bytes}),
    ]
    if engine is not Engine.POOL:
        instrs += [
            (Opcode.LOAD, {"buffer": Buffer.WBUF, "ddr_addr": w_at, "ddr_stride": w_bytes,
                               "buf_addr": 1, "rows": 1, "row_bytes": w_bytes}),
            (Opcode.LOAD, {"buffer": Buffer.PBUF, "ddr_addr": p_at, "ddr_stride": PBUF_ENTRY_BYTES,
                               "buf_addr": 2, "rows": out_c, "row_bytes": PBUF_ENTRY_BYTES}),
        ]
    instrs += [
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.COMPUTE, {"engine": engine, "pool": pool, "in_c": in_c, "out_c": out_c, "in_h": in_h,
                              "in_w": in_w, "out_h": oh, "out_w": ow, "k_h": kh, "k_w": kw, "stride_h": sh,
                              "stride_w": sw, "pad_top": pt, "pad_left": pl, "pad_bottom": pb,
                              "pad_right": pr, "fpool_h": fpool[0], "fpool_w": fpool[1],
                              "act_lo": act[0], "act_hi": act[1], "mult": mult, "shift": shift,
                              "ibuf_addr": 3, "wbuf_addr": 1, "pbuf_addr": 2, "obuf_addr": 5}),
        (Opcode.SYNC, {"mask": Unit.COMPUTE}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": y_at, "ddr_stride": out_bytes,
                            "buf_addr": 5, "rows": 1, "row_bytes": out_bytes}),
        (Opcode.END, {}),
    ]

    def fill(img):
        img[x_at:x_at + in_bytes] = np.array([rng.randrange(-128, 128) for _ in range(in_bytes)],
                                             dtype=np.int8).view(np.uint8)
        img[w_at:w_at + w_bytes] = np.array([rng.randrange(-128, 128) for _ in range(w_bytes)],
                                            dtype=np.int8).view(np.uint8)
        _params(img, p_at, out_c, rng)
    return instrs, fill


def case_conv(rng):
    return _compute_case(rng, Engine.CONV, in_c=3, out_c=5, in_h=7, in_w=9, k=(3, 3),
                         stride=(1, 1), pads=(1, 1, 1, 1), act=(0, 127))


def case_conv_strided_pool(rng):
    """A 3x2 kernel (run as 3x3 with a zero column), stride 2, uneven pads, fused pool."""
    return _compute_case(rng, Engine.CONV, in_c=2, out_c=3, in_h=9, in_w=11, k=(3, 2),
                         stride=(2, 2), pads=(1, 0, 2, 1), pool=Pool.MAX, fpool=(2, 2))


def case_conv_1d(rng):
    """A 1x3 kernel over one row (the 1-D convolution form): 5 input channels, 3 tiles."""
    return _compute_case(rng, Engine.CONV, in_c=5, out_c=3, in_h=1, in_w=13, k=(1, 3),
                         stride=(1, 1), pads=(0, 1, 0, 1), act=(-100, 100))


def case_conv_2x2(rng):
    """An even 2x2 kernel, unpadded, stride 1."""
    return _compute_case(rng, Engine.CONV, in_c=2, out_c=2, in_h=6, in_w=7, k=(2, 2),
                         stride=(1, 1), pads=(0, 0, 0, 0))


def case_depthwise_unread_rows(rng):
    """Stride 2 leaves the last input row unread by every window; two channel groups."""
    return _compute_case(rng, Engine.DEPTHWISE, in_c=6, out_c=6, in_h=12, in_w=14, k=(3, 3),
                         stride=(2, 2), pads=(0, 1, 0, 1))


def case_conv_unread_rows(rng):
    """As above on the conv engine: two output-channel groups, two input-channel tiles."""
    return _compute_case(rng, Engine.CONV, in_c=3, out_c=3, in_h=12, in_w=14, k=(3, 3),
                         stride=(2, 2), pads=(0, 1, 0, 1))


def case_pointwise_strided(rng):
    """A 1x1 convolution with stride 2 (a residual downsampling shortcut)."""
    return _compute_case(rng, Engine.POINTWISE, in_c=6, out_c=5, in_h=7, in_w=9, k=(1, 1),
                         stride=(2, 2), pads=(0, 0, 0, 0), act=(0, 127))


def case_depthwise(rng):
    return _compute_case(rng, Engine.DEPTHWISE, in_c=6, out_c=6, in_h=8, in_w=8, k=(3, 3),
                         stride=(2, 2), pads=(1, 1, 1, 1), act=(0, 96))


def case_pointwise(rng):
    return _compute_case(rng, Engine.POINTWISE, in_c=10, out_c=7, in_h=3, in_w=5, k=(1, 1),
                         stride=(1, 1), pads=(0, 0, 0, 0))


def case_fully_connected(rng):
    return _compute_case(rng, Engine.POINTWISE, in_c=40, out_c=9, in_h=1, in_w=1, k=(1, 1),
                         stride=(1, 1), pads=(0, 0, 0, 0))


def case_max_pool(rng):
    return _compute_case(rng, Engine.POOL, in_c=3, out_c=3, in_h=7, in_w=7, k=(3, 3),
                         stride=(2, 2), pads=(1, 1, 1, 1), pool=Pool.MAX, act=(-20, 127))


def case_avg_pool(rng):
    return _compute_case(rng, Engine.POOL, in_c=4, out_c=4, in_h=6, in_w=5, k=(6, 5),
                         stride=(1, 1), pads=(0, 0, 0, 0), pool=Pool.AVG, mult=1311,
                         shift=15)


CASES = {
    "load_store": case_load_store, "add": case_add, "conv": case_conv,
    "conv_strided_pool": case_conv_strided_pool, "conv_1d": case_conv_1d,
    "conv_2x2": case_conv_2x2, "pointwise_strided": case_pointwise_strided,
    "depthwise": case_depthwise, "depthwise_unread_rows": case_depthwise_unread_rows,
    "conv_unread_rows": case_conv_unread_rows,
    "pointwise": case_pointwise, "fully_connected": case_fully_connected,
    "max_pool": case_max_pool, "avg_pool": case_avg_pool,
}


def _build_case(name, seed):
    rng = random.Random(seed)
    built = CASES[name](rng)
    instrs, fill = built if isinstance(built, tuple) else (built, None)
    img = _image(rng)
    if fill is not None:
        fill(img)
    program = _program(instrs)
    _place(img, program)
    return img, program


def _write_case(tmp_path, img, expected, **info):
    (tmp_path / "image.bin").write_bytes(img.tobytes())
    (tmp_path / "expected.bin").write_bytes(expected.tobytes())
    return {"image": str(tmp_path / "image.bin"), "expected": str(tmp_path / "expected.bin"),
            **info}


# cocotb side ----------------------------------------------------------------------------

async def _run_on_rtl(dut, args):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ddr = DdrModel(dut, size=1 << 20, pause=args.get("pause", 0.0), seed=args.get("seed", 0))
    host = Host(dut, ddr)
    await host.reset()
    image = Path(args["image"]).read_bytes()
    host.load(BASE, image)
    for start, length in args.get("faults", []):
        ddr.add_fault(BASE + start, length)
    result = await host.run(BASE, BASE, timeout_cycles=args.get("timeout", 200_000))
    dut._log.info("%s", result)
    return host, image, result


@cocotb.test()
async def core_program(dut):
    args = test_args()
    host, image, result = await _run_on_rtl(dut, args)
    assert result.error_code == args["error_code"], result
    if args["error_code"] == 0:
        got = host.read_back(BASE, len(image))
        expected = Path(args["expected"]).read_bytes()
        diff = [i for i in range(len(got)) if got[i] != expected[i]]
        if diff:
            lo = diff[0]
            dut._log.info("RTL      %s", got[lo - 4:lo + 28].hex())
            dut._log.info("ISS      %s", expected[lo - 4:lo + 28].hex())
            dut._log.info("original %s", image[lo - 4:lo + 28].hex())
        assert not diff, f"{len(diff)} bytes differ from the ISS, first at {diff[:8]}"
        assert result.instr_count == args["instr_count"]
    else:
        assert result.error_info == args["error_info"], result
    if "predicted" in args:
        dut._log.info("cycles: RTL %d, model %d", result.cycles, args["predicted"])
    # The core stays usable: a second run of a good program would start from here.
    status = await host.read_reg("STATUS")
    assert status & 1


# pytest side ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_core_instruction(name, tmp_path):
    img, program = _build_case(name, seed=len(name))
    expected = img.copy()
    res = ISS(ARCH).run(program, expected)
    args = _write_case(tmp_path, img, expected, error_code=0, instr_count=len(res.instructions),
                       predicted=res.cycles, seed=3, pause=0.2)
    run_cocotb(SemlCore(ARCH), test_module=__name__, build_name="seml-core-small",
               test_args=args, testcase="core_program")


def _error_case(tmp_path, program, code, info, img=None, **extra):
    if img is None:
        img = _image(random.Random(5))
    _place(img, program)
    args = _write_case(tmp_path, img, img, error_code=code.value, error_info=info, **extra)
    run_cocotb(SemlCore(ARCH), test_module=__name__, build_name="seml-core-small",
               test_args=args, testcase="core_program")


def test_core_illegal_opcode(tmp_path):
    good = encode_instruction(Opcode.SYNC, mask=Unit.LOAD)
    bad = bytes([0x3F]) + bytes(63)
    program = build_program(ARCH.config_hash, [good, bad, encode_instruction(Opcode.END)])
    _error_case(tmp_path, program, ErrorCode.ILLEGAL_INSTRUCTION, 1)


def test_core_reserved_bits(tmp_path):
    word = bytearray(encode_instruction(Opcode.END))
    word[40] = 1
    program = build_program(ARCH.config_hash, [bytes(word)])
    _error_case(tmp_path, program, ErrorCode.ILLEGAL_INSTRUCTION, 0)


def test_core_buffer_range(tmp_path):
    program = _program([(Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA, "ddr_stride": 0,
                                           "buf_addr": ARCH.ibuf_bytes - 10, "rows": 1,
                                           "row_bytes": 11}),
                        (Opcode.END, {})])
    _error_case(tmp_path, program, ErrorCode.BUFFER_RANGE, 0)


def test_core_other_arch(tmp_path):
    other = ARCH.replace(conv_po=4)
    program = _program([(Opcode.END, {})], arch=other)
    _error_case(tmp_path, program, ErrorCode.ARCH_MISMATCH, 0)


def test_core_bad_magic_and_crc(tmp_path):
    program = bytearray(_program([(Opcode.SYNC, {"mask": Unit.STORE}), (Opcode.END, {})]))
    corrupt = bytearray(program)
    corrupt[64 + 9] ^= 0x40
    (tmp_path / "crc").mkdir()
    _error_case(tmp_path / "crc", bytes(corrupt), ErrorCode.BAD_CRC, 0)
    wrong = bytearray(program)
    wrong[0:4] = b"XFPG"
    (tmp_path / "magic").mkdir()
    _error_case(tmp_path / "magic", bytes(wrong), ErrorCode.BAD_MAGIC, 0)


def test_core_missing_end(tmp_path):
    program = _program([(Opcode.SYNC, {"mask": Unit.LOAD})])
    _error_case(tmp_path, program, ErrorCode.ILLEGAL_INSTRUCTION, 1)


def test_core_bus_error(tmp_path):
    """A LOAD from a faulty DDR window ends in BUS_ERROR and done, not a hang."""
    program = _program([
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA, "ddr_stride": 100, "buf_addr": 0,
                           "rows": 4, "row_bytes": 100}),
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": DATA + 0x1000, "ddr_stride": 100,
                            "buf_addr": 0, "rows": 4, "row_bytes": 100}),
        (Opcode.END, {})])
    _error_case(tmp_path, program, ErrorCode.BUS_ERROR, 1, faults=[[DATA + 150, 4]])


def test_core_iss_agrees_on_errors():
    """The ISS refuses the same programs with the same codes."""
    img = _image(random.Random(1))
    bad = build_program(ARCH.config_hash, [bytes([0x3F]) + bytes(63)])
    from hw.isa import ProgramFormatError
    with pytest.raises(ProgramFormatError) as info:
        ISS(ARCH).run(bad, img)
    assert info.value.code is ErrorCode.ILLEGAL_INSTRUCTION
    other = _program([(Opcode.END, {})], arch=ARCH.replace(conv_po=4))
    with pytest.raises(ProgramFormatError) as info:
        ISS(ARCH).run(other, img)
    assert info.value.code is ErrorCode.ARCH_MISMATCH

