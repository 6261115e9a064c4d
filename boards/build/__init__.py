"""Board build flows: ``convforge build --board NAME [--arch ARCH.json] -o BUILD/``.

The fit check (:func:`boards.database.check_fits`) runs first and refuses an arch
over the board's budget, naming the resource, before any tool runs. Then:

* ``yowasp`` boards (ULX3S-85F): :mod:`boards.build.ecp5` -- the board top of
  :mod:`boards.ulx3s` through yosys, nextpnr-ecp5 and ecppack: ``BUILD/convforge.bit``,
  utilization and Fmax;
* ``vivado`` boards: :mod:`boards.build.vivado` -- Verilog, block-design wrapper and
  ``build.tcl`` (run with ``vivado -mode batch -source build.tcl``).

Every build writes ``BUILD/arch.json`` (compile models with ``--arch BUILD/arch.json``)
and ``BUILD/build.json`` (what was built; ``convforge run`` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..database import check_fits

__all__ = ["build_board"]


def build_board(board, arch, out_dir, *, ram_bytes: int = 64 * 1024, baud: int = 1_000_000,
                log=print) -> dict:
    """Build ``arch`` for ``board`` into ``out_dir``; returns the summary (``build.json``).

    Raises
    ------
    boards.database.ResourceError
        The arch does not fit the board (nothing is built).
    boards.build.ecp5.ToolchainError
        A tool is missing or failed.
    """
    estimate = check_fits(arch, board)
    out = Path(out_dir)
    if board.flow == "yowasp":
        from .ecp5 import build_ulx3s, find_tools

        find_tools()  # a missing toolchain is reported before anything is written
        out.mkdir(parents=True, exist_ok=True)
        summary = build_ulx3s(arch, out, ram_bytes=ram_bytes, baud=baud, log=log)
    else:
        from .vivado import write_vivado_project

        summary = write_vivado_project(board, arch, out)
    summary["estimate"] = estimate
    (out / "arch.json").write_text(arch.to_json())
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
