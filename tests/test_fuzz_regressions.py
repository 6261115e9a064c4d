"""Cases the fuzzers found, kept as regression tests (each one failed before its fix)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, load_arch
from compiler.errors import ConvForgeError, MappingError
from hw.arch import ArchConfig
from hw.isa import (
    Buffer,
    Engine,
    ErrorCode,
    Opcode,
    ProgramFormatError,
    Unit,
    build_program,
    compute_fields,
    encode_instruction,
    pack_pbuf_entry,
)
from sim.iss import ISS, decode_activations


def _conv_model(in_shape, w_shape, out_shape, **attrs):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, w_shape).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, w_shape[:1]).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "regression", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_column_tiles_with_the_same_first_column_are_loaded_each(tmp_path):
    """Two column tiles of a padded stride-2 conv start at input column 0 but span 3 and 4
    columns: the second must not reuse the first one's IBUF tile (ISS != golden before)."""
    model = _conv_model([1, 8, 1, 4], (11, 8, 3, 5), [1, 11, 1, 2], kernel_shape=[3, 5], pads=[1, 2, 1, 2],
                        strides=[2, 2])
    arch = ArchConfig(act_bits=12, weight_bits=4, bias_bits=24, acc_bits=24, mult_bits=8,
                      weight_scheme="apot", pot_exp_bits=2, conv_pi=2, conv_po=3,
                      conv_k_max=5, max_width=6, max_height=40, ibuf_bytes=4096,
                      obuf_bytes=256, wbuf_bytes=512, pbuf_entries=64, axi_data_bits=32)
    result = compile_model(model, arch, tmp_path / "out", verify=True)
    assert result.program.layers[0].tiles > 1


def test_arch_narrower_than_its_kernel_is_refused(tmp_path):
    """max_width < conv_k_max: the engines cannot be built; the compile used to end in a
    ValueError from inside the engine's constructor (via the cycle model)."""
    model = _conv_model([1, 2, 4, 4], (3, 2, 3, 3), [1, 3, 4, 4], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    arch = ArchConfig(conv_k_max=7, max_width=6, max_height=24)
    with pytest.raises(MappingError, match=r"max_width=6, smaller than conv_k_max=7.*increase "
                                           r"max_width to at least 7 or lower conv_k_max"):
        compile_model(model, arch, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    path = tmp_path / "arch.json"
    path.write_text(ArchConfig(conv_k_max=5, max_height=4).to_json())
    with pytest.raises(ConvForgeError, match=r"--arch .*max_height=4, smaller than "
                                             r"conv_k_max=5"):
        load_arch(path)


def test_iss_checks_a_load_against_its_buffer_before_gathering_it():
    """A LOAD of 2**30 rows with DDR stride 0 fits the DDR image but not IBUF: the ISS
    gathered the whole block first (a MemoryError) instead of stopping with BUFFER_RANGE."""
    arch = ArchConfig()
    for buffer in (Buffer.IBUF, Buffer.PBUF):
        program = build_program(arch.config_hash, [
            encode_instruction(Opcode.LOAD, buffer=buffer, ddr_addr=0, ddr_stride=0,
                               buf_addr=0, rows=1 << 30, row_bytes=96),
            encode_instruction(Opcode.END)])
        with pytest.raises(ProgramFormatError, match=r"Instruction 0 \(LOAD\): "
                                                     r"(IBUF|PBUF) range .* is outside") as e:
            ISS(arch).run(program, np.zeros(4096, dtype=np.uint8))
        assert e.value.code is ErrorCode.BUFFER_RANGE


def test_iss_refuses_reads_of_unwritten_buffer_bytes():
    """The ISS's buffers start zeroed, the core's hold what an earlier run left: a program
    reading buffer bytes no instruction wrote ran on both without an error and gave
    different outputs. ``check_written`` (on in ``simulate``) refuses it."""
    arch = ArchConfig()
    program = build_program(arch.config_hash, [
        encode_instruction(Opcode.LOAD, buffer=Buffer.IBUF, ddr_addr=0, ddr_stride=0,
                           buf_addr=0, rows=1, row_bytes=8),
        encode_instruction(Opcode.SYNC, mask=Unit.LOAD),
        encode_instruction(Opcode.ADD, a_addr=0, b_addr=0, out_addr=0, count=16, mult_a=1,
                           mult_b=0, shift=0, act_lo=-128, act_hi=127),
        encode_instruction(Opcode.END)])
    ddr = np.zeros(4096, dtype=np.uint8)
    ISS(arch).run(program, ddr.copy())  # unchecked: the unwritten bytes read as zeros
    with pytest.raises(ProgramFormatError, match=r"Instruction 2 \(ADD\): reads IBUF byte 8 "
                                                 r"\(of \[0, 16\)\), which no instruction "
                                                 r"wrote") as e:
        ISS(arch).run(program, ddr.copy(), check_written=True)
    assert e.value.code is ErrorCode.ILLEGAL_INSTRUCTION


# 12-bit activations in two-byte elements ---------------------------------------------------

#: IBUF elements of the 12-bit regression programs, as stored (little-endian 16-bit words):
#: padding bits that are not the sign extension of bit 11, and in-range values.
_NARROW_STORED = (0x0800, 0x7FFF, 0xF7FF, 0x8000, 0x0123, 0xFEDC, 0x07FF, 0xF800)
#: Their values on a 12-bit datapath: the low 12 bits, two's complement.
_NARROW_VALUES = (-2048, -1, 2047, 0, 0x123, -292, 2047, -2048)
_X, _W, _P, _Y = 0x1000, 0x1100, 0x1200, 0x1400


def _narrow_case(engine: bool):
    """The shortest program that showed the mismatch (LOAD IBUF, ADD y = a, STORE, with the
    SYNCs between) or, with ``engine``, the same through the pointwise engine (1x1 weight
    1, bias 0, multiplier 1, shift 0): ``(program, DDR image)``; the output is
    ``_NARROW_VALUES`` at ``_Y``."""
    from tests.fuzz.isa_programs import NARROW_ARCH as arch

    lo, hi = -2048, 2047
    n = len(_NARROW_STORED)
    words = [encode_instruction(Opcode.LOAD, buffer=Buffer.IBUF, ddr_addr=_X, ddr_stride=2 * n,
                                buf_addr=0, rows=1, row_bytes=2 * n)]
    if engine:
        words += [encode_instruction(Opcode.LOAD, buffer=Buffer.WBUF, ddr_addr=_W,
                                     ddr_stride=1, buf_addr=0, rows=1, row_bytes=1),
                  encode_instruction(Opcode.LOAD, buffer=Buffer.PBUF, ddr_addr=_P,
                                     ddr_stride=16, buf_addr=0, rows=1, row_bytes=16)]
    words.append(encode_instruction(Opcode.SYNC, mask=Unit.LOAD))
    if engine:
        words.append(encode_instruction(Opcode.COMPUTE, **compute_fields(
            Engine.POINTWISE, (1, n), (1, 1), act=(lo, hi), ibuf_addr=0, wbuf_addr=0,
            pbuf_addr=0, obuf_addr=0)))
    else:
        words.append(encode_instruction(Opcode.ADD, a_addr=0, b_addr=0, out_addr=0, count=n,
                                        mult_a=1, mult_b=0, shift=0, act_lo=lo, act_hi=hi))
    words += [encode_instruction(Opcode.SYNC, mask=Unit.COMPUTE),
              encode_instruction(Opcode.STORE, buffer=Buffer.OBUF, ddr_addr=_Y,
                                 ddr_stride=2 * n, buf_addr=0, rows=1, row_bytes=2 * n),
              encode_instruction(Opcode.END)]
    program = build_program(arch.config_hash, words, ddr_bytes=0x2000)
    ddr = np.zeros(0x2000, dtype=np.uint8)
    ddr[:len(program)] = np.frombuffer(program, np.uint8)
    ddr[_X:_X + 2 * n] = np.array(_NARROW_STORED, dtype="<u2").view(np.uint8)
    ddr[_W] = 1
    ddr[_P:_P + 16] = np.frombuffer(pack_pbuf_entry(0, 1, 0), np.uint8)
    return program, ddr


def test_iss_reads_12_bit_activations_as_their_low_12_bits():
    """A 12-bit element stored as 0x0800 is -2048 to the core (it reads the low 12 bits of
    each two-byte element); the ISS read the whole int16 (2048, clamped to 2047), and 91 of
    100 random programs on the ``fuzz-narrow`` arch left other DDR bytes than the core's."""
    from tests.fuzz.isa_programs import NARROW_ARCH as arch

    raw = np.array(_NARROW_STORED, dtype="<u2").view(np.uint8)
    np.testing.assert_array_equal(decode_activations(raw, 12), _NARROW_VALUES)
    # 16-bit elements have no padding bits; 6-bit ones have two in their byte
    np.testing.assert_array_equal(decode_activations(raw, 16),
                                  np.array(_NARROW_STORED, dtype="<u2").view("<i2"))
    np.testing.assert_array_equal(decode_activations(np.array([0x20, 0xDF, 0x9F], np.uint8), 6),
                                  [-32, 31, 31])
    for engine in (False, True):
        program, ddr = _narrow_case(engine)
        ISS(arch).run(program, ddr, check_written=True)
        n = len(_NARROW_VALUES)
        np.testing.assert_array_equal(ddr[_Y:_Y + 2 * n].view("<i2"), _NARROW_VALUES)


@pytest.mark.rtl
def test_12_bit_activations_rtl_equals_iss():
    """The two programs above and the first 20 random programs of the ``fuzz-narrow`` arch
    (12-bit activations, 32-bit bus) on the SEML core, with and without AXI back-pressure:
    the whole DDR image equals the ISS's."""
    from tests.fuzz.isa_programs import IMAGE_BYTES, NARROW_ARCH, random_program
    from tests.fuzz.rtl import run_cases
    from tests.test_fuzz_rtl_programs import check_programs

    cases, expected = [], []
    for engine in (False, True):
        program, ddr = _narrow_case(engine)
        after = ddr.copy()
        ISS(NARROW_ARCH).run(program, after, check_written=True)
        for pause in (0.0, 0.3):
            cases.append({"image": ddr, "outputs": [(0, ddr.size)], "max_cycles": 20_000,
                          "pause": pause})
            expected.append(after)
    # the build benchmarks/fuzz_rtl.py --archs fuzz-narrow uses
    results = run_cases(NARROW_ARCH, cases, build_name="fuzz-rtl-fuzz-narrow", seed=3)
    for n, (r, want) in enumerate(zip(results, expected, strict=True)):
        assert r["done"] and r["error_code"] == ErrorCode.NONE.value, (n, r)
        got = np.frombuffer(bytes.fromhex(r["outputs"][0]), np.uint8)
        np.testing.assert_array_equal(got, want, err_msg=f"case {n}")
    programs = [random_program(seed, NARROW_ARCH) for seed in range(20)]
    assert all(p.image.size == IMAGE_BYTES for p in programs)
    bad, _ = check_programs(NARROW_ARCH, programs, build_name="fuzz-rtl-fuzz-narrow",
                            pause=0.2, seed=4)
    assert not bad, f"{len(bad)} of {len(programs)} programs differ: {bad[:5]}"
