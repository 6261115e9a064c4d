"""The ISA definition (hw/isa.py): layouts, encoder/decoder, program header, documentation."""

import random
import re
from pathlib import Path

import pytest
from amaranth.hdl import Const
from amaranth.lib import data

from hw import isa
from hw.arch import ArchConfig
from hw.isa import (
    FORMATS,
    INSTR_BITS,
    INSTR_BYTES,
    INSTRUCTION,
    Buffer,
    Engine,
    ErrorCode,
    Instruction,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    build_program,
    decode_instruction,
    encode_instruction,
    parse_program,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def _user_fields(layout):
    return [(n, f) for n, f in layout if n != "opcode" and n != "reserved"
            and not n.startswith("_pad")]


def _random_fields(rng, layout):
    fields = {}
    for name, field in _user_fields(layout):
        shape = field.shape
        if isinstance(shape, type) and issubclass(shape, Unit):
            fields[name] = Unit(rng.randrange(8))
        elif isinstance(shape, type):
            fields[name] = rng.choice(list(shape))
        elif shape.signed:
            fields[name] = rng.randrange(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
        else:
            fields[name] = rng.randrange(1 << shape.width)
    return fields


def test_every_format_is_one_word_with_opcode_in_low_byte():
    assert INSTR_BITS == 512 and INSTR_BYTES == 64
    assert INSTRUCTION.size == INSTR_BITS
    for layout in FORMATS.values():
        assert layout.size == INSTR_BITS
        opcode = dict(layout)["opcode"]
        assert opcode.offset == 0 and opcode.width == 8
    assert Opcode.as_shape().width == 8


def test_zero_is_not_an_opcode():
    with pytest.raises(ProgramFormatError, match="Illegal opcode 0x00") as exc:
        decode_instruction(bytes(INSTR_BYTES))
    assert exc.value.code is ErrorCode.ILLEGAL_INSTRUCTION


@pytest.mark.parametrize("opcode", list(Opcode))
def test_encode_decode_round_trip(opcode):
    rng = random.Random(int(opcode.value))
    for _ in range(50):
        fields = _random_fields(rng, FORMATS[opcode])
        word = encode_instruction(opcode, **fields)
        assert len(word) == INSTR_BYTES and word[0] == opcode.value
        decoded = decode_instruction(word)
        assert decoded.opcode is opcode
        assert decoded.fields == fields
        assert decoded.encode() == word


@pytest.mark.parametrize("opcode", list(Opcode))
def test_python_encoder_agrees_with_amaranth_layout(opcode):
    """The bytes the encoder writes are what an Amaranth view of the word decodes."""
    rng = random.Random(100 + int(opcode.value))
    layout = FORMATS[opcode]
    for _ in range(10):
        fields = _random_fields(rng, layout)
        word = int.from_bytes(encode_instruction(opcode, **fields), "little")
        view = data.Const(layout, word)
        assert view.opcode == opcode
        for name, value in fields.items():
            got = view[name]
            if isinstance(value, int) and not isinstance(value, Unit):
                assert got == value, name
            else:
                assert got == value or got == value.value, name
        union = data.Const(INSTRUCTION, word)
        assert union.opcode == opcode
        assert Const(word, INSTR_BITS).value == word


def test_encode_rejects_unknown_fields_and_out_of_range_values():
    with pytest.raises(ValueError, match=r"LOAD has no field\(s\) kernel"):
        encode_instruction(Opcode.LOAD, kernel=3)
    with pytest.raises(ValueError, match=r"COMPUTE.act_lo must be between -32768 and 32767 "
                                         r"\(16-bit field\), not 40000"):
        encode_instruction(Opcode.COMPUTE, act_lo=40000)
    with pytest.raises(ValueError, match=r"LOAD.rows must be between 0 and 4294967295 .*, "
                                         r"not -1"):
        encode_instruction(Opcode.LOAD, rows=-1)
    with pytest.raises(ValueError, match=r"COMPUTE.engine must be a Engine, not 9"):
        encode_instruction(Opcode.COMPUTE, engine=9)
    with pytest.raises(ValueError, match=r"ADD.count must be an integer, not 1.5"):
        encode_instruction(Opcode.ADD, count=1.5)
    with pytest.raises(TypeError, match=r"Opcode must be an Opcode, not 3"):
        encode_instruction(3)


def test_decode_rejects_reserved_bits_and_bad_enum_values():
    word = bytearray(encode_instruction(Opcode.END))
    word[40] = 1
    with pytest.raises(ProgramFormatError, match="END has non-zero reserved bits"):
        decode_instruction(bytes(word))
    word = bytearray(encode_instruction(Opcode.COMPUTE))
    word[1] = 0x0F  # engine 15
    with pytest.raises(ProgramFormatError, match=r"COMPUTE.engine has illegal value 15"):
        decode_instruction(bytes(word))
    with pytest.raises(ProgramFormatError, match="An instruction word is 64 bytes, not 63"):
        decode_instruction(bytes(63))


def test_enum_values_are_stable():
    assert [o.value for o in Opcode] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in Engine] == [0, 1, 2, 3]
    assert [p.value for p in Pool] == [0, 1, 2]
    assert [b.value for b in Buffer] == [0, 1, 2, 3, 4]
    assert [o.value for o in isa.EltOp] == [0, 1]
    assert [u.value for u in Unit] == [1, 2, 4]


def _program(arch_hash=0x1234, n=3):
    instrs = [Instruction(Opcode.SYNC, {"mask": Unit.LOAD})] * (n - 1) + \
        [Instruction(Opcode.END, {})]
    return build_program(arch_hash, instrs, weights_offset=4096, weights=b"abc", ddr_bytes=8192)


def test_program_header_round_trip():
    blob = _program()
    assert blob[:4] == b"CFPG" and len(blob) == 64 + 3 * 64
    header, instrs = parse_program(blob, 0x1234)
    assert header.arch_hash == 0x1234 and header.instr_count == 3
    assert header.weights_offset == 4096 and header.weights_bytes == 3
    assert header.weights_crc32 == isa.crc32(b"abc") and header.ddr_bytes == 8192
    assert [i.opcode for i in instrs] == [Opcode.SYNC, Opcode.SYNC, Opcode.END]


def test_header_layout_matches_the_packed_header():
    blob = _program()
    assert isa.HEADER_LAYOUT.size == 8 * isa.HEADER_BYTES
    view = data.Const(isa.HEADER_LAYOUT, int.from_bytes(blob[:64], "little"))
    header, _ = parse_program(blob)
    assert view.magic == int.from_bytes(isa.MAGIC, "little")
    assert view.version == isa.ISA_VERSION and view.header_bytes == 64 and view.instr_bytes == 64
    for name in ("arch_hash", "instr_count", "weights_offset", "weights_bytes", "weights_crc32",
                 "ddr_bytes", "flags"):
        assert view[name] == getattr(header, name), name
    assert view.crc32 == int.from_bytes(blob[60:64], "little") and view.reserved == 0


def test_program_refused_for_other_arch():
    arch = ArchConfig()
    other = arch.replace(conv_pi=8)
    blob = _program(arch.config_hash)
    with pytest.raises(ProgramFormatError, match=r"compiled for arch hash 0x[0-9a-f]{16}, but "
                                                 r"this arch has hash") as exc:
        parse_program(blob, other.config_hash)
    assert exc.value.code is ErrorCode.ARCH_MISMATCH


@pytest.mark.parametrize("cut", [0, 10, 63, 64 + 64, 64 + 3 * 64 - 1])
def test_truncated_program_refused(cut):
    blob = _program()
    with pytest.raises(ProgramFormatError, match="truncated"):
        parse_program(blob[:cut])


def test_every_corrupted_byte_is_detected():
    blob = _program()
    rng = random.Random(5)
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(ProgramFormatError) as exc:
            parse_program(bytes(bad), 0x1234)
        assert exc.value.code in (ErrorCode.BAD_MAGIC, ErrorCode.BAD_VERSION,
                                  ErrorCode.ARCH_MISMATCH, ErrorCode.BAD_CRC), pos


def test_bad_magic_and_version():
    blob = bytearray(_program())
    blob[0] = ord("X")
    with pytest.raises(ProgramFormatError, match="Not a ConvForge program") as exc:
        parse_program(bytes(blob))
    assert exc.value.code is ErrorCode.BAD_MAGIC
    blob = bytearray(_program())
    blob[4] = 99
    with pytest.raises(ProgramFormatError, match="ISA version 99") as exc:
        parse_program(bytes(blob))
    assert exc.value.code is ErrorCode.BAD_VERSION


def test_programs_of_the_previous_isa_version_are_refused():
    """Version 2 changed which COMPUTE instructions are legal: version-1 programs are
    refused by the header check, with the version-mismatch error."""
    assert isa.ISA_VERSION == 2
    text = DOC.read_text()
    assert "(ISA version 2)" in text and "`ISA_VERSION` (2)" in text
    blob = bytearray(_program())
    blob[4:6] = (1).to_bytes(2, "little")
    blob[60:64] = isa.crc32(bytes(blob[64:]), isa.crc32(bytes(blob[:60]))).to_bytes(4, "little")
    with pytest.raises(ProgramFormatError, match=r"Program is for ISA version 1, this tool "
                                                 r"implements version 2; recompile the model") as exc:
        parse_program(bytes(blob))
    assert exc.value.code is ErrorCode.BAD_VERSION


@pytest.mark.parametrize("k_h,k_w,k", [(1, 1, 1), (3, 3, 3), (1, 5, 5), (5, 1, 5), (2, 2, 3),
                                       (4, 1, 5), (1, 6, 7), (7, 3, 7), (2, 7, 7)])
def test_engine_kernel_is_the_smallest_odd_square(k_h, k_w, k):
    assert isa.engine_kernel(k_h, k_w) == k
    assert k % 2 == 1 and max(k_h, k_w) <= k <= max(k_h, k_w) + 1


def test_engine_kernel_arguments():
    with pytest.raises(ValueError, match=r"Kernel size k_h must be a positive integer, not 0"):
        isa.engine_kernel(0, 3)
    with pytest.raises(ValueError, match=r"Kernel size k_w must be a positive integer, not 2.0"):
        isa.engine_kernel(3, 2.0)


def test_pbuf_record_round_trip():
    rec = isa.pack_pbuf_entry(-123456789, 40000, 17)
    assert len(rec) == isa.PBUF_ENTRY_BYTES
    assert isa.unpack_pbuf_entry(rec) == (-123456789, 40000, 17)


def test_element_sizes():
    assert isa.element_bytes(8) == 1 and isa.element_bytes(9) == 2
    assert isa.weight_element_bytes(ArchConfig(weight_scheme="pot")) == 1
    assert isa.weight_element_bytes(ArchConfig(weight_scheme="apot")) == 2


def test_documentation_tables_match_layouts():
    """Every `| hi:lo | field |` row of docs/isa.md names a real field at those bits."""
    text = DOC.read_text()
    sections = {"DMA_LAYOUT": isa.DMA_LAYOUT, "COMPUTE_LAYOUT": isa.COMPUTE_LAYOUT,
                "ADD_LAYOUT": isa.ADD_LAYOUT, "SYNC_LAYOUT": isa.SYNC_LAYOUT}
    for name, layout in sections.items():
        body = text.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        rows = re.findall(r"^\| (\d+):(\d+) \| `(\w+)` \|", body, re.MULTILINE)
        documented = {field for _, _, field in rows}
        actual = {n for n, _ in _user_fields(layout)} | {"opcode"}
        assert documented == actual, name
        fields = dict(layout)
        for hi, lo, field in rows:
            f = fields[field]
            assert (int(lo), int(hi)) == (f.offset, f.offset + f.width - 1), (name, field)
    for op in Opcode:
        assert f"| `{op.name}` | 0x{op.value:02x} |" in text
