"""RTL simulation speed and end-to-end wall time of the small MobileNetV2 on the SEML core.

Usage: ``python benchmarks/bench_system_rtl.py [--model mobilenet_v2_small|vgg|dpd_cnn]``.
Prints the figures and writes ``benchmarks/results/system_rtl.json``.

Timed separately:

* compile (ONNX to program.bin / weights.bin);
* Verilator build of the core for the arch (cold: a fresh build directory; warm: the
  cached one, as every later run sees it);
* the RTL run itself: load the DDR image into ``AxiRam``, start through
  ``AxiLiteMaster``, poll done, read back -- from which the simulation speed in
  cycles per second follows;
* the ISS run of the same program, for reference.

The RTL result is checked against the ISS bit for bit over the whole DDR image, and
the core's cycle count is compared with the compiler's cycle model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2_small",
                        choices=("mobilenet_v2_small", "vgg", "dpd_cnn"))
    parser.add_argument("--cold", action="store_true",
                        help="build in a fresh directory to time a cold Verilator build")
    args = parser.parse_args(argv)

    from compiler.compile import compile_model, load_image
    from examples import models
    from hw.arch import ArchConfig
    from sim.axi import layer_cycles, run_program_rtl
    from sim.iss import ISS, encode_activations

    # The arch of tests/test_system_rtl.py: both share one Verilator build.
    arch_ = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384,
                       wbuf_bytes=8192, pbuf_entries=256, max_width=34, max_height=34,
                       conv_k_max=5)

    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        tmp = Path(tmp)
        if args.cold:
            os.environ["CONVFORGE_BUILD_DIR"] = str(tmp / "build")
        start = time.perf_counter()
        compile_model(getattr(models, args.model)(), arch_, tmp / "out")
        compile_s = time.perf_counter() - start
        arch, program, ddr, manifest = load_image(tmp / "out")
        rng = np.random.default_rng(0)
        for spec in manifest["inputs"]:
            raw = encode_activations(rng.integers(-128, 128, size=spec["shape"]), spec["bits"])
            ddr[spec["offset"]:spec["offset"] + raw.size] = raw

        iss_ddr = ddr.copy()
        start = time.perf_counter()
        iss = ISS(arch).run(program, iss_ddr)
        iss_s = time.perf_counter() - start

        rtl_ddr = ddr.copy()
        start = time.perf_counter()
        run = run_program_rtl(arch, program, rtl_ddr, build_name="seml-system")
        first_s = time.perf_counter() - start
        rtl_ddr = ddr.copy()
        start = time.perf_counter()
        run = run_program_rtl(arch, program, rtl_ddr, build_name="seml-system")
        warm_s = time.perf_counter() - start
        equal = bool(np.array_equal(rtl_ddr, iss_ddr))

    results = {
        "model": manifest["model"],
        "arch": arch.to_dict(),
        "instructions": len(iss.instructions),
        "rtl_cycles": run.cycles,
        "predicted_cycles": iss.cycles,
        "rtl_over_predicted": run.cycles / iss.cycles,
        "rtl_sim_seconds": run.wall_seconds,
        "rtl_cycles_per_second": run.cycles / run.wall_seconds,
        "rtl_end_to_end_seconds_first": first_s,
        "rtl_end_to_end_seconds_warm": warm_s,
        "build_cold": bool(args.cold),
        "compile_seconds": compile_s,
        "iss_seconds": iss_s,
        "rtl_equals_iss": equal,
        "layers": layer_cycles(manifest, iss, run, arch),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / "system_rtl.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
