"""Corrupted programs on the SEML core under Verilator, many cases per simulation.

:func:`run_cases` writes every case's DDR image, runs ONE cocotb test
(:func:`fuzz_programs`) on one Verilator build that resets the core, loads each image
into the same ``AxiRam`` and runs it with a cycle bound, and returns what the core
reported: done, the error code and the output bytes, or ``timeout`` when the bound
passed (a hang).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from sim.axi import DdrModel, Host, pause_pattern
from sim.rtl import run_cocotb, test_args

__all__ = ["BASE", "run_cases"]

#: DDR address of the image (program at its start); the ``AxiRam`` holds ``MEMORY`` bytes.
BASE = 0x10000
MEMORY = 1 << 20


def run_cases(arch, cases, *, build_name: str, timeout_s: float = 900.0, pause: float = 0.0,
              seed: int = 0) -> list[dict]:
    """Run ``cases`` (dicts with ``image`` (uint8 array), ``outputs`` ((offset, bytes)
    pairs to read back) and ``max_cycles``) on the core for ``arch``; one result dict per
    case: ``done``, ``timeout``, ``error_code``, ``error_info``, ``cycles``, ``outputs``
    (list of hex strings). ``pause``: probability that each AXI channel of the DDR model
    stalls in a cycle (random back-pressure, patterns seeded by ``seed``); a case's own
    ``pause`` replaces it for that case."""
    from hw.seml.core import SemlCore

    with tempfile.TemporaryDirectory(prefix="convforge-rtl-fuzz-") as tmp:
        tmp = Path(tmp)
        listing = []
        for i, case in enumerate(cases):
            path = tmp / f"case{i}.bin"
            path.write_bytes(case["image"].tobytes())
            listing.append({"image": str(path), "outputs": case["outputs"],
                            "max_cycles": case["max_cycles"],
                            **({"pause": case["pause"]} if "pause" in case else {})})
        (tmp / "cases.json").write_text(json.dumps(listing))
        run_cocotb(SemlCore(arch), test_module=__name__, build_name=build_name,
                   testcase="fuzz_programs", timeout_s=timeout_s,
                   test_args={"cases": str(tmp / "cases.json"),
                              "results": str(tmp / "results.json"), "pause": pause,
                              "seed": seed})
        return json.loads((tmp / "results.json").read_text())


@cocotb.test()
async def fuzz_programs(dut):
    """Each case: reset, clear the memory, load the image, start, poll done (bounded)."""
    args = test_args()
    cases = json.loads(Path(args["cases"]).read_text())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ddr = DdrModel(dut, size=MEMORY, pause=args.get("pause", 0.0), seed=args.get("seed", 0))
    host = Host(dut, ddr)
    results = []
    channels = (ddr.write_if.aw_channel, ddr.write_if.w_channel, ddr.write_if.b_channel,
                ddr.read_if.ar_channel, ddr.read_if.r_channel)
    for n, case in enumerate(cases):
        if "pause" in case:
            # this case's own back-pressure (none: the bus answers at once)
            for i, channel in enumerate(channels):
                channel.set_pause_generator(
                    pause_pattern(n * 8 + i, case["pause"]) if case["pause"] else None)
                channel.pause = False
        await host.reset()
        host.load(0, bytes(MEMORY))
        host.load(BASE, Path(case["image"]).read_bytes())
        try:
            r = await host.run(BASE, BASE, timeout_cycles=case["max_cycles"], poll_interval=64)
        except TimeoutError:
            results.append({"done": False, "timeout": True})
            await ClockCycles(dut.clk, 4)
            continue
        results.append({
            "done": True, "timeout": False, "error_code": r.error_code,
            "error_info": r.error_info, "cycles": r.cycles,
            "outputs": [host.read_back(BASE + off, n).hex() for off, n in case["outputs"]]})
    Path(args["results"]).write_text(json.dumps(results))
