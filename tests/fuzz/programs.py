"""Corrupted programs: bit flips, truncations, header and section edits of real compiled
``program.bin`` / ``weights.bin`` pairs, run the way a host runs them.

A *base* is a real compile output (:func:`base_program`): program, weights, the DDR
image with a seeded input, and the reference outputs of the uncorrupted run on the ISS.
A *mutator* (:data:`MUTATORS`) turns it into a :class:`Corruption`. Two families:

* plain corruptions (``resealed=False``): the bytes changed as a faulty transfer or
  storage would change them -- bit flips, random bytes, truncation, trailing bytes,
  header fields set to other values, flips in ``weights.bin``. The header's CRC-32 and
  the weight image's size and CRC-32 should catch them.
* resealed edits (``resealed=True``): an instruction, header field or the instruction
  sequence changed and the CRC recomputed, as a buggy or malicious tool would write
  them. They get past the CRC, so they exercise the decoder and the executor's checks.

:func:`run_iss` runs a corruption as ``convforge simulate`` does (the weight check of
:func:`compiler.compile.load_image`, then :meth:`sim.iss.ISS.run`) and the oracle
:func:`classify` sorts the outcome:

``detected``
    a :class:`hw.isa.ProgramFormatError` carrying a defined, non-``NONE``
    :class:`hw.isa.ErrorCode`;
``same``
    the run completed and every output equals the uncorrupted run's (a don't-care bit);
``changed``
    the run completed with other outputs -- allowed for resealed edits only (the program
    is a different, valid program); for a plain corruption it is silent wrong output;
``failed``
    any other exception (a crash), a run over :data:`WALL_LIMIT_S` (a hang), or a plain
    corruption that changed the output undetected.
"""

from __future__ import annotations

import random
import struct
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, ddr_image
from hw import isa
from hw.arch import ArchConfig
from hw.isa import HEADER_BYTES, INSTR_BYTES, ErrorCode, ProgramFormatError
from sim.iss import ISS, encode_activations

__all__ = [
    "ISS_ONLY_CHECKS",
    "MUTATORS",
    "RTL_MUTATORS",
    "Base",
    "Corruption",
    "IssOutcome",
    "base_program",
    "classify",
    "corrupt",
    "image_of",
    "run_iss",
]

#: Wall-clock bound of one ISS run of a corrupted tiny program (a correct one takes
#: milliseconds): longer counts as a hang.
WALL_LIMIT_S = 10.0

#: Header fields: name -> (byte offset, size), as ``hw.isa.ProgramHeader`` documents them.
HEADER_FIELDS = {
    "magic": (0, 4), "version": (4, 2), "header_bytes": (6, 2), "arch_hash": (8, 8),
    "instr_count": (16, 4), "instr_bytes": (20, 2), "flags": (22, 2),
    "weights_offset": (24, 4), "weights_bytes": (28, 4), "weights_crc32": (32, 4),
    "ddr_bytes": (36, 4), "reserved": (40, 20), "crc32": (60, 4),
}


def tiny_model():
    """Conv 3x3 + ReLU, 2x2 max pool, depthwise 3x3, pointwise, residual add, global
    average pool, fully connected: every instruction form on an 8x8 input."""
    rng = np.random.default_rng(11)
    inits = []

    def w(name, shape):
        inits.append(numpy_helper.from_array(
            rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape).astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", w("w1", (6, 3, 3, 3)), w("b1", (6,))], ["c1"],
                         name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", w("w2", (6, 1, 3, 3))], ["d2"], name="dw2",
                         group=6, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", w("w3", (6, 6, 1, 1)), w("b3", (6,))], ["c3"],
                         name="pw3"),
        helper.make_node("Add", ["c3", "p1"], ["a4"], name="add4"),
        helper.make_node("GlobalAveragePool", ["a4"], ["g5"], name="gap5"),
        helper.make_node("Flatten", ["g5"], ["f5"], name="flatten5"),
        helper.make_node("Gemm", ["f5", w("w6", (5, 6)), w("b6", (5,))], ["y"], name="fc6",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@dataclass(frozen=True)
class Base:
    """A real compile output and its uncorrupted run."""
    arch: ArchConfig
    program: bytes
    weights: bytes
    weights_offset: int
    ddr_bytes: int
    inputs: tuple      # (offset, bytes) of each input, already in ``image``
    outputs: tuple     # (name, offset, bytes) of each output
    image: np.ndarray  # DDR image before the run (program, weights, input)
    reference: dict    # output name -> bytes of the uncorrupted ISS run
    cycles: int        # predicted cycles of the uncorrupted run

    def outputs_of(self, ddr) -> dict:
        return {name: bytes(ddr[off:off + n]) for name, off, n in self.outputs}


@cache
def base_program(arch: ArchConfig, seed: int = 0) -> Base:
    """Compile :func:`tiny_model` for ``arch`` and run it once on the ISS."""
    with tempfile.TemporaryDirectory(prefix="convforge-fuzz-") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_model(tiny_model(), arch, Path(tmp) / "out")
    program = result.program_bin
    weights = bytes(result.program.weights)
    header, _ = isa.parse_program(program, arch.config_hash)
    image = ddr_image(program, weights, header.weights_offset, header.ddr_bytes)
    rng = np.random.default_rng(seed)
    inputs = []
    for spec in result.manifest["inputs"]:
        x = rng.integers(-(1 << (arch.act_bits - 1)), 1 << (arch.act_bits - 1),
                         size=spec["shape"])
        raw = encode_activations(x, arch.act_bits)
        image[spec["offset"]:spec["offset"] + raw.size] = raw
        inputs.append((spec["offset"], raw.size))
    outputs = tuple((s["name"], s["offset"], s["bytes"]) for s in result.manifest["outputs"])
    ddr = image.copy()
    cycles = ISS(arch).run(program, ddr, check_written=True).cycles
    image.setflags(write=False)
    reference = {name: bytes(ddr[off:off + n]) for name, off, n in outputs}
    return Base(arch, program, weights, header.weights_offset, header.ddr_bytes,
                tuple(inputs), outputs, image, reference, cycles)


@dataclass(frozen=True)
class Corruption:
    kind: str
    program: bytes
    weights: bytes
    resealed: bool
    note: str


def _reseal(program: bytes) -> bytes:
    """Recompute the header CRC-32 over the header and the instruction words present."""
    body = program[:HEADER_BYTES - 4]
    crc = isa.crc32(program[HEADER_BYTES:], isa.crc32(body))
    return body + crc.to_bytes(4, "little") + program[HEADER_BYTES:]


def _set_count(program: bytes, count: int) -> bytes:
    return program[:16] + struct.pack("<I", count) + program[20:]


def _words(program):
    return [program[i:i + INSTR_BYTES] for i in range(HEADER_BYTES, len(program), INSTR_BYTES)]


def _field_value(rng: random.Random, size: int, old: int) -> int:
    bits = 8 * size
    r = rng.random()
    if r < 0.3:
        return old ^ (1 << rng.randrange(bits))
    if r < 0.5:
        return (old + rng.choice([-1, 1])) % (1 << bits)
    if r < 0.6:
        return 0
    if r < 0.7:
        return (1 << bits) - 1
    return rng.getrandbits(bits)


# Plain corruptions ------------------------------------------------------------------

def bit_flips(rng, base):
    """1 to 4 bit flips anywhere in program.bin (header or instructions)."""
    data = bytearray(base.program)
    spots = [(rng.randrange(len(data)), rng.randrange(8)) for _ in range(rng.randint(1, 4))]
    for byte, bit in spots:
        data[byte] ^= 1 << bit
    return Corruption("bit_flips", bytes(data), base.weights, False, f"bits {spots}")


def header_flips(rng, base):
    """1 or 2 bit flips in the 64-byte header."""
    data = bytearray(base.program)
    spots = [(rng.randrange(HEADER_BYTES), rng.randrange(8)) for _ in range(rng.randint(1, 2))]
    for byte, bit in spots:
        data[byte] ^= 1 << bit
    return Corruption("header_flips", bytes(data), base.weights, False, f"bits {spots}")


def random_bytes(rng, base):
    """A run of 1 to 64 random bytes written over program.bin."""
    data = bytearray(base.program)
    n = rng.randint(1, 64)
    at = rng.randrange(len(data))
    chunk = bytes(rng.getrandbits(8) for _ in range(n))
    data[at:at + n] = chunk[:len(data) - at]
    return Corruption("random_bytes", bytes(data), base.weights, False, f"{n} bytes at {at}")


def truncate(rng, base):
    """program.bin cut short: inside the header, at a word boundary or mid-word."""
    r = rng.random()
    if r < 0.2:
        n = rng.randrange(HEADER_BYTES)
    elif r < 0.6:
        n = HEADER_BYTES + INSTR_BYTES * rng.randrange((len(base.program) - HEADER_BYTES)
                                                       // INSTR_BYTES)
    else:
        n = rng.randrange(HEADER_BYTES, len(base.program))
    return Corruption("truncate", base.program[:n], base.weights, False, f"to {n} bytes")


def extend(rng, base):
    """Trailing bytes after the last instruction (zeros, random or a repeated word)."""
    r = rng.random()
    if r < 0.3:
        tail = bytes(rng.randint(1, 128))
    elif r < 0.6:
        tail = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 128)))
    else:
        tail = _words(base.program)[rng.randrange(len(_words(base.program)))]
    return Corruption("extend", base.program + tail, base.weights, False,
                      f"{len(tail)} bytes appended")


def header_field(rng, base):
    """One header field set to another value, CRC left as it was."""
    name = rng.choice(sorted(HEADER_FIELDS))
    off, size = HEADER_FIELDS[name]
    old = int.from_bytes(base.program[off:off + size], "little")
    new = _field_value(rng, size, old)
    data = base.program[:off] + new.to_bytes(size, "little") + base.program[off + size:]
    return Corruption("header_field", data, base.weights, False, f"{name} {old:#x} -> {new:#x}")


def weight_flips(rng, base):
    """Bit flips, a truncation or trailing bytes in weights.bin."""
    data = bytearray(base.weights)
    r = rng.random()
    if r < 0.6:
        spots = [(rng.randrange(len(data)), rng.randrange(8)) for _ in range(rng.randint(1, 4))]
        for byte, bit in spots:
            data[byte] ^= 1 << bit
        note = f"bits {spots}"
    elif r < 0.8:
        n = rng.randrange(len(data))
        data = data[:n]
        note = f"truncated to {n} bytes"
    else:
        data += bytes(rng.randint(1, 16))
        note = "bytes appended"
    return Corruption("weights", base.program, bytes(data), False, note)


# Resealed edits ---------------------------------------------------------------------

def resealed_header(rng, base):
    """One header field set to another value and the CRC recomputed."""
    name = rng.choice(sorted(set(HEADER_FIELDS) - {"crc32"}))
    off, size = HEADER_FIELDS[name]
    old = int.from_bytes(base.program[off:off + size], "little")
    new = _field_value(rng, size, old)
    data = base.program[:off] + new.to_bytes(size, "little") + base.program[off + size:]
    return Corruption("resealed_header", _reseal(data), base.weights, True,
                      f"{name} {old:#x} -> {new:#x}")


def resealed_field(rng, base):
    """One field of one instruction set to another value (any bits of the word: opcode,
    enum fields, reserved bits, sizes, addresses), CRC recomputed."""
    words = _words(base.program)
    k = rng.randrange(len(words))
    word = int.from_bytes(words[k], "little")
    r = rng.random()
    if r < 0.5:  # a real field of the word's format, if it decodes
        try:
            instr = isa.decode_instruction(words[k])
            fields = [f for f in isa._TABLES[instr.opcode] if not f.reserved]
        except ProgramFormatError:
            fields = []
        if fields:
            f = rng.choice(fields)
            old = (word >> f.offset) & ((1 << f.width) - 1)
            new = _field_value(rng, (f.width + 7) // 8, old) & ((1 << f.width) - 1)
            word = (word & ~(((1 << f.width) - 1) << f.offset)) | (new << f.offset)
            note = f"instruction {k} {instr.opcode.name}.{f.name} {old} -> {new}"
        else:
            bit = rng.randrange(INSTR_BYTES * 8)
            word ^= 1 << bit
            note = f"instruction {k} bit {bit}"
    elif r < 0.7:  # the opcode byte
        new = rng.randrange(256)
        word = (word & ~0xFF) | new
        note = f"instruction {k} opcode -> {new:#x}"
    else:
        bits = [rng.randrange(INSTR_BYTES * 8) for _ in range(rng.randint(1, 3))]
        for bit in bits:
            word ^= 1 << bit
        note = f"instruction {k} bits {bits}"
    words[k] = word.to_bytes(INSTR_BYTES, "little")
    data = base.program[:HEADER_BYTES] + b"".join(words)
    return Corruption("resealed_field", _reseal(data), base.weights, True, note)


def resealed_sequence(rng, base):
    """Instructions deleted, duplicated, swapped or zeroed (count and CRC updated)."""
    words = _words(base.program)
    k = rng.randrange(len(words))
    r = rng.random()
    if r < 0.3:
        del words[k]
        note = f"instruction {k} deleted"
    elif r < 0.5:
        words.insert(k, words[k])
        note = f"instruction {k} duplicated"
    elif r < 0.8:
        j = rng.randrange(len(words))
        words[k], words[j] = words[j], words[k]
        note = f"instructions {k} and {j} swapped"
    else:
        words[k] = bytes(INSTR_BYTES)
        note = f"instruction {k} zeroed"
    data = _set_count(base.program[:HEADER_BYTES], len(words)) + b"".join(words)
    return Corruption("resealed_sequence", _reseal(data), base.weights, True, note)


#: Every mutator, by name.
MUTATORS = {f.__name__: f for f in (bit_flips, header_flips, random_bytes, truncate, extend,
                                    header_field, weight_flips, resealed_header,
                                    resealed_field, resealed_sequence)}

#: The corruptions the RTL runs: plain ones of program.bin that a core reading DDR can
#: see (trailing bytes after the last instruction are never read, and weights.bin is
#: checked by the host before a run) and every resealed edit.
RTL_MUTATORS = {name: MUTATORS[name] for name in ("bit_flips", "header_flips", "random_bytes",
                                                  "truncate", "header_field",
                                                  "resealed_header", "resealed_field",
                                                  "resealed_sequence")}

#: Refusals the core does not make: a weights.bin that does not match the header (the host
#: checks it before a run), instructions that overlap without a SYNC, DDR accesses past
#: the image (the core knows no image size), reads of buffer bytes no instruction wrote.
#: On such programs the core may run to the end.
ISS_ONLY_CHECKS = ("use the files of one compilation", "a SYNC is missing", "past the",
                   "which no instruction wrote")


def corrupt(rng: random.Random, base: Base, kind: str | None = None) -> Corruption:
    kind = kind or rng.choice(sorted(MUTATORS))
    return MUTATORS[kind](rng, base)


def image_of(base: Base, c: Corruption) -> np.ndarray:
    """The DDR image a host builds from the corrupted files (program at 0, weights at the
    uncorrupted program's offset, the input where the manifest says)."""
    ddr = base.image.copy()
    ddr[:len(base.program)] = 0
    ddr[:len(c.program)] = np.frombuffer(c.program, np.uint8)[:ddr.size]
    ddr[base.weights_offset:base.weights_offset + len(base.weights)] = 0
    n = min(len(c.weights), ddr.size - base.weights_offset)
    ddr[base.weights_offset:base.weights_offset + n] = np.frombuffer(c.weights, np.uint8)[:n]
    return ddr


@dataclass
class IssOutcome:
    code: ErrorCode         # NONE when the run completed
    outputs: dict | None    # output name -> bytes, when it completed
    message: str = ""
    crash: str = ""         # traceback of an unexpected exception
    seconds: float = 0.0


def run_iss(base: Base, c: Corruption) -> IssOutcome:
    """Check the program and the weights against the header and run on the ISS, as
    :func:`compiler.compile.simulate` does."""
    start = time.perf_counter()
    try:
        isa.parse_program(c.program, base.arch.config_hash)
        ISS.check_weights(c.program, c.weights)
        ddr = image_of(base, c)
        ISS(base.arch).run(c.program, ddr, check_written=True)
        return IssOutcome(ErrorCode.NONE, base.outputs_of(ddr),
                          seconds=time.perf_counter() - start)
    except ProgramFormatError as e:
        return IssOutcome(e.code, None, str(e), seconds=time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 -- a crash is a finding
        return IssOutcome(ErrorCode.NONE, None, crash="".join(traceback.format_exception(e)),
                          seconds=time.perf_counter() - start)


def classify(base: Base, c: Corruption, out: IssOutcome) -> tuple[str, str]:
    """``(kind, detail)``: ``detected``, ``same``, ``changed`` or ``failed``."""
    if out.crash:
        return "failed", f"crash: {out.crash[-800:]}"
    if out.seconds > WALL_LIMIT_S:
        return "failed", f"took {out.seconds:.1f} s"
    if out.outputs is None:
        if not isinstance(out.code, ErrorCode) or out.code is ErrorCode.NONE:
            return "failed", f"error without a defined code: {out.message}"
        if "\n" in out.message or not out.message:
            return "failed", f"unclear message {out.message!r}"
        return "detected", f"{out.code.name}: {out.message}"
    if out.outputs == base.reference:
        return "same", ""
    if c.resealed:
        return "changed", ""
    return "failed", "silent wrong output: a plain corruption went undetected"
