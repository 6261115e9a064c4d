"""Cases the fuzzers found, kept as regression tests (each one failed before its fix)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, load_arch
from compiler.errors import ConvForgeError, MappingError
from hw.arch import ArchConfig
from hw.isa import (
    Buffer,
    ErrorCode,
    Opcode,
    ProgramFormatError,
    Unit,
    build_program,
    encode_instruction,
)
from sim.iss import ISS


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
