"""Fuzzing at scale: random graphs through the compiler and the ISS, corrupted programs on
the ISS (and optionally the RTL).

Usage::

    python benchmarks/fuzz.py [--graphs 1000] [--programs 10000] [--rtl 0] [--seed 0]

Graph ``i`` is ``tests.fuzz.graphs.random_case(seed * 1_000_000 + i)``; corrupted program
``i`` is drawn with ``random.Random(seed * 1_000_000 + i)`` from one of two real compile
outputs (``tests.fuzz.programs``). Prints the counts -- graphs: legal / refused cleanly /
failed; programs: detected / same output / changed (resealed edits only) / failed --
with the refusal and error-code breakdowns, and writes them to
``benchmarks/results/fuzz.json``. Exits 1 if anything failed (each failure is listed
with the seed that reproduces it).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hw.arch import ArchConfig
from tests.fuzz.graphs import random_case, run_case
from tests.fuzz.programs import base_program, classify, corrupt, run_iss

#: The two compile outputs corrupted: the SEML core test arch, and one with 12-bit
#: activations, a 32-bit bus and line buffers narrower than the input (column tiles).
PROGRAM_ARCHS = (
    ArchConfig(name="core-test", ibuf_bytes=4096, obuf_bytes=4096, wbuf_bytes=2048,
               pbuf_entries=64, max_width=16, max_height=16, conv_pi=2, conv_po=2,
               pw_pi=4, pw_po=4, dw_channels=4, conv_k_max=3),
    ArchConfig(name="fuzz-narrow", act_bits=12, acc_bits=40, ibuf_bytes=2048,
               obuf_bytes=1024, wbuf_bytes=1024, pbuf_entries=16, max_width=6,
               max_height=6, conv_pi=3, conv_po=2, pw_pi=2, pw_po=4, dw_channels=2,
               axi_data_bits=32),
)


def fuzz_graphs(count: int, seed: int) -> dict:
    counts = collections.Counter()
    refusals = collections.Counter()
    failures = []
    instructions = 0
    start = time.perf_counter()
    for i in range(count):
        case_seed = seed * 1_000_000 + i
        outcome = run_case(random_case(case_seed))
        counts[outcome.kind] += 1
        if outcome.kind == "refused":
            refusals[outcome.detail.split(":", 1)[0]] += 1
        elif outcome.kind == "legal":
            instructions += int(outcome.detail.split()[0])
        else:
            failures.append({"seed": case_seed, "detail": outcome.detail[-2000:]})
    return {"count": count, "legal": counts["legal"], "refused": counts["refused"],
            "failed": counts["failed"], "refusals_by_error": dict(refusals.most_common()),
            "instructions_compiled": instructions, "failures": failures,
            "wall_s": round(time.perf_counter() - start, 2)}


def fuzz_programs(count: int, seed: int) -> dict:
    bases = [base_program(arch) for arch in PROGRAM_ARCHS]
    counts = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    codes = collections.Counter()
    failures = []
    slowest = 0.0
    start = time.perf_counter()
    for i in range(count):
        case_seed = seed * 1_000_000 + i
        rng = random.Random(case_seed)
        base = bases[rng.randrange(len(bases))]
        c = corrupt(rng, base)
        out = run_iss(base, c)
        slowest = max(slowest, out.seconds)
        outcome, detail = classify(base, c, out)
        counts[outcome] += 1
        by_kind[c.kind][outcome] += 1
        if outcome == "detected":
            codes[out.code.name] += 1
        elif outcome == "failed":
            failures.append({"seed": case_seed, "kind": c.kind, "note": c.note,
                             "detail": detail[-2000:]})
    return {"count": count, "detected": counts["detected"], "same": counts["same"],
            "changed": counts["changed"], "failed": counts["failed"],
            "by_mutator": {k: dict(v) for k, v in sorted(by_kind.items())},
            "error_codes": dict(codes.most_common()), "slowest_run_s": round(slowest, 3),
            "program_bytes": [len(b.program) for b in bases],
            "failures": failures, "wall_s": round(time.perf_counter() - start, 2)}


def fuzz_rtl(count: int, seed: int) -> dict:
    from tests.fuzz.programs import image_of
    from tests.fuzz.rtl import run_cases
    from tests.test_fuzz_programs import check_rtl_results, rtl_cases

    start = time.perf_counter()
    base, cases = rtl_cases(count, seed)
    max_cycles = 10 * base.cycles + 10_000
    results = run_cases(base.arch, [{"image": image_of(base, c),
                                     "outputs": [(off, n) for _, off, n in base.outputs],
                                     "max_cycles": max_cycles} for c, _ in cases],
                        build_name="seml-core-small", timeout_s=3600)
    failures = []
    agree = 0
    for (c, iss), r in zip(cases, results, strict=True):
        try:
            agree += check_rtl_results(base, [(c, iss)], [r], max_cycles)
        except AssertionError as e:
            failures.append({"kind": c.kind, "note": c.note, "detail": str(e)})
    codes = collections.Counter(r.get("error_code", "timeout") for r in results)
    return {"count": count, "failed": len(failures), "error_code_equal_to_iss": agree,
            "error_codes": {str(k): v for k, v in codes.items()}, "max_cycles": max_cycles,
            "failures": failures, "wall_s": round(time.perf_counter() - start, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=1000, help="random graphs (1000)")
    parser.add_argument("--programs", type=int, default=10_000,
                        help="corrupted programs on the ISS (10000)")
    parser.add_argument("--rtl", type=int, default=0,
                        help="corrupted programs on the RTL, one Verilator run (0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    report = {"seed": args.seed, "machine": platform.machine(),
              "python": platform.python_version()}
    g = report["graphs"] = fuzz_graphs(args.graphs, args.seed)
    print(f"graphs:   {g['count']:6d}  legal {g['legal']:6d}  refused cleanly "
          f"{g['refused']:6d}  failed {g['failed']:3d}  ({g['wall_s']:.1f} s)")
    for name, n in g["refusals_by_error"].items():
        print(f"          refused by {name}: {n}")
    p = report["programs"] = fuzz_programs(args.programs, args.seed)
    print(f"programs: {p['count']:6d}  detected {p['detected']:6d}  same output "
          f"{p['same']:5d}  changed (resealed) {p['changed']:5d}  failed {p['failed']:3d}  "
          f"({p['wall_s']:.1f} s, slowest run {p['slowest_run_s']:.3f} s)")
    for kind, c in p["by_mutator"].items():
        print(f"          {kind:18s} {dict(c)}")
    print(f"          error codes: {p['error_codes']}")
    failed = g["failed"] + p["failed"]
    if args.rtl:
        r = report["rtl"] = fuzz_rtl(args.rtl, args.seed)
        print(f"rtl:      {r['count']:6d}  failed {r['failed']:3d}  error code equal to the "
              f"ISS's {r['error_code_equal_to_iss']}  codes {r['error_codes']}  "
              f"({r['wall_s']:.1f} s)")
        failed += r["failed"]
    report["wall_s"] = round(time.perf_counter() - start, 2)
    print(f"total wall time {report['wall_s']:.1f} s")
    for section in ("graphs", "programs", "rtl"):
        for f in report.get(section, {}).get("failures", [])[:10]:
            print(f"FAILED {section}: {json.dumps(f)[:1500]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
