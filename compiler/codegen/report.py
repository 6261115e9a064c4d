"""The per-layer report: engine, tiles, MACs, weights, instructions and predicted cycles."""

from __future__ import annotations

from hw.arch import ArchConfig

__all__ = ["REPORT_FORMAT", "format_report", "report_json"]


def format_report(program, arch: ArchConfig, title: str = "") -> str:
    """A plain-text table of ``program.layers`` (a :class:`compiler.codegen.program.Program`)."""
    head = ("layer", "kind", "engine", "tiles", "m x rows x cols", "MACs", "weights B", "instrs",
            "cycles", "MAC/cycle", "fused")
    rows = []
    for r in program.layers:
        util = f"{r.macs / r.cycles:.1f}" if r.cycles and r.macs else "-"
        rows.append((r.name, r.kind, r.engine + ("*" if r.double_buffered else ""), str(r.tiles),
                     f"{r.m_tile} x {r.row_tile} x {r.col_tile}" if r.m_tile else "-",
                     f"{r.macs:,}",
                     f"{r.weight_bytes:,}", str(r.instructions), f"{r.cycles:,}", util,
                     ",".join(r.fused) or "-"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 3 or i == 10 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    macs = sum(r.macs for r in program.layers)
    ms = program.cycles / (arch.clock_mhz * 1e3)
    out = [f"ConvForge compile report{': ' + title if title else ''}",
           f"arch {arch.name} (hash 0x{arch.config_hash:016x}), {arch.clock_mhz:g} MHz",
           "", line(head), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    out += ["", (f"total: {len(program.instructions)} instructions, {macs:,} MACs, "
                 f"{program.cycles:,} predicted cycles ({ms:.3f} ms at {arch.clock_mhz:g} MHz)"),
            (f"DDR: program 0..{program.weights_offset}, weights {program.weights_offset} "
             f"(+{len(program.weights):,} B), activations {program.activations_offset} "
             f"(+{program.activations_bytes:,} B), image {program.ddr_bytes:,} B"),
            "engine* = double-buffered tiles"]
    return "\n".join(out) + "\n"


#: Version of the ``report.json`` layout.
REPORT_FORMAT = 1


def _engine_macs(engine: str, arch: ArchConfig) -> int:
    if engine.startswith("conv"):
        return arch.conv_macs
    if engine.startswith("depthwise"):
        return arch.dw_macs
    if engine.startswith(("pointwise", "fc")):
        return arch.pw_macs
    return 0


def report_json(program, arch: ArchConfig, title: str = "") -> dict:
    """The machine-readable report of a SEML compile (the same keys as every mode's)."""
    import math

    from boards.database import estimate_resources

    use = estimate_resources(arch)
    mac_units = arch.conv_macs + arch.dw_macs + arch.pw_macs
    macs = sum(r.macs for r in program.layers)
    cycles = int(program.cycles)
    layers = []
    for r in program.layers:
        units = _engine_macs(r.engine, arch)
        layers.append({
            "name": r.name, "kind": r.kind, "engine": r.engine,
            "folding": None,
            "tiles": {"count": r.tiles, "m": r.m_tile, "rows": r.row_tile, "cols": r.col_tile,
                      "double_buffered": r.double_buffered},
            "cycles": int(r.cycles), "macs": int(r.macs), "mac_units": units,
            "mac_utilization": (r.macs / (r.cycles * units)) if r.cycles and units else None,
            "fifo_depths": {}, "buffer_bits": None, "weight_bits": 8 * r.weight_bytes,
            "fused": list(r.fused),
        })
    buffer_bits = 8 * (arch.ibuf_bytes + arch.obuf_bytes + arch.wbuf_bytes)
    return {
        "format": REPORT_FORMAT, "mode": "seml", "model": title, "arch": arch.name,
        "clock_mhz": arch.clock_mhz, "cycles_per_frame": cycles,
        "frames_per_s": arch.clock_mhz * 1e6 / cycles if cycles else None,
        "latency_cycles": cycles, "mac_units": mac_units, "macs_per_frame": int(macs),
        "mac_utilization": macs / (cycles * mac_units) if cycles and mac_units else None,
        "resources": {"lut": int(use["lut"]), "ff": int(use["ff"]), "dsp": int(use["dsp"]),
                      "bram36": math.ceil(use["bram_kbits"] / 36)},
        "resource_model": "boards.database.estimate_resources",
        "buffer_bits": buffer_bits,
        "layers": layers,
    }
