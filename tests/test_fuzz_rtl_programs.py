# amaranth: UnusedElaboratable=no
"""Random legal instruction programs (``tests/fuzz/isa_programs.py``: every opcode and
engine, random tile shapes, strides, pads, clamps, addresses and 2-D transfers) on the
SEML core under Verilator with random AXI back-pressure, against the ISS: the whole DDR
image after each run must be identical, bit for bit. All programs run in one simulation
of one build (the core test arch's)."""

import functools

import numpy as np
import pytest

from hw.isa import Opcode
from tests.fuzz.isa_programs import IMAGE_BYTES, random_program
from tests.hw.test_seml_core import ARCH

#: Random programs per ``pytest`` run (``benchmarks/fuzz_rtl.py`` runs more).
PROGRAMS = 100


@functools.cache
def _programs():
    return tuple(random_program(seed, ARCH) for seed in range(PROGRAMS))


def check_programs(arch, programs, *, build_name, pause, seed):
    """Run ``programs`` on the RTL; returns ``(mismatches, cycles)``: a mismatch is
    ``(seed, what)`` for a program that did not finish with NONE or left another DDR
    image than the ISS. Every other program runs with ``pause`` (random AXI back-pressure
    on every channel), the rest without: ``cycles`` has ``(RTL cycles, predicted
    cycles)`` of those."""
    from hw.isa import ErrorCode
    from tests.fuzz.rtl import run_cases

    results = run_cases(arch, [{"image": p.image, "outputs": [(0, IMAGE_BYTES)],
                                "max_cycles": 20 * p.cycles + 20_000,
                                "pause": pause if i % 2 else 0.0}
                               for i, p in enumerate(programs)],
                        build_name=build_name, seed=seed)
    bad, cycles = [], []
    for i, (p, r) in enumerate(zip(programs, results, strict=True)):
        if not r["done"]:
            bad.append((p.seed, "no done within the cycle bound"))
            continue
        if r["error_code"] != ErrorCode.NONE.value:
            code = ErrorCode(r["error_code"]).name
            bad.append((p.seed, f"error {code} at instruction {r['error_info']}"))
            continue
        got = np.frombuffer(bytes.fromhex(r["outputs"][0]), np.uint8)
        diff = np.flatnonzero(got != p.expected)
        if diff.size:
            first = diff[:4].tolist()
            bad.append((p.seed, f"{diff.size} DDR bytes differ from the ISS's, first at {first}"))
        if not i % 2:
            cycles.append((r["cycles"], p.cycles))
    return bad, cycles


def test_random_programs_are_legal_and_cover_the_isa():
    """The generator's programs run on the ISS and use every opcode and engine."""
    kinds = set()
    for p in _programs():
        kinds.update(p.instructions)
        assert (p.expected[:len(p.program)] == p.image[:len(p.program)]).all()
    opcodes = {op for op, _ in kinds}
    assert opcodes == {"LOAD", "STORE", "COMPUTE", "ADD", "SYNC", "END"}
    computes = {tag for op, tag in kinds if op == "COMPUTE"}
    assert {"CONV", "CONV+MAX", "DEPTHWISE", "POINTWISE", "POOL+MAX", "POOL+AVG"} <= computes
    assert {tag for op, tag in kinds if op == "LOAD"} == {"IBUF", "WBUF", "PBUF"}


@pytest.mark.rtl
def test_random_programs_rtl_equals_iss():
    """PROGRAMS random programs in one simulation, half of them with 20 % AXI pauses on
    every channel."""
    bad, cycles = check_programs(ARCH, list(_programs()), build_name="seml-core-small", pause=0.2,
                                 seed=1)
    assert not bad, f"{len(bad)} of {PROGRAMS} programs differ: {bad[:5]}"
    ratios = sorted(rtl / model for rtl, model in cycles)
    print(f"RTL == ISS on {PROGRAMS} random programs, {sum(r for r, _ in cycles)} cycles; "
          f"RTL / predicted cycles: min {ratios[0]:.3f} median {ratios[len(ratios) // 2]:.3f} "
          f"max {ratios[-1]:.3f} (without pauses)")


def _pointwise_programs(count):
    """Random programs whose COMPUTEs are POINTWISE over several input-channel tiles of
    one pixel (lane 0 reads every pixel lane's element) or of planes that fit a fetcher
    run (the next tile's planes prefetched), among the generator's other instructions."""
    from hw.engine_kinds import pointwise_jumps, pointwise_packed
    from hw.isa import decode_instruction, encode_instruction
    from tests.fuzz import isa_programs

    class Builder(isa_programs._Builder):
        def compute(self):
            drawn = super().compute()
            if drawn is None or drawn[1] != ("COMPUTE", "POINTWISE"):
                return drawn
            instr = decode_instruction(drawn[0])
            f = dict(instr.fields)
            side = self.rng.choice([(1, 1), (1, 1), (3, 3), (2, 4), (4, 4)])
            f.update(in_h=side[0], in_w=side[1], out_h=side[0], out_w=side[1],
                     stride_h=1, stride_w=1,
                     in_c=self.rng.randint(self.arch.pw_pi + 1, 4 * self.arch.pw_pi))
            e = self.e
            in_bytes = f["in_c"] * side[0] * side[1] * e
            out_bytes = f["out_c"] * side[0] * side[1] * e
            w_bytes = f["out_c"] * f["in_c"] * self.we
            if (in_bytes > self.arch.ibuf_bytes // 2 or out_bytes > self.arch.obuf_bytes // 2
                    or w_bytes > self.arch.wbuf_bytes // 2):
                return drawn
            f.update(ibuf_addr=self.rng.randrange(0, self.arch.ibuf_bytes - in_bytes + 1),
                     obuf_addr=self.rng.randrange(0, self.arch.obuf_bytes - out_bytes + 1),
                     wbuf_addr=self.rng.randrange(0, self.arch.wbuf_bytes - w_bytes + 1))
            word = encode_instruction(Opcode.COMPUTE, **f)
            i = decode_instruction(word)
            assert pointwise_packed(i, self.arch) or pointwise_jumps(i, self.arch) or \
                side != (1, 1)
            return word, ("COMPUTE", "POINTWISE")

    real = isa_programs._Builder
    isa_programs._Builder = Builder
    try:
        return [isa_programs.random_program(1000 + seed, ARCH) for seed in range(count)]
    finally:
        isa_programs._Builder = real


@pytest.mark.rtl
def test_pointwise_tile_prefetch_rtl_equals_iss():
    """POINTWISE jobs whose pixel lanes go on across input-channel tiles without refills
    (``hw.engine_kinds.pointwise_packed`` / ``pointwise_jumps``) on the core, with AXI
    pauses, against the ISS; their cycles as the model predicts."""
    from hw.engine_kinds import pointwise_jumps, pointwise_packed
    from hw.isa import HEADER_BYTES, INSTR_BYTES, decode_instruction

    programs = _pointwise_programs(12)
    modes = {"packed": 0, "jumps": 0}
    for p in programs:
        for off in range(HEADER_BYTES, len(p.program), INSTR_BYTES):
            i = decode_instruction(p.program[off:off + INSTR_BYTES])
            if i.opcode is Opcode.COMPUTE and -(-i.in_c // ARCH.pw_pi) > 1:
                modes["packed"] += pointwise_packed(i, ARCH)
                modes["jumps"] += pointwise_jumps(i, ARCH)
    assert min(modes.values()) >= 3, modes
    bad, cycles = check_programs(ARCH, programs, build_name="seml-core-small", pause=0.2,
                                 seed=3)
    assert not bad, bad
    assert all(abs(rtl / model - 1) <= 0.05 for rtl, model in cycles), cycles


@pytest.mark.rtl
def test_private_fetchers_same_results_and_cycles():
    """The core with a pixel and a weight fetcher per engine unit (``private_fetchers``)
    runs 40 of the random programs (and the POINTWISE tile-prefetch ones) bit for bit as
    the ISS, half with AXI pauses, and without pauses in exactly as many cycles as the
    core whose units share one fetcher set."""
    from tests.fuzz.rtl import run_cases

    programs = list(_programs())[:40] + _pointwise_programs(6)
    private = ARCH.replace(private_fetchers=True)
    assert private.config_hash == ARCH.config_hash
    bad, cycles = check_programs(private, programs, build_name="seml-core-private",
                                 pause=0.2, seed=2)
    assert not bad, f"{len(bad)} of {len(programs)} programs differ: {bad[:5]}"
    steady = programs[::2]
    shared = run_cases(ARCH, [{"image": p.image, "outputs": [], "max_cycles": 20 * p.cycles
                               + 20_000} for p in steady], build_name="seml-core-small")
    differ = [(p.seed, got, r["cycles"]) for p, (got, _), r in zip(steady, cycles, shared,
                                                                    strict=True)
              if got != r["cycles"]]
    assert not differ, f"cycles (seed, private, shared) differ: {differ[:5]}"
