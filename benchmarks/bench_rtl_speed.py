"""Verilator simulation speed of the conv engine, in simulated clock cycles per second.

Two ways of running the same engine:

``free``
    SESL elaboration (fixed configuration) with every input stream held valid and the
    output always ready: jobs run back to back and cocotb only runs the clock, so the
    figure is Verilator's own speed on the design under full activity.
``driven``
    SEML elaboration driven beat by beat by the cocotb stream drivers of
    ``sim.cocotb_streams`` (no idle cycles, no back-pressure), as the engine tests do;
    the figure includes the Python cost per cycle.

Build time (cold or cached) is reported separately. Prints a table and writes
``benchmarks/results/rtl_speed.json``.

Usage: ``python benchmarks/bench_rtl_speed.py [--cycles N] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (name, ArchConfig overrides)
POINTS = [
    ("conv-2x2-k3-16", {"conv_pi": 2, "conv_po": 2, "conv_k_max": 3, "max_width": 16,
                        "max_height": 16}),
    ("conv-4x4-k3-16", {"conv_pi": 4, "conv_po": 4, "conv_k_max": 3, "max_width": 16,
                        "max_height": 16}),
]

#: The layer both modes run: a 14x14 tile (16x16 padded), 3x3 "same", 3 channel tiles.
LAYER = {"width": 14, "height": 14, "kernel": 3, "stride": 1, "pad_top": 1, "pad_left": 1,
         "pad_bottom": 1, "pad_right": 1, "cin_tiles": 3, "lo": -128, "hi": 127}


def _engine(overrides, fixed):
    from hw.arch import ArchConfig
    from hw.engines import ConvEngine

    return ConvEngine(ArchConfig(**overrides), config=LAYER if fixed else None)


# cocotb side ----------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles
except ImportError:  # the driver side does not need cocotb
    cocotb = None


if cocotb is not None:

    async def _reset(dut):
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0

    @cocotb.test()
    async def speed_free(dut):
        from sim.rtl import test_args

        args = test_args()
        await _reset(dut)
        for name in ("params", "weights", "pixels"):
            getattr(dut, f"{name}__payload").value = 0x5A5A5A5A5A5A5A5A & (
                (1 << len(getattr(dut, f"{name}__payload"))) - 1)
            getattr(dut, f"{name}__valid").value = 1
        dut.o__ready.value = 1
        cycles = args["cycles"]
        start = time.perf_counter()
        await ClockCycles(dut.clk, cycles)
        seconds = time.perf_counter() - start
        Path(args["out"]).write_text(json.dumps({"cycles": cycles, "seconds": seconds}))

    @cocotb.test()
    async def speed_driven(dut):
        from hw import weight_codes
        from sim.cocotb_streams import StreamSink, StreamSource, pack_lanes, pack_struct
        from sim.rtl import test_args

        args = test_args()
        eng = _engine(args["arch"], fixed=False)
        arch = eng.arch
        rng = random.Random(1)
        await _reset(dut)
        wbits = weight_codes.code_width(arch.weight_scheme, arch.weight_bits,
                                        arch.pot_exp_bits)
        k = LAYER["kernel"]
        tiles = LAYER["cin_tiles"]
        weights = [pack_lanes([rng.randint(-8, 7) for _ in range(eng.pi * eng.po)], wbits)
                   for _ in range(tiles * k * k)]
        pixels = [pack_lanes([rng.randint(-100, 100) for _ in range(eng.pi)], arch.act_bits)
                  for _ in range(tiles * LAYER["width"] * LAYER["height"])]
        lane = eng.param_layout.elem_shape
        params = 0
        for j in range(eng.po):
            params |= pack_struct(lane, {"bias": 0, "mult": 1, "shift": 8}) << (j * lane.size)
        jobs = args["jobs"]
        start = time.perf_counter()
        sim_start = cocotb.utils.get_sim_time("ns")
        for _ in range(jobs):
            StreamSource(dut, "cmd", dut.clk).start([pack_struct(eng.cmd_layout, LAYER)])
            StreamSource(dut, "params", dut.clk).start([params])
            StreamSource(dut, "weights", dut.clk).start(weights)
            StreamSource(dut, "pixels", dut.clk).start(pixels)
            await StreamSink(dut, "o", dut.clk).recv(LAYER["width"] * LAYER["height"])
            await ClockCycles(dut.clk, 4)
        seconds = time.perf_counter() - start
        cycles = int((cocotb.utils.get_sim_time("ns") - sim_start) // 10)
        Path(args["out"]).write_text(json.dumps({"cycles": cycles, "seconds": seconds,
                                                 "jobs": jobs}))


# driver side ----------------------------------------------------------------------------

def _run(name, overrides, mode, cycles, jobs):
    from sim.rtl import enable_pch_flag, run_cocotb

    enable_pch_flag()
    fixed = mode == "free"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        start = time.perf_counter()
        run_cocotb(_engine(overrides, fixed), test_module="bench_rtl_speed",
                   build_name=f"speed-{name}-{mode}", testcase=f"speed_{mode}",
                   test_args={"arch": overrides, "cycles": cycles, "jobs": jobs,
                              "out": str(out)})
        total = time.perf_counter() - start
        result = json.loads(out.read_text())
    result["cycles_per_s"] = result["cycles"] / result["seconds"]
    result["build_and_run_s"] = total
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200_000,
                        help="clock cycles of the free-running measurement")
    parser.add_argument("--jobs", type=int, default=10, help="jobs of the driven measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rtl_speed.json")
    args = parser.parse_args(argv)

    # cocotb imports this file by module name inside the simulator
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

    rows = []
    for name, overrides in POINTS:
        for mode in ("free", "driven"):
            result = _run(name, overrides, mode, args.cycles, args.jobs)
            macs = overrides["conv_pi"] * overrides["conv_po"] * overrides["conv_k_max"] ** 2
            row = {"name": name, "mode": mode, "arch": overrides, "macs_per_cycle": macs,
                   **result}
            rows.append(row)
            print(f"{name:16s} {mode:6s} {row['cycles']:8d} cycles in {row['seconds']:6.2f} s: "
                  f"{row['cycles_per_s']:10.0f} cycles/s "
                  f"(build + run {row['build_and_run_s']:.1f} s)", flush=True)
    result = {
        "benchmark": "rtl_speed",
        "simulator": "verilator (cocotb 2.1)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "layer": LAYER,
        "points": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
