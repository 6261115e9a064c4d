# amaranth: UnusedElaboratable=no
"""Random legal instruction programs (``tests/fuzz/isa_programs.py``: every opcode and
engine, random tile shapes, strides, pads, clamps, addresses and 2-D transfers) on the
SEML core under Verilator with random AXI back-pressure, against the ISS: the whole DDR
image after each run must be identical, bit for bit. All programs run in one simulation
of one build (the core test arch's)."""

import functools

import numpy as np
import pytest

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
