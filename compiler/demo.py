"""``convforge demo``: the bundled example through the whole flow, with a verdict.

Steps: build the bundled MobileNetV2-style model (32x32 input) and a seeded
calibration set; check legality; profile; quantize and compare the golden
runner with onnxruntime float; compile for the demo arch; run ``program.bin``
on the ISS (must equal the golden runner bit for bit); run the same binary on
the RTL under Verilator (must equal the ISS bit for bit) and compare its cycle
counter with the compiler's prediction.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx

from compiler.errors import ConvForgeError
from hw.arch import ArchConfig

__all__ = ["DEMO_ARCH", "add_demo_parser", "run_demo"]

#: A small arch: every engine present, buffers large enough for 32x32 maps, and
#: an RTL model that Verilator simulates in about a minute.
DEMO_ARCH = ArchConfig(name="demo", conv_pi=2, conv_po=2, dw_channels=4, pw_pi=4, pw_po=4,
                       max_width=32, max_height=32, ibuf_bytes=16 * 1024,
                       obuf_bytes=16 * 1024, wbuf_bytes=16 * 1024, pbuf_entries=256)


def _indent(text: str) -> str:
    return "   " + text.replace("\n", "\n   ")


def _step(title):
    print(f"\n== {title}")
    return time.perf_counter()


def _done(start):
    print(f"   ({time.perf_counter() - start:.2f} s)")


def run_demo(out_dir="out/demo", *, rtl: bool = True, samples: int = 8, seed: int = 0) -> bool:
    """Run the demo; returns True when every bit-exact check passed."""
    from compiler.compile import BACKENDS, compile_model, simulate
    from compiler.frontend.check import summary
    from compiler.pipeline import PassContext, import_model
    from compiler.profile import profile_graph
    from compiler.runner import compare_with_onnx, run_golden_int
    from examples.models import mobilenet_v2_small

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = {}

    start = _step("Model: bundled MobileNetV2-style network, 32x32 input, 10 classes")
    model = mobilenet_v2_small(seed=seed)
    model_path = out / "mobilenet_v2_small.onnx"
    onnx.save(model, model_path)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((samples, 1, 3, 32, 32)).astype(np.float32)
    np.save(out / "calibration.npy", calib)
    print(f"   wrote {model_path} and {out / 'calibration.npy'} ({samples} samples)")
    _done(start)

    start = _step("Legality check and profile")
    graph = import_model(model_path, PassContext(arch=DEMO_ARCH))
    print(_indent(summary(model_path, graph)))
    print(_indent(profile_graph(graph).format_table()))
    _done(start)

    start = _step(f"Compile for arch {DEMO_ARCH.name!r} (int8, per-channel requantization)")
    result = compile_model(model_path, DEMO_ARCH, out / "build", calib)
    print(_indent((result.out_dir / "report.txt").read_text().rstrip()))
    _done(start)

    start = _step("Golden runner vs onnxruntime float (calibration set)")
    figures = compare_with_onnx(result.graph, model, calib)
    for name, snr in figures["final_snr_db"].items():
        print(f"   output {name}: SNR {snr:.1f} dB")
    if figures.get("top1_agreement") is not None:
        print(f"   top-1 agreement: {figures['top1_agreement']:.0%}")
    _done(start)

    start = _step("ISS: program.bin on the instruction-set simulator")
    x = calib[0]
    iss = simulate(result.out_dir, x, backend="iss")
    golden = run_golden_int(result.graph, iss.inputs).outputs
    same = all(np.array_equal(iss.outputs[k], golden[k].reshape(iss.outputs[k].shape))
               for k in iss.outputs)
    verdicts["ISS == golden"] = same
    print(f"   {iss.cycles:,} predicted cycles; ISS == golden runner: {'yes' if same else 'NO'}")
    _done(start)

    if rtl:
        start = _step("RTL: the same program.bin on the SEML core under Verilator")
        if "rtl" not in BACKENDS:
            raise ConvForgeError("The RTL backend is not available in this installation")
        hw = simulate(result.out_dir, x, backend="rtl")
        same = all(np.array_equal(hw.outputs[k], iss.outputs[k]) for k in iss.outputs)
        verdicts["RTL == ISS"] = same
        ratio = hw.cycles / iss.cycles if iss.cycles else float("nan")
        print(f"   RTL cycle counter {hw.cycles:,} vs predicted {iss.cycles:,} "
              f"({ratio:.2f}x); RTL == ISS: {'yes' if same else 'NO'}")
        _done(start)

    ok = all(verdicts.values())
    print("\n== Verdict: " + ("PASS" if ok else "FAIL") + " ("
          + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in verdicts.items()) + ")")
    return ok


def demo_command(args) -> int:
    return 0 if run_demo(args.output, rtl=not args.no_rtl) else 1


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the bundled example end to end",
                       description="Build the bundled MobileNetV2-style model, compile it, "
                                   "and check ISS == golden and RTL == ISS bit for bit.")
    p.add_argument("-o", "--output", default="out/demo", help="work directory (default out/demo)")
    p.add_argument("--no-rtl", action="store_true", help="skip the Verilator run")
    p.set_defaults(func=demo_command)
