"""Flip-flops and LUTs of the engine units' lane fetchers: one set per engine unit (the
core with ``private_fetchers``) against the one shared set (the ``ibuf_fetch`` /
``wbuf_fetch`` of :class:`hw.seml.core.SemlCore` without it), for a board's default arch.

For each arch it prints the structural model (:func:`boards.resources.lane_fetchers` of
the arch with and without ``private_fetchers``) and, with ``--synth``, Yosys
``synth_xilinx`` (``-family xc7``, out of context, cached) of every fetcher, built with
:class:`hw.seml.buffers.LaneFetcher` as each configuration instantiates it. Writes
``benchmarks/results/fetchers.json``.

Usage: ``python benchmarks/bench_fetchers.py [--boards PYNQ-Z2 ZCU102 ...] [--synth]``
(synthesis of the ZCU102 default's fetchers takes a long time; small boards take
minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def fetcher_sets(arch):
    """``{"per-unit": [...], "shared": [...]}``: ``(name, LaneFetcher keywords)`` of each
    lane fetcher of the two configurations, as the core builds them."""
    from hw.isa import Engine
    from hw.seml.core import buffer_plan, shared_fetcher_options
    from hw.seml.engine_units import EngineUnit

    units = {kind: EngineUnit(arch, kind)
             for kind in (Engine.CONV, Engine.DEPTHWISE, Engine.POINTWISE)}
    per_unit = []
    for kind, unit in units.items():
        unit._MustUse__silence = True
        options = unit.fetcher_options()
        per_unit += [(f"{kind.name.lower()}.pixels", options["ibuf"]),
                     (f"{kind.name.lower()}.weights", options["wbuf"])]
    shared = shared_fetcher_options(arch, buffer_plan(arch),
                                    units[Engine.POINTWISE].pixel_pack)
    return {"per-unit": per_unit,
            "shared": [("ibuf_fetch", shared["ibuf"]), ("wbuf_fetch", shared["wbuf"])]}


def model_figures(arch):
    """The structural model's FF and LUT of the two configurations."""
    from boards.resources import lane_fetchers

    out = {}
    for config, private in (("shared", False), ("per-unit", True)):
        got = lane_fetchers(arch.replace(private_fetchers=private))
        got.pop("add")
        out[config] = {k: sum(row[k] for row in got.values()) for k in ("ff", "lut")}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", default=["PYNQ-Z2", "Ultra96-V2", "ZCU102"])
    parser.add_argument("--synth", action="store_true", help="also synthesize (Yosys xc7)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fetchers.json"))
    args = parser.parse_args(argv)

    from boards.database import get_board
    from boards.synth import synthesize
    from hw.seml.buffers import LaneFetcher

    results = {}
    for board in args.boards:
        arch = get_board(board).default_arch()
        row = {"arch": arch.to_dict(), "model": model_figures(arch)}
        if args.synth:
            synth = {}
            for config, fetchers in fetcher_sets(arch).items():
                total = {"ff": 0, "lut": 0}
                for name, kw in fetchers:
                    res = synthesize(LaneFetcher(**kw), family="xc7",
                                     name=f"fetcher-{arch.name}-{config}-{name}")
                    fig = res.figures()
                    total["ff"] += fig["ff"]
                    total["lut"] += fig["lut"]
                    print(f"  {board:<11} {config:<8} {name:<18} FF {fig['ff']:>7,} "
                          f"LUT {fig['lut']:>7,}", flush=True)
                synth[config] = total
            row["yosys_xc7"] = synth
        results[board] = row
        m = row["model"]
        line = (f"{board:<11} model FF {m['per-unit']['ff']:>7,} -> {m['shared']['ff']:>7,}, "
                f"LUT {m['per-unit']['lut']:>7,} -> {m['shared']['lut']:>7,}")
        if args.synth:
            s = row["yosys_xc7"]
            line += (f" | yosys FF {s['per-unit']['ff']:>7,} -> {s['shared']['ff']:>7,}, "
                     f"LUT {s['per-unit']['lut']:>7,} -> {s['shared']['lut']:>7,}")
        print(line, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
