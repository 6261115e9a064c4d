# amaranth: UnusedElaboratable=no
"""The element-wise unit's table lookup and broadcast multiply on the SEML core under
Verilator, compared with the instruction-set simulator bit for bit (random DDR pauses)."""

import random

import numpy as np
import pytest

from hw.isa import Buffer, EltOp, ErrorCode, Opcode, Unit
from hw.seml.core import SemlCore
from sim.iss import ISS
from sim.rtl import run_cocotb
from tests.hw.test_seml_core import (  # noqa: F401  (core_program is the cocotb test)
    ARCH,
    DATA,
    _image,
    _place,
    _program,
    _write_case,
    core_program,
)

pytestmark = pytest.mark.rtl

TABLE = DATA + 0x800   # the 256-byte table in the image
OUT = DATA + 0x1000


def _table_program(rng, img):
    """Every 8-bit input through a random table, once bare and once after a rescaling
    add (``a * 3 + b * 5 >> 3``, clamped) fused with the table."""
    img[DATA:DATA + 256] = np.arange(256, dtype=np.uint8)
    rng_np = np.random.default_rng(rng.randrange(1 << 30))
    img[TABLE:TABLE + 256] = rng_np.integers(0, 256, 256, dtype=np.uint8)
    return [
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA, "ddr_stride": 0,
                       "buf_addr": 3, "rows": 1, "row_bytes": 256}),
        (Opcode.LOAD, {"buffer": Buffer.TBUF, "ddr_addr": TABLE, "ddr_stride": 0,
                       "buf_addr": 0, "rows": 1, "row_bytes": 256}),
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.ADD, {"a_addr": 3, "b_addr": 3, "out_addr": 1, "count": 256, "mult_a": 1,
                      "mult_b": 0, "shift": 0, "act_lo": -128, "act_hi": 127, "table": 1}),
        (Opcode.ADD, {"a_addr": 3, "b_addr": 40, "out_addr": 257, "count": 201,
                      "mult_a": 3, "mult_b": 5, "shift": 3, "act_lo": -100, "act_hi": 90,
                      "table": 1}),
        (Opcode.SYNC, {"mask": Unit.COMPUTE}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": OUT, "ddr_stride": 0,
                        "buf_addr": 1, "rows": 1, "row_bytes": 457}),
        (Opcode.END, {}),
    ]


def _mul_program(rng, img, *, table):
    """A squeeze-and-excitation gate: ``c`` channels of ``h * w`` elements, each
    multiplied by its channel's gate, rescaled, clamped (optionally through a table)."""
    c, hw = rng.randrange(2, 7), rng.randrange(1, 30)
    n = c * hw
    img[TABLE:TABLE + 256] = np.random.default_rng(rng.randrange(1 << 30)).integers(
        0, 256, 256, dtype=np.uint8)
    return [
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA, "ddr_stride": 0,
                       "buf_addr": 5, "rows": 1, "row_bytes": n}),
        (Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": DATA + 0x400, "ddr_stride": 0,
                       "buf_addr": 600, "rows": 1, "row_bytes": c}),
        (Opcode.LOAD, {"buffer": Buffer.TBUF, "ddr_addr": TABLE, "ddr_stride": 0,
                       "buf_addr": 0, "rows": 2, "row_bytes": 128}),
        (Opcode.SYNC, {"mask": Unit.LOAD}),
        (Opcode.ADD, {"a_addr": 5, "b_addr": 600, "out_addr": 2, "count": n,
                      "mult_a": rng.randrange(1, 1 << 12), "mult_b": 0,
                      "shift": rng.randrange(10, 18), "act_lo": -120, "act_hi": 110,
                      "op": EltOp.MUL, "group": hw, "b_count": c, "table": int(table)}),
        (Opcode.SYNC, {"mask": Unit.COMPUTE}),
        (Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": OUT, "ddr_stride": 0,
                        "buf_addr": 2, "rows": 1, "row_bytes": n}),
        (Opcode.END, {}),
    ]


CASES = {
    "table_all_inputs": _table_program,
    "mul_broadcast": lambda rng, img: _mul_program(rng, img, table=False),
    "mul_broadcast_table": lambda rng, img: _mul_program(rng, img, table=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_eltwise_op_on_core(name, tmp_path):
    rng = random.Random(len(name) * 7 + 1)
    img = _image(rng)
    program = _program(CASES[name](rng, img))
    _place(img, program)
    expected = img.copy()
    res = ISS(ARCH).run(program, expected, check_written=True)
    assert not np.array_equal(expected, img)
    args = _write_case(tmp_path, img, expected, error_code=0,
                       instr_count=len(res.instructions), predicted=res.cycles, seed=5,
                       pause=0.2)
    run_cocotb(SemlCore(ARCH), test_module=__name__, build_name="seml-core-small",
               test_args=args, testcase="core_program")


def _illegal(instrs):
    return _program(instrs + [(Opcode.END, {})])


ERRORS = {
    # a table load that does not start at a bus word
    "tbuf_misaligned": ([(Opcode.LOAD, {"buffer": Buffer.TBUF, "ddr_addr": DATA,
                                        "buf_addr": 4, "rows": 1, "row_bytes": 8})],
                        ErrorCode.ILLEGAL_INSTRUCTION),
    "tbuf_range": ([(Opcode.LOAD, {"buffer": Buffer.TBUF, "ddr_addr": DATA,
                                   "buf_addr": 8, "rows": 1, "row_bytes": 256})],
                   ErrorCode.BUFFER_RANGE),
    "mul_uncovered": ([(Opcode.ADD, {"count": 10, "op": EltOp.MUL, "group": 3,
                                     "b_count": 3, "mult_a": 1, "act_lo": -1,
                                     "act_hi": 1})], ErrorCode.ILLEGAL_INSTRUCTION),
    "add_with_group": ([(Opcode.ADD, {"count": 10, "group": 3, "mult_a": 1, "act_lo": -1,
                                      "act_hi": 1})], ErrorCode.ILLEGAL_INSTRUCTION),
    "mul_b_range": ([(Opcode.ADD, {"count": 10, "op": EltOp.MUL, "group": 1,
                                   "b_count": 10, "b_addr": 4090, "mult_a": 1,
                                   "act_lo": -1, "act_hi": 1})], ErrorCode.BUFFER_RANGE),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_eltwise_errors_agree(name, tmp_path):
    """The ISS and the core's decoder refuse the same instructions with the same code."""
    instrs, code = ERRORS[name]
    program = _illegal(instrs)
    img = _place(_image(random.Random(1)), program)
    with pytest.raises(Exception) as info:
        ISS(ARCH).run(program, img.copy())
    assert getattr(info.value, "code", None) is code
    args = _write_case(tmp_path, img, img, error_code=code.value, error_info=0)
    run_cocotb(SemlCore(ARCH), test_module=__name__, build_name="seml-core-small",
               test_args=args, testcase="core_program")
