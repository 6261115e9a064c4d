# amaranth: UnusedElaboratable=no
"""Corrupted programs (bit flips, truncations, header and section edits of a real compiled
program.bin and weights.bin): the ISS ends in a defined error code or a clean
ProgramFormatError, never a crash, a hang or silent wrong output (oracle in
``tests/fuzz/programs.py``); the RTL ends with done and a defined error code, or with the
ISS's output, within a cycle bound."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.isa import INSTR_BYTES, ErrorCode
from tests.fuzz import programs
from tests.fuzz.programs import base_program, classify, corrupt, run_iss
from tests.hw.test_seml_core import ARCH

#: Corruptions the ISS runs per ``pytest`` (hypothesis examples, derandomized).
ISS_CASES = 200
#: Corruptions the RTL runs (one simulation).
RTL_CASES = 20


@settings(max_examples=ISS_CASES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(sorted(programs.MUTATORS)), rng=st.randoms(use_true_random=False))
def test_corrupted_programs_on_the_iss(kind, rng):
    base = base_program(ARCH)
    c = corrupt(rng, base, kind)
    outcome, detail = classify(base, c, run_iss(base, c))
    assert outcome != "failed", f"{c.kind} ({c.note}): {detail}"


def test_plain_corruptions_of_the_header_and_instructions_are_detected():
    """Every plain corruption of program.bin that changes it is caught before any
    instruction runs (by the header checks or the CRC), with the code of the first check
    that fails."""
    base = base_program(ARCH)
    rng = random.Random(5)
    seen = set()
    for _ in range(300):
        c = corrupt(rng, base, rng.choice(["bit_flips", "header_flips", "random_bytes",
                                           "truncate", "header_field", "weight_flips"]))
        if (c.program, c.weights) == (base.program, base.weights):
            continue
        out = run_iss(base, c)
        assert out.outputs is None and out.code is not ErrorCode.NONE, (c.kind, c.note)
        seen.add(out.code)
    assert {ErrorCode.BAD_MAGIC, ErrorCode.BAD_VERSION, ErrorCode.ARCH_MISMATCH,
            ErrorCode.BAD_CRC} <= seen


def rtl_cases(count, seed=0):
    """``count`` corruptions the RTL can see, with the ISS's outcome of each."""
    base = base_program(ARCH)
    rng = random.Random(seed)
    kinds = sorted(programs.RTL_MUTATORS)
    cases = []
    for i in range(count):
        c = programs.RTL_MUTATORS[kinds[i % len(kinds)]](rng, base)
        cases.append((c, run_iss(base, c)))
    return base, cases


def check_rtl_results(base, cases, results, max_cycles):
    """The RTL oracle, per case: done within ``max_cycles``; then

    * the ISS completed: the core reports NONE and the same outputs;
    * the ISS refused with a check the hardware cannot make
      (:data:`programs.ISS_ONLY_CHECKS`): any defined code, or NONE;
    * the ISS refused otherwise: a defined, non-NONE code (not necessarily the same).

    A plain corruption the core runs to the end must leave the reference outputs.
    Returns how many error codes equal the ISS's."""
    agree = 0
    for (c, iss), r in zip(cases, results, strict=True):
        what = f"{c.kind} ({c.note})"
        assert r["done"] and not r["timeout"], f"{what}: no done within {max_cycles} cycles"
        code = ErrorCode(r["error_code"])
        if iss.outputs is not None:
            assert code is ErrorCode.NONE, f"{what}: the core stopped with {code.name}, the " \
                                           f"ISS ran the program"
        elif not any(check in iss.message for check in programs.ISS_ONLY_CHECKS):
            assert code is not ErrorCode.NONE, f"{what}: the core ran a program the ISS " \
                                               f"refused: {iss.message}"
        if code is ErrorCode.NONE:
            got = {name: bytes.fromhex(h) for (name, _, _), h in zip(base.outputs, r["outputs"])}
            if not c.resealed:
                assert got == base.reference, f"{what}: silent wrong output on the RTL"
            elif iss.outputs is not None:
                assert got == iss.outputs, f"{what}: RTL outputs differ from the ISS's"
        agree += code is iss.code
    return agree


def regression_cases(base):
    """Corruptions that once failed on the RTL, run before the random ones: an instruction
    count with bit 31 flipped (the CRC pre-scan read 2**31 words: no done) and a resealed
    count larger than the image."""
    count = len(base.program) // INSTR_BYTES - 1
    out = []
    for value, resealed in ((count | 1 << 31, False), (0x10000, True)):
        data = base.program[:16] + value.to_bytes(4, "little") + base.program[20:]
        data = programs._reseal(data) if resealed else data
        c = programs.Corruption("header_field", data, base.weights, resealed,
                                f"instr_count {count:#x} -> {value:#x}")
        out.append((c, run_iss(base, c)))
    return out


@pytest.mark.rtl
def test_corrupted_programs_on_the_rtl():
    """RTL_CASES random corruptions plus the regression cases, in one simulation; each
    must end with done within ten times the uncorrupted run's cycles (plus 10,000)."""
    from tests.fuzz.rtl import run_cases

    base, cases = rtl_cases(RTL_CASES)
    cases = regression_cases(base) + cases
    max_cycles = 10 * base.cycles + 10_000
    results = run_cases(ARCH, [{"image": programs.image_of(base, c),
                                "outputs": [(off, n) for _, off, n in base.outputs],
                                "max_cycles": max_cycles} for c, _ in cases],
                        build_name="seml-core-small")
    agree = check_rtl_results(base, cases, results, max_cycles)
    assert [r["error_code"] for r in results[:2]] == [ErrorCode.BAD_CRC.value] * 2
    print(f"RTL: {len(cases)} corrupted programs, error code equal to the ISS's in {agree}")


def test_corrupted_outputs_through_the_command_line(tmp_path, capsys):
    """``convforge simulate`` on a compile output whose program.bin or weights.bin is
    corrupted prints one ``convforge simulate: error:`` line and exits 2."""
    import shutil

    from compiler.cli import main
    from compiler.compile import compile_model

    good = tmp_path / "good"
    compile_model(programs.tiny_model(), ARCH, good)
    base = base_program(ARCH)
    rng = random.Random(3)
    for i in range(12):
        c = corrupt(rng, base, ["bit_flips", "truncate", "header_field",
                                "weight_flips"][i % 4])
        out = tmp_path / f"bad{i}"
        shutil.copytree(good, out)
        (out / "program.bin").write_bytes(c.program)
        (out / "weights.bin").write_bytes(c.weights)
        capsys.readouterr()
        code = main(["simulate", str(out)])
        err = capsys.readouterr().err
        if (c.program, c.weights) == (base.program, base.weights):
            assert code == 0
            continue
        assert code == 2, (c.kind, c.note)
        assert err.startswith("convforge simulate: error: ") and err.count("\n") == 1, err
