"""The per-layer report: engine, tiles, MACs, weights, instructions and predicted cycles."""

from __future__ import annotations

from hw.arch import ArchConfig

__all__ = ["format_report"]


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
