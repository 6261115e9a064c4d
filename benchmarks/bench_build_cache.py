"""Cold vs cached Verilator build of the MAC PE through the cocotb harness.

Prints the figures and writes ``benchmarks/results/build_cache.json``.
Run: ``.venv/bin/python benchmarks/bench_build_cache.py``.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

HERE = Path(__file__).resolve().parent


@cocotb.test()
async def smoke(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 10)


def main():
    sys.path.insert(0, str(HERE))
    from hw.blocks.pe import MACPE
    from sim.rtl import run_cocotb

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVFORGE_BUILD_DIR"] = tmp
        for label in ("cold", "cached", "cached_again"):
            start = time.perf_counter()
            run_cocotb(MACPE("uniform", 8, 8, 32), test_module="bench_build_cache",
                       build_name="bench-pe")
            results[f"{label}_s"] = round(time.perf_counter() - start, 3)
    for key, value in results.items():
        print(f"MAC PE a8w8 acc32, build + 10-cycle run, {key:<15} {value:8.3f} s")
    out = HERE / "results" / "build_cache.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
