"""The accelerator top for one :class:`hw.arch.ArchConfig`, and its Verilog.

The top is the SEML core (:class:`hw.seml.core.SemlCore`): an AXI4-Lite slave for
the host's control and status registers and an AXI4 master to DDR, with the port
names of the usual Xilinx / cocotbext-axi convention (``s_axil_*``, ``m_axi_*``),
plus ``clk``, ``rst`` (active high, synchronous) and ``irq``.
"""

from __future__ import annotations

from pathlib import Path

from .arch import ArchConfig
from .seml.core import SemlCore

__all__ = ["TOP_NAME", "Accelerator", "elaborate"]

#: Module name of the generated Verilog top.
TOP_NAME = "convforge_top"


def Accelerator(arch: ArchConfig) -> SemlCore:
    """The accelerator component for ``arch``."""
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
    return SemlCore(arch)


def elaborate(arch: ArchConfig, out_dir, *, name: str = TOP_NAME) -> Path:
    """Write the Verilog of the accelerator for ``arch`` to ``out_dir/<name>.v``.

    Also writes ``out_dir/arch.json`` (the arch the Verilog was generated for, whose
    hash programs must carry). Returns the Verilog path.
    """
    from amaranth.back import verilog

    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Top module name must be a Verilog identifier, not {name!r}")
    top = Accelerator(arch)
    text = verilog.convert(top, name=name, emit_src=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.v"
    path.write_text(text)
    (out / "arch.json").write_text(arch.to_json())
    return path
