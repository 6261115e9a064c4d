"""Time the golden ops on MobileNetV2-224-sized layers.

Prints a table and writes ``benchmarks/results/golden.json``. Each figure is the best of
a few runs on random int8 data (seeded), so it measures the op, not the data.

Usage: ``python benchmarks/bench_golden.py [--repeat N] [--out PATH]``
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from sim import golden

BUDGET_S = 1.0  # every single layer must run well under this


def _rand(rng, shape, bits=8):
    lo, hi = golden.qrange(bits)
    return rng.integers(lo, hi + 1, size=shape)


def _layers(rng):
    """(name, op, MACs or element ops, callable) for each benchmarked layer."""
    layers = []

    def conv(name, c, h, w, m, k, stride, groups):
        x = _rand(rng, (1, c, h, w))
        wt = _rand(rng, (m, c // groups, k, k))
        bias = _rand(rng, m, 32) >> 8
        p = k // 2
        oh, ow = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
        macs = oh * ow * m * (c // groups) * k * k
        kind = "depthwise" if groups == c else ("pointwise" if k == 1 else "conv")
        layers.append((name, f"conv2d ({kind})", macs,
                       lambda: golden.conv2d(x, wt, bias, stride=stride, pads=(p, p, p, p),
                                             groups=groups)))

    conv("conv1 224x224 3->32 3x3 s2", 3, 224, 224, 32, 3, 2, 1)
    conv("dw 112x112x32 3x3 s1", 32, 112, 112, 32, 3, 1, 32)
    conv("conv 112x112 32->32 3x3 s1", 32, 112, 112, 32, 3, 1, 1)
    conv("dw 112x112x96 3x3 s2", 96, 112, 112, 96, 3, 2, 96)
    conv("pw 56x56 24->144", 24, 56, 56, 144, 1, 1, 1)
    conv("dw 56x56x144 3x3 s1", 144, 56, 56, 144, 3, 1, 144)
    conv("pw 28x28 32->192", 32, 28, 28, 192, 1, 1, 1)
    conv("dw 28x28x192 3x3 s1", 192, 28, 28, 192, 3, 1, 192)
    conv("pw 28x28 192->32", 192, 28, 28, 32, 1, 1, 1)
    conv("pw 7x7 160->960", 160, 7, 7, 960, 1, 1, 1)
    conv("dw 7x7x960 3x3 s1", 960, 7, 7, 960, 3, 1, 960)
    conv("pw 7x7 960->320", 960, 7, 7, 320, 1, 1, 1)
    conv("pw 7x7 320->1280", 320, 7, 7, 1280, 1, 1, 1)

    x1d = _rand(rng, (1, 64, 4096))
    w1d = _rand(rng, (64, 64, 7))
    layers.append(("conv1d L=4096 64->64 k7", "conv1d", 4096 * 64 * 64 * 7,
                   lambda: golden.conv1d(x1d, w1d, pads=(3, 3))))

    xf = _rand(rng, (1, 1280))
    wf = _rand(rng, (1000, 1280))
    bf = _rand(rng, 1000, 32) >> 8
    layers.append(("fc 1280->1000", "fully_connected", 1280 * 1000,
                   lambda: golden.fully_connected(xf, wf, bf)))

    acc = rng.integers(-2 ** 20, 2 ** 20, size=(1, 144, 56, 56))
    mult = rng.integers(2 ** 15, 2 ** 16, size=144)
    shift = rng.integers(16, 24, size=144)
    layers.append(("requant 56x56x144 per-channel", "requantize", acc.size,
                   lambda: golden.requantize(acc, mult, shift, 0, 127)))
    layers.append(("requant 56x56x144 per-layer", "requantize", acc.size,
                   lambda: golden.requantize(acc, 23170, 20, -128, 127)))

    xg = _rand(rng, (1, 1280, 7, 7))
    layers.append(("gap 7x7x1280", "global_avg_pool", xg.size,
                   lambda: golden.global_avg_pool(xg, 1337, 16, -128, 127)))

    xp = _rand(rng, (1, 64, 112, 112))
    layers.append(("maxpool 112x112x64 3x3 s2", "max_pool2d", 56 * 56 * 64 * 9,
                   lambda: golden.max_pool2d(xp, 3, 2, (1, 1, 1, 1))))
    layers.append(("avgpool 112x112x64 3x3 s2", "avg_pool2d", 56 * 56 * 64 * 9,
                   lambda: golden.avg_pool2d(xp, 3, 2, 7282, 16, -128, 127, (1, 1, 1, 1))))

    a = _rand(rng, (1, 32, 28, 28))
    b = _rand(rng, (1, 32, 28, 28))
    layers.append(("add 28x28x32", "add", a.size,
                   lambda: golden.add(a, b, 40000, 27000, 16, -128, 127)))
    big_a = _rand(rng, (1, 24, 56, 56))
    big_b = _rand(rng, (1, 24, 56, 56))
    layers.append(("add 56x56x24", "add", big_a.size,
                   lambda: golden.add(big_a, big_b, 40000, 27000, 16, -128, 127)))
    layers.append(("concat 28x28 32+32", "concat", 2 * a.size,
                   lambda: golden.concat([a, b], [40000, 27000], 16, -128, 127)))
    return layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per layer (best is kept)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "golden.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(2024)
    rows = []
    start = time.perf_counter()
    for name, op, work, fn in _layers(rng):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append({"layer": name, "op": op, "output_shape": list(out.shape), "work": work,
                     "best_s": best, "mean_s": sum(times) / len(times),
                     "gops": work / best / 1e9, "within_budget": best < BUDGET_S})
    total = time.perf_counter() - start

    print(f"{'layer':34s} {'op':22s} {'output':>20s} {'ms':>9s} {'Gop/s':>7s}")
    for r in rows:
        print(f"{r['layer']:34s} {r['op']:22s} {tuple(r['output_shape'])!s:>20s} "
              f"{r['best_s'] * 1e3:9.2f} {r['gops']:7.2f}")
    slowest = max(rows, key=lambda r: r["best_s"])
    print(f"slowest: {slowest['layer']} {slowest['best_s'] * 1e3:.1f} ms "
          f"(budget {BUDGET_S * 1e3:.0f} ms); total wall time {total:.1f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "golden",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": args.repeat,
        "budget_s": BUDGET_S,
        "total_s": total,
        "layers": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["within_budget"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
