"""Rewritten convolutions: predicted cycles, MACs and verification for every kernel size
and stride, against the same layer on an engine that runs it directly (when one can).

For K in 3..11 and stride 1..4, one 16 -> 16 channel conv on a 56x56 input (pads K // 2):
the rewrite the compiler picks on a ``conv_k_max = 3`` arch and its predicted cycles; the
direct mapping on a ``conv_k_max = 7`` arch where K <= 7 and the stride is 1 or 2; and a
1-D sweep (the DPD CNN's layer shape). Every rewritten program of the 2-D sweep is also run
on the ISS against the golden runner (a smaller 3 -> 5 channel 13x14 layer, bit for bit).

Prints the table and writes ``benchmarks/results/kernels.json``.
Run: ``.venv/bin/python benchmarks/bench_kernels.py``.
"""

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from compiler.codegen.decompose import plan_conv
from compiler.errors import MappingError
from hw.arch import ArchConfig
from tests.compiler.test_decompose import bit_exact, conv_model

SMALL = ArchConfig(conv_k_max=3, max_width=64, max_height=64)
LARGE = SMALL.replace(conv_k_max=7)


def main():
    rows = []
    start = time.perf_counter()
    for k in range(3, 12):
        for s in range(1, 5):
            pads = (k // 2,) * 4
            plan = plan_conv("c", 16, 56, 56, 16, (k, k), (s, s), pads, (1, 1), SMALL)
            try:
                direct = plan_conv("c", 16, 56, 56, 16, (k, k), (s, s), pads, (1, 1), LARGE)
                direct = direct.cycles if direct.method == "direct" else None
            except MappingError:
                direct = None
            t = time.perf_counter()
            program = bit_exact(conv_model(k, s, seed=k * 10 + s))
            rows.append({"k": k, "stride": s, "rewrite": plan.describe(),
                         "cycles_kmax3": plan.cycles, "direct_cycles_kmax7": direct,
                         "macs_56x56": 16 * 16 * k * k * plan.conv_hw[0] * plan.conv_hw[1],
                         "verified_instructions": len(program.instructions),
                         "verify_seconds": round(time.perf_counter() - t, 3)})
    one_d = []
    for k in (3, 5, 7, 9, 11):
        plan = plan_conv("c", 8, 1, 256, 8, (1, k), (1, 1), (0, k // 2, 0, k // 2), (1, 1),
                         SMALL)
        direct = plan_conv("c", 8, 1, 256, 8, (1, k), (1, 1), (0, k // 2, 0, k // 2), (1, 1),
                           LARGE.replace(conv_k_max=max(3, min(7, k | 1))))
        one_d.append({"k": k, "rewrite": plan.describe(), "cycles_kmax3": plan.cycles,
                      "best_on_kmax_k": direct.cycles, "method_on_kmax_k": direct.method})
    print(f"{'K':>3} {'s':>2}  {'rewrite on conv_k_max=3':48s} {'cycles':>9} {'direct k7':>10}")
    for r in rows:
        d = r["direct_cycles_kmax7"]
        print(f"{r['k']:3d} {r['stride']:2d}  {r['rewrite']:48s} {r['cycles_kmax3']:9,d} "
              f"{d if d is not None else '-':>10}")
    print("\n1-D, 8 -> 8 channels, length 256:")
    for r in one_d:
        print(f"  1x{r['k']:<2d} {r['rewrite']:42s} {r['cycles_kmax3']:7,d} cycles "
              f"(on conv_k_max={min(7, r['k'] | 1) if r['k'] > 3 else 3}: "
              f"{r['method_on_kmax_k']} {r['best_on_kmax_k']:,})")
    print(f"\n{len(rows)} rewritten layers verified ISS == golden in "
          f"{time.perf_counter() - start:.1f} s")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "kernels.json").write_text(json.dumps({"layers": rows, "one_d": one_d}, indent=2))
    print(f"wrote {out / 'kernels.json'}")


if __name__ == "__main__":
    main()
