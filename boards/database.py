"""Board database: programmable-logic resources, clocks, memory bandwidth, AXI widths.

Each board also proposes a default :class:`~hw.arch.ArchConfig` that fits its
budget, and :func:`check_fits` refuses an arch that exceeds a board's resources,
naming the resource, before anything is built. Both use the calibrated structural
model of :mod:`boards.resources`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.arch import ArchConfig

from . import resources

__all__ = ["BOARDS", "Board", "ResourceError", "check_fits", "estimate_resources", "get_board"]


class ResourceError(ValueError):
    """An arch needs more of a resource than the board has."""


@dataclass(frozen=True)
class Board:
    """One FPGA board (programmable logic only).

    ``bram_kbits`` is the total block RAM in kilobits (36 Kb per Xilinx BRAM36,
    18 Kb per ECP5 EBR); ``flow`` is ``"vivado"`` (Verilog + block-design TCL) or
    ``"yowasp"`` (open toolchain, real bitstream).
    """

    name: str
    part: str
    family: str
    flow: str
    lut: int
    ff: int
    dsp: int
    bram_blocks: int
    bram_block_kbits: int
    uram: int
    clock_mhz: float
    ddr_gbytes_per_s: float
    axi_data_bits: int
    axi_addr_bits: int = 32

    @property
    def bram_kbits(self) -> int:
        return self.bram_blocks * self.bram_block_kbits

    def default_arch(self) -> ArchConfig:
        """The largest balanced arch whose calibrated estimate (:mod:`boards.resources`)
        uses at most 70 % of every resource: the widest engines first, then the largest
        feature-map buffers (a quarter of the block RAM each at most, down to 8 KiB).
        On the open-toolchain boards (``flow == "yowasp"``, where nextpnr times the
        design) each engine unit has its own lane fetchers (``private_fetchers``: shorter
        paths for more flip-flops); elsewhere the units share one set."""
        for pi, po, pw, dw in _ARCH_TIERS:
            for buf in _buffer_sizes(self):
                arch = ArchConfig(
                    name=f"{self.name.lower()}-default", conv_pi=pi, conv_po=po, pw_pi=pw,
                    pw_po=pw, dw_channels=dw, clock_mhz=self.clock_mhz,
                    axi_data_bits=self.axi_data_bits, axi_addr_bits=self.axi_addr_bits,
                    ibuf_bytes=buf, obuf_bytes=buf, wbuf_bytes=max(buf // 2, 8 * 1024),
                    private_fetchers=self.flow == "yowasp")
                use = estimate_resources(arch, family=self.synth_family)
                if all(use[r] <= 0.7 * have for r, have in self.budget.items()):
                    return arch
        raise ResourceError(f"Board {self.name} is too small for the smallest ConvForge arch")

    @property
    def synth_family(self) -> str:
        """The Yosys family of the board's part (``xc7``, ``xcup`` or ``ecp5``)."""
        return resources.board_family(self)

    @property
    def budget(self) -> dict:
        """Resources :func:`check_fits` compares: LUTs (logic plus LUT RAM), FFs, DSP
        slices and block RAMs (36 Kb on Xilinx, 18 Kb EBR on ECP5)."""
        return {"dsp": self.dsp, "lut": self.lut, "ff": self.ff, "bram": self.bram_blocks}

    def budget36(self) -> dict:
        """The budget in the units of :meth:`boards.synth.SynthResult.figures`."""
        bram36 = self.bram_blocks * self.bram_block_kbits / 36
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram36": bram36}


# Balanced (conv Pi, conv Po, pointwise Pi = Po, depthwise channels), largest first.
_ARCH_TIERS = ((16, 16, 32, 32), (16, 8, 32, 16), (8, 8, 16, 16), (8, 4, 16, 8), (4, 4, 8, 8),
               (4, 2, 8, 4), (2, 2, 4, 4), (1, 1, 2, 2))


def _buffer_sizes(board: Board):
    """Feature-map buffer sizes to try, largest first: powers of two from a quarter of
    the block RAM (at most 256 KiB) down to 8 KiB."""
    share = board.bram_kbits * 1024 // 8 // 4
    top = max(8 * 1024, min(256 * 1024, 1 << int(math.log2(max(share, 1)))))
    size = top
    while size >= 8 * 1024:
        yield size
        size //= 2


BOARDS = {b.name.lower(): b for b in (
    Board("ZCU102", "xczu9eg-ffvb1156-2-e", "zynq_ultrascale_plus", "vivado",
          274_080, 548_160, 2_520, 912, 36, 0, 200.0, 19.2, 128, 40),
    Board("ZCU104", "xczu7ev-ffvc1156-2-e", "zynq_ultrascale_plus", "vivado",
          230_400, 460_800, 1_728, 312, 36, 96, 200.0, 19.2, 128, 40),
    Board("ZC706", "xc7z045ffg900-2", "zynq7", "vivado",
          218_600, 437_200, 900, 545, 36, 0, 150.0, 8.5, 64),
    Board("KCU105", "xcku040-ffva1156-2-e", "kintex_ultrascale", "vivado",
          242_400, 484_800, 1_920, 600, 36, 0, 200.0, 19.2, 128),
    Board("PYNQ-Z2", "xc7z020clg400-1", "zynq7", "vivado",
          53_200, 106_400, 220, 140, 36, 0, 100.0, 4.2, 64),
    Board("Ultra96-V2", "xczu3eg-sbva484-1-i", "zynq_ultrascale_plus", "vivado",
          70_560, 141_120, 360, 216, 36, 0, 200.0, 8.5, 128, 40),
    Board("ULX3S-85F", "LFE5U-85F-6BG381C", "ecp5", "yowasp",
          83_640, 83_640, 156, 208, 18, 0, 50.0, 0.2, 32),
)}


def get_board(name: str) -> Board:
    """Look a board up by name (case-insensitive)."""
    try:
        return BOARDS[name.lower()]
    except (KeyError, AttributeError):
        known = ", ".join(b.name for b in BOARDS.values())
        raise ValueError(f"Unknown board {name!r}; known boards are {known}") from None


def estimate_resources(arch: ArchConfig, family: str = "xc7") -> dict:
    """Calibrated resource estimate of the SEML core for ``arch`` on ``family``
    (:func:`boards.resources.estimate`).

    Keys: ``lut`` (logic plus LUT RAM, in LUTs), ``ff``, ``dsp``, ``bram`` (36 Kb blocks
    on Xilinx, 18 Kb EBR on ECP5), ``bram18``, ``bram36``, ``bram_kbits``, ``lutram``,
    ``mac_units`` and ``submodules``.
    """
    est = resources.estimate(arch, family)
    bram = est["bram18"] if family == "ecp5" else math.ceil(est["bram36"])
    return {"dsp": est["dsp"], "lut": est["lut_total"], "ff": est["ff"], "bram": bram,
            "bram18": est["bram18"], "bram36": est["bram36"], "bram_kbits": 18 * est["bram18"],
            "lutram": est["lutram"], "mac_units": arch.conv_macs + arch.dw_macs + arch.pw_macs,
            "submodules": est["submodules"]}


def check_fits(arch: ArchConfig, board: Board) -> dict:
    """Return the estimate, or raise :class:`ResourceError` naming every exceeded resource."""
    use = estimate_resources(arch, family=board.synth_family)
    names = {"bram": "BRAM36" if board.bram_block_kbits == 36 else "EBR"}
    over = [f"{names.get(name, name.upper())} needs {use[name]:,} but {board.name} has "
            f"{have:,}" for name, have in board.budget.items() if use[name] > have]
    if over:
        raise ResourceError(
            f"Arch {arch.name!r} does not fit board {board.name}: " + "; ".join(over)
            + ". Reduce conv_pi/conv_po/pw_pi/pw_po/dw_channels or the buffer sizes.")
    return use
