"""Random legal instruction programs for differential testing of the core against the ISS.

:func:`random_program` draws, from one seed, a ``program.bin`` and its DDR image for an
arch: the program first loads the whole of IBUF and WBUF (random bytes) and PBUF (valid
records with random biases, multipliers and shifts), then runs a random sequence of
LOAD (2-D transfers of random shape and alignment into IBUF, WBUF or PBUF), COMPUTE
(every engine: CONV with and without the fused max pool, DEPTHWISE, POINTWISE, POOL max
and average; random kernels, strides, pads, channel counts, tile sizes up to the arch's
limits, clamps and buffer addresses), ADD and STORE (2-D, from OBUF bytes an earlier
COMPUTE or ADD wrote), with SYNCs of random masks. Each candidate instruction is kept
only if the ISS runs the program with it (legal, reads only written buffer bytes); a
SYNC is put before an instruction whenever it touches bytes an instruction of another
unit touched since that unit was last waited for, so the result does not depend on
timing (the test benches add random AXI back-pressure).

:func:`run_iss` returns the DDR image after the ISS's run: the RTL must leave exactly
the same image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from hw.arch import ArchConfig
from hw.isa import (
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    Opcode,
    Pool,
    ProgramFormatError,
    Unit,
    build_program,
    compute_fields,
    element_bytes,
    encode_instruction,
    max_shift,
    pack_pbuf_entry,
    qrange,
    weight_element_bytes,
)
from sim.iss import ISS
from sim.timing import accesses

__all__ = ["IMAGE_BYTES", "NARROW_ARCH", "RandomProgram", "random_program", "run_iss"]

#: DDR image of one program (offsets from the image base): the program from 0, random
#: input bytes from :data:`INPUT`, PBUF records from :data:`RECORDS`, outputs (zeroed)
#: from :data:`OUTPUT` to :data:`IMAGE_BYTES`.
INPUT, RECORDS, OUTPUT, IMAGE_BYTES = 0x4000, 0x6000, 0x6800, 0x8000

#: The second arch the RTL fuzzing runs (``benchmarks/fuzz_rtl.py --archs fuzz-narrow``):
#: 12-bit activations in two-byte elements, 40-bit accumulators, a 32-bit bus, 6x6 line
#: buffers and ``conv_pi=3``.
NARROW_ARCH = ArchConfig(name="fuzz-narrow", act_bits=12, acc_bits=40, ibuf_bytes=2048,
                         obuf_bytes=1024, wbuf_bytes=1024, pbuf_entries=16, max_width=6,
                         max_height=6, conv_pi=3, conv_po=2, pw_pi=2, pw_po=4,
                         dw_channels=2, axi_data_bits=32)

_UNIT_OF = {Opcode.LOAD: Unit.LOAD, Opcode.STORE: Unit.STORE, Opcode.COMPUTE: Unit.COMPUTE,
            Opcode.ADD: Unit.COMPUTE}


@dataclass
class RandomProgram:
    seed: int
    arch: ArchConfig
    program: bytes
    image: np.ndarray          # DDR image before the run
    instructions: list         # (opcode name, engine name or "") of each instruction
    expected: np.ndarray       # DDR image after the ISS's run
    cycles: int                # the ISS's predicted cycles


def run_iss(arch: ArchConfig, program: bytes, image: np.ndarray):
    """``(ddr after the run, predicted cycles)``; raises ``ProgramFormatError`` when the
    ISS refuses the program."""
    ddr = image.copy()
    result = ISS(arch).run(program, ddr, check_hazards=True, check_written=True)
    return ddr, result.cycles


class _Builder:
    def __init__(self, rng: random.Random, arch: ArchConfig):
        self.rng, self.arch = rng, arch
        self.e = element_bytes(arch.act_bits)
        self.we = weight_element_bytes(arch)
        self.words = []            # encoded instruction words
        self.kinds = []
        self.pending = {u: [] for u in (Unit.LOAD, Unit.COMPUTE, Unit.STORE)}
        self.outputs = []          # OBUF ranges written: (lo, hi)
        image = np.zeros(IMAGE_BYTES, dtype=np.uint8)
        image[INPUT:RECORDS] = np.frombuffer(rng.randbytes(RECORDS - INPUT), dtype=np.uint8)
        lo, hi = qrange(arch.bias_bits)
        records = b"".join(
            pack_pbuf_entry(rng.randint(lo, hi) >> rng.choice([0, arch.bias_bits // 2]),
                            rng.randrange(1 << arch.mult_bits),
                            rng.randint(0, max_shift(arch.shift_bits)))
            for _ in range((OUTPUT - RECORDS) // PBUF_ENTRY_BYTES))
        image[RECORDS:OUTPUT] = np.frombuffer(records, dtype=np.uint8)
        self.image = image

    # Program assembly --------------------------------------------------------------------
    def program(self, words):
        return build_program(self.arch.config_hash, words + [encode_instruction(Opcode.END)],
                             ddr_bytes=IMAGE_BYTES)

    def _overlaps(self, a, b):
        return any(sa == sb and la < hb and lb < ha for sa, la, ha in a for sb, lb, hb in b)

    def _syncs_for(self, word):
        """SYNC mask needed before ``word``: units that touched its bytes since their last
        wait (reads against writes and writes against anything)."""
        from hw.isa import decode_instruction

        instr = decode_instruction(word)
        unit = _UNIT_OF.get(instr.opcode)
        reads, writes = accesses(instr, self.arch)
        mask = Unit(0)
        for other, touched in self.pending.items():
            if other is unit:
                continue
            for o_reads, o_writes in touched:
                if self._overlaps(writes, o_reads + o_writes) or self._overlaps(reads, o_writes):
                    mask |= other
        return instr, unit, (reads, writes), mask

    def _sync_word(self, mask):
        for u in self.pending:
            if u & mask:
                self.pending[u] = []
        return encode_instruction(Opcode.SYNC, mask=mask)

    def try_add(self, word, kind):
        """Append ``word`` (with the SYNC it needs) if the ISS runs the program with it."""
        instr, unit, acc, mask = self._syncs_for(word)
        extra = [encode_instruction(Opcode.SYNC, mask=mask)] if mask else []
        try:
            run_iss(self.arch, self.program(self.words + extra + [word]), self.image)
        except ProgramFormatError:
            return False
        if mask:
            self.words.append(self._sync_word(mask))
            self.kinds.append(("SYNC", ""))
        self.words.append(word)
        self.kinds.append(kind)
        if unit is not None:
            self.pending[unit].append(acc)
        if instr.opcode in (Opcode.COMPUTE, Opcode.ADD):
            self.outputs.extend((lo, hi) for _, lo, hi in acc[1])
        return True

    # Instruction draws ---------------------------------------------------------------------
    def load(self, buffer, buf_addr=None, rows=None, row_bytes=None):
        rng, arch = self.rng, self.arch
        if buffer is Buffer.PBUF:
            n = rng.randint(1, min(8, arch.pbuf_entries)) if rows is None else rows
            entry = rng.randrange(0, arch.pbuf_entries - n + 1) if buf_addr is None else buf_addr
            src = RECORDS + PBUF_ENTRY_BYTES * rng.randrange(
                0, (OUTPUT - RECORDS) // PBUF_ENTRY_BYTES - n + 1)
            return encode_instruction(Opcode.LOAD, buffer=Buffer.PBUF, ddr_addr=src,
                                      ddr_stride=n * PBUF_ENTRY_BYTES, buf_addr=entry, rows=1,
                                      row_bytes=n * PBUF_ENTRY_BYTES), ("LOAD", "PBUF")
        size = arch.ibuf_bytes if buffer is Buffer.IBUF else arch.wbuf_bytes
        if rows is None:
            rows = rng.randint(1, 8)
            row_bytes = rng.randint(1, min(96, size // rows))
        stride = row_bytes + rng.choice([0, 0, rng.randint(1, 40)])
        if (rows - 1) * stride + row_bytes > RECORDS - INPUT:
            stride = row_bytes
        span = (rows - 1) * stride + row_bytes
        src = INPUT + rng.randrange(0, RECORDS - INPUT - span + 1)
        if buf_addr is None:
            buf_addr = rng.randrange(0, size - rows * row_bytes + 1)
        return encode_instruction(Opcode.LOAD, buffer=buffer, ddr_addr=src, ddr_stride=stride,
                                  buf_addr=buf_addr, rows=rows,
                                  row_bytes=row_bytes), ("LOAD", buffer.name)

    def store(self):
        rng = self.rng
        if not self.outputs:
            return None
        lo, hi = rng.choice(self.outputs)
        n = hi - lo
        rows = rng.randint(1, min(6, n))
        row_bytes = rng.randint(1, n // rows)
        start = lo + rng.randrange(0, n - rows * row_bytes + 1)
        stride = row_bytes + rng.choice([0, rng.randint(1, 24)])
        span = (rows - 1) * stride + row_bytes
        if span > IMAGE_BYTES - OUTPUT:
            return None
        dst = OUTPUT + rng.randrange(0, IMAGE_BYTES - OUTPUT - span + 1)
        return encode_instruction(Opcode.STORE, buffer=Buffer.OBUF, ddr_addr=dst,
                                  ddr_stride=stride, buf_addr=start, rows=rows,
                                  row_bytes=row_bytes), ("STORE", "OBUF")

    def _clamp(self):
        lo, hi = qrange(self.arch.act_bits)
        if self.rng.random() < 0.5:
            return lo, hi
        a, b = sorted(self.rng.randint(lo, hi) for _ in range(2))
        return (0, hi) if self.rng.random() < 0.3 else (a, b)

    def compute(self):
        rng, arch, e = self.rng, self.arch, self.e
        engine = rng.choice([Engine.CONV, Engine.CONV, Engine.DEPTHWISE, Engine.POINTWISE,
                             Engine.POINTWISE, Engine.POOL])
        pool = None
        fpool = (1, 1)
        mult, shift = 0, 0
        if engine is Engine.POINTWISE:
            k, pads = (1, 1), (0, 0, 0, 0)
            s = rng.choice([1, 1, 2])
            stride = (s, s)
        elif engine is Engine.POOL:
            k = (rng.randint(1, 4), rng.randint(1, 4))
            pads = tuple(rng.randint(0, n - 1) for n in (k[0], k[1], k[0], k[1]))
            stride = (rng.randint(1, 3), rng.randint(1, 3))
            pool = rng.choice([Pool.MAX, Pool.AVG])
            if pool is Pool.AVG:
                mult = rng.randrange(1 << arch.mult_bits)
                shift = rng.randint(0, max_shift(arch.shift_bits))
        else:
            kmax = arch.conv_k_max
            k = (rng.randint(1, kmax), rng.randint(1, kmax))
            pads = tuple(rng.randint(0, n - 1) for n in (k[0], k[1], k[0], k[1]))
            s = rng.choice([1, 2])
            stride = (s, s)
            if engine is Engine.CONV and rng.random() < 0.25:
                pool, fpool = Pool.MAX, (2, 2)
        in_h = rng.randint(1, max(1, arch.max_height - pads[0] - pads[2] - 2))
        in_w = rng.randint(1, max(1, arch.max_width - pads[1] - pads[3] - 2))
        in_c = rng.randint(1, 3 * max(arch.conv_pi, arch.pw_pi, arch.dw_channels))
        out_c = in_c if engine in (Engine.DEPTHWISE, Engine.POOL) else rng.randint(
            1, 3 * max(arch.conv_po, arch.pw_po))
        # keep tiles small enough to fit the buffers several times over
        while in_c * in_h * in_w * e > arch.ibuf_bytes // 2 and in_c > 1:
            in_c = max(1, in_c // 2)
            if engine in (Engine.DEPTHWISE, Engine.POOL):
                out_c = in_c
        fields = compute_fields(engine, (in_h, in_w), k, stride=stride, pads=pads, pool=pool,
                                fpool=fpool, in_c=in_c, out_c=out_c, act=self._clamp(),
                                mult=mult, shift=shift)
        if fields["out_h"] < 1 or fields["out_w"] < 1:
            return None
        in_bytes = in_c * in_h * in_w * e
        out_bytes = out_c * fields["out_h"] * fields["out_w"] * e
        if engine is Engine.DEPTHWISE:
            w_bytes = out_c * k[0] * k[1] * self.we
        else:
            w_bytes = out_c * in_c * k[0] * k[1] * self.we
        if (in_bytes > arch.ibuf_bytes or out_bytes > arch.obuf_bytes
                or (engine is not Engine.POOL and w_bytes > arch.wbuf_bytes)):
            return None
        fields.update(ibuf_addr=rng.randrange(0, arch.ibuf_bytes - in_bytes + 1),
                      obuf_addr=rng.randrange(0, arch.obuf_bytes - out_bytes + 1))
        if engine is not Engine.POOL:
            fields.update(wbuf_addr=rng.randrange(0, arch.wbuf_bytes - w_bytes + 1),
                          pbuf_addr=rng.randrange(0, arch.pbuf_entries - out_c + 1))
        tag = engine.name + (f"+{pool.name}" if pool is not None else "")
        return encode_instruction(Opcode.COMPUTE, **fields), ("COMPUTE", tag)

    def add(self):
        rng, arch, e = self.rng, self.arch, self.e
        count = rng.randint(1, min(300, arch.ibuf_bytes // (2 * e)))
        n = count * e
        lo_m = 1 << arch.mult_bits
        return encode_instruction(
            Opcode.ADD, a_addr=rng.randrange(0, arch.ibuf_bytes - n + 1),
            b_addr=rng.randrange(0, arch.ibuf_bytes - n + 1),
            out_addr=rng.randrange(0, arch.obuf_bytes - n + 1), count=count,
            mult_a=rng.randrange(lo_m), mult_b=rng.randrange(lo_m),
            shift=rng.randint(0, max_shift(arch.shift_bits)),
            **dict(zip(("act_lo", "act_hi"), self._clamp(), strict=True))), ("ADD", "")

    def sync(self):
        mask = Unit(self.rng.randint(1, 7))
        return encode_instruction(Opcode.SYNC, mask=mask), ("SYNC", "")


def random_program(seed: int, arch: ArchConfig, *, ops: tuple = (6, 14),
                   tries: int = 400) -> RandomProgram:
    """A random legal program for ``arch`` (see the module's description) with between
    ``ops[0]`` and ``ops[1]`` instructions after the initial loads (not counting the
    SYNCs put in for hazards)."""
    rng = random.Random(seed)
    b = _Builder(rng, arch)
    # Every buffer byte (PBUF entry) defined first: whole-buffer loads in 64-byte rows.
    for buffer, size in ((Buffer.IBUF, arch.ibuf_bytes), (Buffer.WBUF, arch.wbuf_bytes)):
        row = 64 if size % 64 == 0 else 1
        assert b.try_add(*b.load(buffer, buf_addr=0, rows=size // row, row_bytes=row))
    done = 0
    while done < arch.pbuf_entries:
        n = min(8, arch.pbuf_entries - done)
        assert b.try_add(*b.load(Buffer.PBUF, buf_addr=done, rows=n))
        done += n
    want = rng.randint(*ops)
    draws = [b.compute] * 10 + [b.add] * 2 + [b.store] * 4 + [lambda: b.load(
        rng.choice([Buffer.IBUF, Buffer.IBUF, Buffer.WBUF, Buffer.PBUF]))] * 3 + [b.sync]
    added = 0
    for _ in range(tries):
        if added >= want:
            break
        drawn = rng.choice(draws)()
        if drawn is not None and b.try_add(*drawn):
            added += 1
    # Every output written reaches DDR at least in part.
    for _ in range(3):
        drawn = b.store()
        if drawn is not None:
            b.try_add(*drawn)
    program = b.program(b.words)
    expected, cycles = run_iss(arch, program, np.concatenate(
        [np.frombuffer(program, np.uint8), b.image[len(program):]]))
    image = b.image.copy()
    if len(program) > INPUT:
        raise ValueError(f"Program of {len(program)} bytes overlaps the data at {INPUT:#x}")
    image[:len(program)] = np.frombuffer(program, np.uint8)
    return RandomProgram(seed, arch, program, image, b.kinds + [("END", "")], expected, cycles)
