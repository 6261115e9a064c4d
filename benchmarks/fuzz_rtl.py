"""Random legal programs on the SEML core under Verilator against the ISS, at scale.

Usage::

    python benchmarks/fuzz_rtl.py [--programs 1000] [--chunk 100] [--seed 0]
                                  [--archs core-test,fuzz-narrow,core-private] [--pause 0.2]

Program ``i`` is ``tests.fuzz.isa_programs.random_program(seed * 1_000_000 + i, arch)``
for the archs in turn (the SEML core test arch, one with 12-bit activations, a
32-bit bus and 6x6 line buffers, and the test arch with a fetcher pair per engine unit,
``private_fetchers``); each arch's programs run ``--chunk`` per simulation of
one Verilator build, every other one with ``--pause`` random AXI back-pressure. Each run
must end with done and ``NONE`` and leave the ISS's DDR image, bit for bit. Prints the
counts, the instruction mix and the RTL / predicted cycle ratios (runs without pauses),
writes ``benchmarks/results/fuzz_rtl.json`` and exits 1 on any mismatch (listed with the
seed that reproduces it).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fuzz.isa_programs import NARROW_ARCH, random_program
from tests.hw.test_seml_core import ARCH
from tests.test_fuzz_rtl_programs import check_programs

ARCHS = {
    "core-test": ARCH,
    "fuzz-narrow": NARROW_ARCH,
    "core-private": ARCH.replace(name="core-private", private_fetchers=True),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fuzz_rtl.json")
    args = parser.parse_args(argv)
    archs = [ARCHS[a] for a in args.archs.split(",") if a]
    start = time.perf_counter()
    mix = collections.Counter()
    failures, ratios = [], []
    cycles = 0
    per_arch = {a.name: 0 for a in archs}
    done = 0
    chunk_no = 0
    while done < args.programs:
        arch = archs[chunk_no % len(archs)]
        n = min(args.chunk, args.programs - done)
        t = time.perf_counter()
        programs = [random_program(args.seed * 1_000_000 + done + i, arch) for i in range(n)]
        for p in programs:
            mix.update(f"{op}:{tag}" if tag else op for op, tag in p.instructions)
        # the test arch's build is the one the tests use
        build = "seml-core-small" if arch is ARCH else f"fuzz-rtl-{arch.name}"
        bad, got = check_programs(arch, programs, build_name=build,
                                  pause=args.pause, seed=args.seed + chunk_no)
        failures += [{"arch": arch.name, "seed": s, "what": w} for s, w in bad]
        ratios += [rtl / model for rtl, model in got]
        cycles += sum(rtl for rtl, _ in got)
        per_arch[arch.name] += n
        done += n
        chunk_no += 1
        print(f"{done:5d} programs ({arch.name}: {n} in {time.perf_counter() - t:.0f} s), "
              f"{len(failures)} mismatches", flush=True)
    ratios.sort()
    wall = time.perf_counter() - start
    stats = {"min": round(ratios[0], 4), "median": round(ratios[len(ratios) // 2], 4),
             "max": round(ratios[-1], 4)} if ratios else {}
    print(f"\n{done} random programs, {len(failures)} differ from the ISS; {wall:.0f} s")
    print(f"RTL / predicted cycles (no pauses): {stats}")
    print("instruction mix:", dict(sorted(mix.items())))
    for f in failures[:20]:
        print(f"  MISMATCH {f}")
    out = {"benchmark": "fuzz_rtl", "python": platform.python_version(), "seed": args.seed,
           "programs": done, "per_arch": per_arch, "pause": args.pause,
           "mismatches": len(failures), "failures": failures, "wall_seconds": round(wall, 1),
           "cycle_ratio": stats, "instruction_mix": dict(sorted(mix.items()))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
