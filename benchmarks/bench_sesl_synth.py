"""Yosys resources of SESL pipelines, stage by stage, and the calibration of
:mod:`compiler.sesl.resources` against them.

    python benchmarks/bench_sesl_synth.py [--only NAME ...] [--family xc7|ecp5]
                                          [--timeout S] [--fmax NAME] [--fit]

Each pipeline is synthesized with :func:`boards.synth.synthesize`
(``synth_xilinx -family xc7``, hierarchy kept so that every stage, fork and FIFO has
its own figures; cached by design hash): the test pipelines of ``tests/sesl/fixtures``
(residual, bottleneck built both ways, the all-kinds pipeline) and the SESL pipelines of
the small example models (the 1-D DPD CNN, the small MobileNetV2 built both ways, the
ResNet-style model). Results accumulate in ``benchmarks/results/sesl_synth.json``
(one entry per pipeline, written as each finishes; ``--family ecp5`` runs
``synth_ecp5 -noflatten`` instead and stores ``NAME@ecp5``).

``--fit`` fits the per-stage LUT and FF coefficients of
:func:`compiler.sesl.resources.stage_logic` on the pipelines of :data:`FIT` and reports
the error of the fitted model on the others (:data:`CHECK`) -- the coefficients printed
are the ones to put in :data:`compiler.sesl.resources.LOGIC_COEFFS`.

``--fmax NAME`` places and routes that pipeline for an ECP5-85F with nextpnr-ecp5 (out
of context) and gives frames/s at the Fmax it reports
(``benchmarks/results/sesl_fmax.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from boards.synth import ecp5_fmax, synthesize
from compiler.sesl import plan
from compiler.sesl.resources import (
    LOGIC_COEFFS,
    LOGIC_FEATURES,
    estimate_sesl_resources,
    logic_features,
)
from hw.sesl.config import PipelineConfig
from hw.sesl.pipeline import SeslPipeline
from sim.rtl import elaborate_verilog

OUT = ROOT / "benchmarks" / "results" / "sesl_synth.json"
FMAX_OUT = ROOT / "benchmarks" / "results" / "sesl_fmax.json"
#: Pipelines the coefficients are fitted on, and the ones they are checked on.
FIT = ("mobilenet_v2_small", "resnet_small", "dpd_cnn", "residual", "bottleneck", "firb")
CHECK = ("random", "mobilenet_v2_small_firb")
#: Features fitted (indices into LOGIC_FEATURES): all of them.
FIT_FEATURES = list(range(10))


def pipelines() -> dict:
    from tests.sesl import fixtures

    def model(name, firb=False):
        def make():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fixtures.pipeline(name, firb)
        return make

    return {
        "residual": fixtures.residual_pipeline,
        "bottleneck": fixtures.bottleneck_pipeline,
        "firb": lambda: fixtures.bottleneck_pipeline(fused=True),
        "random": fixtures.random_pipeline,
        "dpd_cnn": model("dpd_cnn"),
        "mobilenet_v2_small": model("mobilenet_v2_small"),
        "mobilenet_v2_small_firb": model("mobilenet_v2_small", True),
        "resnet_small": model("resnet_small"),
    }


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def units(cfg: PipelineConfig) -> dict:
    """Submodule instance name -> the stages it holds (a FIRB holds its chain)."""
    out = {}
    done = set()
    for k, st in enumerate(cfg.stages):
        if st.name in done:
            continue
        if st.firb:
            group = [s.name for s in cfg.stages if s.firb == st.firb]
            out[f"s{k}_firb_{_ident(st.firb)}"] = group
            done.update(group)
        else:
            out[f"s{k}_{_ident(st.name)}"] = [st.name]
    return out


def synth_one(name, cfg, family="xc7", timeout=3600.0):
    verilog = elaborate_verilog(SeslPipeline(cfg))
    start = time.perf_counter()
    res = synthesize(verilog, family=family, name=f"sesl_{name}", flatten=False,
                     timeout=timeout)
    est = estimate_sesl_resources(cfg)
    stages = {}
    for unit, names in units(cfg).items():
        got = res.submodules.get(unit)
        if got is None:
            continue
        stages[unit] = {"stages": names, "yosys": got,
                        "estimate": {k: sum(est["stages"][n][k] for n in names)
                                     for k in ("lut", "ff", "dsp", "bram36")}}
    other = {u: f for u, f in res.submodules.items() if u not in stages}
    return {"family": family,
            "yosys": {**res.figures(), "lutram": res.lutram, "carry": res.carry},
            "estimate": {k: est[k] for k in ("lut", "ff", "dsp", "bram36")},
            "synth_s": res.synth_s, "wall_s": round(time.perf_counter() - start, 1),
            "cached": res.cached, "cycles_per_frame": plan.model_summary(cfg)[
                "cycles_per_frame"], "stages": stages, "infrastructure": other}


def _units_features(name, entry, makers):
    """``[(features summed over the unit's stages, yosys figures)]`` of a pipeline, the
    features recomputed from its configuration (they follow the code, not the file)."""
    cfg = makers[name]()
    out = []
    for unit, names in units(cfg).items():
        got = entry["stages"].get(unit)
        if got is not None:
            x = np.sum([logic_features(cfg.stage(n), cfg) for n in names], axis=0)
            out.append((x, with_fifos(got["yosys"], names, entry["infrastructure"])))
    return out


def _unit_names(name, makers):
    """The stage names of every synthesized unit of pipeline ``name`` (order of
    :func:`_units_features`)."""
    return list(units(makers[name]()).values())


def with_fifos(figures: dict, names, infrastructure: dict) -> dict:
    """A stage's Yosys figures plus those of the skip FIFOs in front of it (the estimate
    counts a skip FIFO with the join stage that reads it)."""
    out = dict(figures)
    prefixes = tuple(f"skip_fifo_{_ident(n)}_" for n in names)
    for unit, fig in infrastructure.items():
        if unit.startswith(prefixes):
            for k, v in fig.items():
                if isinstance(v, (int, float)) and k in out:
                    out[k] += v
    return out


def nonnegative_lstsq(xs, ys):
    """Least squares with every coefficient >= 0 (active set: a feature whose
    coefficient comes out negative is dropped and the rest solved again)."""
    x, y = np.array(xs, float), np.array(ys, float)
    keep = [j for j in range(x.shape[1]) if np.any(x[:, j])]
    while True:
        sol = np.zeros(x.shape[1])
        sol[keep], *_ = np.linalg.lstsq(x[:, keep], y, rcond=None)
        negative = [j for j in keep if sol[j] < 0]
        if not negative:
            return sol
        keep.remove(min(negative, key=lambda j: sol[j]))


def _solve(data, names, key, features):
    xs = [np.asarray(x, float)[features] for n in names for x, _ in data[n]]
    ys = [_target(y, key) for n in names for _, y in data[n]]
    coeffs = np.zeros(len(LOGIC_FEATURES))
    coeffs[features] = nonnegative_lstsq(xs, ys)
    return coeffs


def _target(y, key):
    return y[key] + (y["lutram"] if key == "lut" else 0)


def fit(results: dict, makers: dict) -> dict:
    """Non-negative least-squares per-stage coefficients (LUT, FF) of the features
    :data:`FIT_FEATURES` on the pipelines of :data:`FIT`; the error on :data:`CHECK`
    and, for each pipeline of FIT, with the coefficients fitted on the others
    (leave one pipeline out). LUT counts LUT RAM cells too (the estimate's ``lut``
    includes the LUT RAM)."""
    data = {name: _units_features(name, results[name], makers)
            for name in FIT + CHECK if name in results}
    fit_on = [n for n in FIT if n in data]
    coeffs = {k: _solve(data, fit_on, k, FIT_FEATURES) for k in ("lut", "ff")}
    report = {"coefficients": {k: [round(float(c), 2) for c in v] for k, v in coeffs.items()},
              "features": list(LOGIC_FEATURES), "fit_on": fit_on,
              "checked_on": [n for n in CHECK if n in data], "pipelines": {}}
    for name, rows in data.items():
        got = {k: sum(_target(y, k) for _, y in rows) for k in ("lut", "ff")}
        sets = {"fitted": coeffs}
        if name in fit_on and len(fit_on) > 1:
            others = [n for n in fit_on if n != name]
            sets["left_out"] = {k: _solve(data, others, k, FIT_FEATURES) for k in got}
        entry = {"set": "fit" if name in FIT else "check", "stages": len(rows),
                 "stages_yosys": got,
                 "infrastructure_yosys": {k: sum(u[k] for u in results[name][
                     "infrastructure"].values()) for k in ("lut", "ff")}}
        for label, cs in sets.items():
            pred = {k: sum(float(np.dot(cs[k], x)) for x, _ in rows) for k in got}
            entry[f"stages_{label}"] = {k: round(v) for k, v in pred.items()}
            entry[f"error_{label}"] = {k: round(pred[k] / got[k] - 1, 3) for k in got}
        # stage units the fitted model misses by more than 15 % (and 100 cells)
        entry["stage_misses"] = [
            {"unit": k, "stages": names, key: [round(float(np.dot(coeffs[key], x))),
                                                _target(y, key)]}
            for k, ((x, y), names) in enumerate(zip(rows, _unit_names(name, makers)))
            for key in ("lut", "ff")
            if abs(np.dot(coeffs[key], x) - _target(y, key)) > max(100, 0.15 * _target(y, key))]
        report["pipelines"][name] = entry
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="pipelines to synthesize (default: all)")
    p.add_argument("--fit", action="store_true", help="fit and check the logic model")
    p.add_argument("--fmax", help="place and route this pipeline (nextpnr-ecp5)")
    p.add_argument("--family", default="xc7", choices=("xc7", "ecp5"),
                   help="Yosys family of the --only runs (default xc7); ECP5 results are "
                        "stored as NAME@ecp5")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds one Yosys run may take (default 3600)")
    p.add_argument("--out", type=Path, default=OUT,
                   help=f"results file (default {OUT.relative_to(ROOT)}); --fit also reads "
                        f"every sesl_synth*.json beside it")
    args = p.parse_args(argv)
    out = args.out
    results = json.loads(out.read_text()) if out.exists() else {}
    if args.fit:
        for extra in sorted(out.parent.glob("sesl_synth*.json")):
            if extra != out:
                for k, v in json.loads(extra.read_text()).items():
                    results.setdefault(k, v)
    makers = pipelines()
    names = args.only if args.only is not None else list(makers)
    if args.fit or args.fmax:
        names = args.only or []
    for name in names:
        cfg = makers[name]()
        row = synth_one(name, cfg, args.family, args.timeout)
        key = name if args.family == "xc7" else f"{name}@{args.family}"
        results[key] = row
        print(f"{key}: yosys {row['yosys']} vs estimate {row['estimate']} "
              f"({row['synth_s']} s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    if args.fit:
        report = fit(results, makers)
        results["fit"] = report
        print(json.dumps(report, indent=1))
        print(f"in use (compiler.sesl.resources.LOGIC_COEFFS): {LOGIC_COEFFS}")
    if args.fmax:
        cfg = makers[args.fmax]()
        r = ecp5_fmax(elaborate_verilog(SeslPipeline(cfg)), name=f"sesl_{args.fmax}",
                      freq_mhz=50.0)
        cycles = plan.model_summary(cfg)["cycles_per_frame"]
        r["frames_per_s"] = round(r["fmax"] * 1e6 / cycles)
        r["cycles_per_frame"] = cycles
        fmax = json.loads(FMAX_OUT.read_text()) if FMAX_OUT.exists() else {}
        fmax[args.fmax] = r
        FMAX_OUT.parent.mkdir(parents=True, exist_ok=True)
        FMAX_OUT.write_text(json.dumps(fmax, indent=1) + "\n")
        print(f"{args.fmax}: Fmax {r['fmax']} MHz -> {r['frames_per_s']:,} frames/s "
              f"({cycles} cycles/frame); {r['utilization']}")
    if names or args.fit:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
