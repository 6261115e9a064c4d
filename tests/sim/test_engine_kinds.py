"""The engine-kind descriptor table, and a new kind added in one place.

The toy NEGATE kind below (``y = clamp(-x)``, no weights) is added the way a new engine is:
one value of :class:`hw.isa.Engine`, one :class:`hw.engine_kinds.EngineKind` and one golden
operation. Nothing else is edited, yet the ISS checks, executes and times it, and the
compiler's tiler and cost model plan it.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.errors import MappingError
from compiler.mapping.cost_model import window_tile_cycles
from compiler.mapping.tiling import WindowOp, plan_window
from hw import engine_kinds
from hw.arch import ArchConfig
from hw.engine_kinds import ENGINE_KINDS, EngineKind, check_compute, register_engine_kind
from hw.isa import (
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
    decode_instruction,
)
from sim import engine_ops
from sim.engine_ops import GOLDEN_OPS, register_golden_op
from sim.iss import (
    ISS,
    ISSUE_BUSY_LAG,
    START_LAG,
    decode_activations,
    encode_activations,
    instruction_cycles,
)

ARCH = ArchConfig(max_width=16, max_height=16, ibuf_bytes=4096, obuf_bytes=4096,
                  wbuf_bytes=1024, pbuf_entries=16)

#: Cycles of the toy unit: one element per cycle plus a fixed start.
TOY_START = 3


def _extend_engine(name: str, value: int):
    """A new member of :class:`hw.isa.Engine` (what one more line in its definition
    gives), made at run time so this test edits no module."""
    member = object.__new__(Engine)
    member._name_, member._value_ = name, value
    member.__objclass__ = Engine
    Engine._member_map_[name] = member
    Engine._value2member_map_[value] = member
    Engine._member_names_.append(name)
    return member


def _remove_engine(member):
    del Engine._member_map_[member.name]
    del Engine._value2member_map_[member.value]
    Engine._member_names_.remove(member.name)


@pytest.fixture
def negate():
    member = _extend_engine("NEGATE", 15)

    def same_size(i, arch):
        if (i.out_c, i.k_h, i.k_w) != (i.in_c, 1, 1):
            return "NEGATE needs out_c == in_c and a 1x1 kernel"
        return None

    register_engine_kind(EngineKind(
        member, None, weighted=False, channelwise=True, windowed=False, pixel_job=True,
        rules=(same_size,),
        cycles=lambda i, arch: TOY_START + i.in_c * i.out_h * i.out_w))
    register_golden_op(member, lambda operands, i, x: np.clip(-x, i.act_lo, i.act_hi))
    try:
        yield member
    finally:
        del ENGINE_KINDS[member]
        del GOLDEN_OPS[member]
        _remove_engine(member)


def test_every_engine_has_a_descriptor_and_a_golden_op():
    assert set(ENGINE_KINDS) == set(Engine)
    assert set(engine_ops.GOLDEN_OPS) == set(Engine)
    for engine, kind in ENGINE_KINDS.items():
        assert kind.engine is engine
        if kind.weighted:
            assert kind.lanes is not None and kind.latency is not None


def test_unknown_kind_is_refused_cleanly():
    with pytest.raises(ValueError, match="No engine kind is registered for 7"):
        engine_kinds.engine_kind(7)
    with pytest.raises(TypeError):
        register_engine_kind("CONV")


def _program(member, c, h, w, **over):
    fields = compute_fields(member, (h, w), (1, 1), in_c=c, out_c=c, act=(-100, 90),
                            ibuf_addr=0, obuf_addr=512)
    fields.update(over)
    n = c * h * w
    return [
        Instruction(Opcode.LOAD, {"buffer": Buffer.IBUF, "ddr_addr": 0x1000, "buf_addr": 0,
                                  "rows": 1, "row_bytes": n}),
        Instruction(Opcode.SYNC, {"mask": Unit.LOAD}),
        Instruction(Opcode.COMPUTE, fields),
        Instruction(Opcode.SYNC, {"mask": Unit.COMPUTE}),
        Instruction(Opcode.STORE, {"buffer": Buffer.OBUF, "ddr_addr": 0x2000,
                                   "buf_addr": 512, "rows": 1, "row_bytes": n}),
        Instruction(Opcode.END, {}),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_toy_kind_runs_on_the_iss(negate, seed):
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(1, 9, size=3))
    x = rng.integers(-128, 128, size=(c, h, w))
    ddr = np.zeros(0x3000, dtype=np.uint8)
    raw = encode_activations(x, 8)
    ddr[0x1000:0x1000 + raw.size] = raw
    instrs = _program(negate, c, h, w)
    # the word round-trips through the one ISA definition
    word = instrs[2].encode()
    assert decode_instruction(word).engine is negate
    result = ISS(ARCH).run(build_program(ARCH.config_hash, instrs), ddr)
    got = decode_activations(ddr[0x2000:0x2000 + raw.size], 8).reshape(x.shape)
    np.testing.assert_array_equal(got, np.clip(-x, -100, 90))
    compute = result.instructions[2]
    assert instruction_cycles(compute, ARCH) == TOY_START + c * h * w
    # the unit starts START_LAG cycles after its issue; the core sees it idle
    # ISSUE_BUSY_LAG cycles after it is
    assert (result.finish[2] - result.start[2]
            == START_LAG + TOY_START + c * h * w + ISSUE_BUSY_LAG)


def test_toy_kind_rules_and_shared_rules(negate):
    instrs = _program(negate, 2, 4, 4, out_c=3)
    with pytest.raises(ProgramFormatError, match="NEGATE needs out_c == in_c") as e:
        ISS(ARCH).run(build_program(ARCH.config_hash, instrs), np.zeros(0x3000, np.uint8))
    assert e.value.code is ErrorCode.ILLEGAL_INSTRUCTION
    # the rules every kind shares come from the table too: no fused pool on this kind
    probe = Instruction(Opcode.COMPUTE, compute_fields(negate, (4, 4), (1, 1), in_c=2,
                                                       out_c=2, pool=Pool.MAX))
    assert "no fused pool" in check_compute(probe, ARCH)
    # one job holds at most max_width x max_height pixels (pixel_job)
    big = Instruction(Opcode.COMPUTE, compute_fields(negate, (20, 20), (1, 1), in_c=1,
                                                     out_c=1))
    assert "a NEGATE job holds" in check_compute(big, ARCH)


def test_toy_kind_is_tiled_and_costed(negate):
    op = WindowOp("neg", negate, 8, 30, 30, 8, (1, 1), (1, 1), (0, 0, 0, 0),
                  channelwise=True, params=False)
    tiling = plan_window(op, ARCH)
    # pixel_job: a tile holds at most max_width * max_height output pixels
    assert tiling.row_tile * tiling.col_tile <= ARCH.max_width * ARCH.max_height
    assert window_tile_cycles(op, ARCH, 2, 3) == TOY_START + 2 * 3 * 30
    wide = WindowOp("neg", negate, 4000, 1, 1, 4000, (1, 1), (1, 1), (0, 0, 0, 0),
                    channelwise=True, params=False)
    assert plan_window(wide, ARCH).m_tile < 4000
    with pytest.raises(MappingError, match="'neg' \\(negate\\) cannot be tiled: .* IBUF"):
        plan_window(WindowOp("neg", negate, 1, 1, 100, 1, (1, 1), (1, 1), (0, 0, 0, 0),
                             channelwise=True, params=False),
                    ArchConfig(max_width=16, max_height=16, ibuf_bytes=64, obuf_bytes=64,
                               wbuf_bytes=64, pbuf_entries=4))
