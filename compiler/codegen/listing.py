"""``listing.txt``: a disassembly of ``program.bin`` that assembles back to the same bytes.

Format::

    ; comment lines start with a semicolon
    .arch_hash 0x1234abcd5678ef90
    .weights_offset 4096
    .weights_bytes 1234
    .weights_crc32 0x89abcdef
    .ddr_bytes 65536
         0  LOAD     buffer=IBUF ddr_addr=0x00012000 ... row_bytes=3072   ; layer: what

Every instruction line is its index, the opcode and every field of its format as
``name=value`` (enum fields by member name, SYNC masks as ``LOAD|COMPUTE``);
text after ``;`` is a comment. :func:`assemble` parses exactly this.
"""

from __future__ import annotations

from amaranth.lib import enum as am_enum

from hw.isa import (
    FORMATS,
    Instruction,
    Opcode,
    ProgramFormatError,
    Unit,
    build_program,
    parse_program,
)

__all__ = ["assemble", "disassemble", "format_instruction"]

_DIRECTIVES = ("arch_hash", "weights_offset", "weights_bytes", "weights_crc32", "ddr_bytes")
_HEX = {"ddr_addr", "arch_hash", "weights_crc32"}


def _fmt_value(name, value):
    if isinstance(value, Unit):
        return "|".join(u.name for u in Unit if u & value) or "0"
    if isinstance(value, am_enum.Enum):
        return value.name
    if name in _HEX:
        return f"0x{value:08x}"
    return str(value)


def format_instruction(index: int, instr: Instruction, comment: str = "") -> str:
    """One listing line."""
    body = " ".join(f"{k}={_fmt_value(k, v)}" for k, v in instr.fields.items())
    line = f"{index:6d}  {instr.opcode.name:<8s} {body}".rstrip()
    return f"{line}   ; {comment}" if comment else line


def disassemble(program: bytes, comments=None, title: str = "") -> str:
    """The listing of ``program`` (optionally with one comment per instruction)."""
    header, instructions = parse_program(program)
    lines = [f"; ConvForge program listing{': ' + title if title else ''}",
             f"; ISA version {header.version}, {header.instr_count} instructions"]
    lines.append(f".arch_hash 0x{header.arch_hash:016x}")
    lines.append(f".weights_offset {header.weights_offset}")
    lines.append(f".weights_bytes {header.weights_bytes}")
    lines.append(f".weights_crc32 0x{header.weights_crc32:08x}")
    lines.append(f".ddr_bytes {header.ddr_bytes}")
    for i, instr in enumerate(instructions):
        comment = comments[i] if comments is not None and i < len(comments) else ""
        lines.append(format_instruction(i, instr, comment))
    return "\n".join(lines) + "\n"


def _parse_value(layout, name, text, where):
    fields = dict(layout)
    if name not in fields:
        raise ProgramFormatError(f"{where}: unknown field {name!r}")
    shape = fields[name].shape
    if shape is Unit:
        value = Unit(0)
        for part in text.split("|"):
            if part != "0":
                try:
                    value |= Unit[part]
                except KeyError:
                    raise ProgramFormatError(f"{where}: unknown unit {part!r}") from None
        return value
    if isinstance(shape, type) and issubclass(shape, am_enum.Enum):
        try:
            return shape[text]
        except KeyError:
            raise ProgramFormatError(f"{where}: {name} has no member {text!r}") from None
    try:
        return int(text, 0)
    except ValueError:
        raise ProgramFormatError(f"{where}: {name}={text!r} is not an integer") from None


def assemble(text: str) -> bytes:
    """Assemble a listing back to ``program.bin``.

    Raises
    ------
    ProgramFormatError
        A line cannot be parsed (the message gives its number).
    """
    header = {}
    instructions = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        where = f"listing line {lineno}"
        if line.startswith("."):
            parts = line[1:].split()
            if len(parts) != 2 or parts[0] not in _DIRECTIVES:
                raise ProgramFormatError(f"{where}: unknown directive {line!r}")
            try:
                header[parts[0]] = int(parts[1], 0)
            except ValueError:
                raise ProgramFormatError(f"{where}: .{parts[0]} {parts[1]!r} is not an "
                                         f"integer") from None
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            raise ProgramFormatError(f"{where}: expected '<index> <OPCODE> field=value ...'")
        if int(parts[0]) != len(instructions):
            raise ProgramFormatError(f"{where}: instruction index {parts[0]}, expected "
                                     f"{len(instructions)}")
        try:
            opcode = Opcode[parts[1]]
        except KeyError:
            raise ProgramFormatError(f"{where}: unknown opcode {parts[1]!r}") from None
        layout = FORMATS[opcode]
        fields = {}
        for item in parts[2:]:
            name, sep, value = item.partition("=")
            if not sep:
                raise ProgramFormatError(f"{where}: expected name=value, not {item!r}")
            fields[name] = _parse_value(layout, name, value, where)
        try:
            instructions.append(Instruction(opcode, fields).encode())
        except ValueError as e:
            raise ProgramFormatError(f"{where}: {e}") from None
    missing = [d for d in _DIRECTIVES if d not in header]
    if missing:
        names = ", ".join("." + m for m in missing)
        raise ProgramFormatError(f"Listing lacks directive(s) {names}")
    return build_program(header["arch_hash"], instructions,
                         weights_offset=header["weights_offset"],
                         weights_bytes=header["weights_bytes"],
                         weights_crc32=header["weights_crc32"], ddr_bytes=header["ddr_bytes"])
