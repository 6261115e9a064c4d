"""Board database: programmable-logic resources, clocks, memory bandwidth, AXI widths.

Each board also proposes a default :class:`~hw.arch.ArchConfig` that fits its
budget, and :func:`check_fits` refuses an arch that exceeds a board's resources,
naming the resource, before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.arch import ArchConfig

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
        """The largest balanced arch that fits comfortably (at most 70 % of every resource)."""
        for pi, po, pw, dw in _ARCH_TIERS:
            arch = ArchConfig(
                name=f"{self.name.lower()}-default", conv_pi=pi, conv_po=po, pw_pi=pw, pw_po=pw,
                dw_channels=dw, clock_mhz=self.clock_mhz, axi_data_bits=self.axi_data_bits,
                axi_addr_bits=self.axi_addr_bits, ibuf_bytes=_buffer_bytes(self),
                obuf_bytes=_buffer_bytes(self), wbuf_bytes=_buffer_bytes(self) // 2)
            use = estimate_resources(arch)
            if all(use[r] <= 0.7 * have for r, have in self.budget.items()):
                return arch
        raise ResourceError(f"Board {self.name} is too small for the smallest ConvForge arch")

    @property
    def budget(self) -> dict:
        return {"dsp": self.dsp, "lut": self.lut, "ff": self.ff, "bram_kbits": self.bram_kbits}


# Balanced (conv Pi, conv Po, pointwise Pi = Po, depthwise channels), largest first.
_ARCH_TIERS = ((16, 16, 32, 32), (16, 8, 32, 16), (8, 8, 16, 16), (8, 4, 16, 8), (4, 4, 8, 8),
               (4, 2, 8, 4), (2, 2, 4, 4), (1, 1, 2, 2))


def _buffer_bytes(board: Board) -> int:
    # Give each of the three feature-map buffers up to an eighth of the block RAM,
    # as a power of two between 8 KiB and 256 KiB.
    share = board.bram_kbits * 1024 // 8 // 8
    return max(8 * 1024, min(256 * 1024, 1 << int(math.log2(max(share, 1)))))


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


def _multiplier_cost(arch: ArchConfig) -> tuple[int, int]:
    """(DSPs, LUTs) of one MAC for the arch's weight scheme."""
    if arch.weight_scheme == "uniform":
        # One DSP48 takes up to 25x18 (18x18 on ECP5); wider operands take two.
        return (1 if max(arch.act_bits, arch.weight_bits) <= 18 else 2), 0
    shifters = 1 if arch.weight_scheme == "pot" else 2
    return 0, shifters * (arch.act_bits + 2 ** arch.pot_exp_bits) * 2


def estimate_resources(arch: ArchConfig) -> dict:
    """First-order resource estimate of the SEML core for ``arch``.

    DSPs: one per MAC unit (shift-based PEs use LUTs instead). LUT/FF: adder
    trees, requantization, control and the AXI interfaces. Block RAM: the
    on-chip buffers plus the line buffers of the conv and depthwise engines.
    """
    macs = arch.conv_macs + arch.dw_macs + arch.pw_macs
    dsp_per_mac, lut_per_mac = _multiplier_cost(arch)
    acc = arch.acc_bits
    adder_luts = macs * acc                      # one adder per MAC in the trees
    requant_lanes = arch.conv_po + arch.dw_channels + arch.pw_po
    requant = requant_lanes * (arch.mult_bits + acc + 4 * arch.act_bits)
    control = 6_000 + 40 * arch.axi_data_bits
    lut = macs * lut_per_mac + adder_luts + requant + control
    ff = adder_luts + macs * arch.act_bits + requant + control
    line_buffer_bits = ((arch.conv_pi + arch.dw_channels) * (arch.conv_k_max - 1)
                        * arch.max_width * arch.act_bits)
    obuf_acc_bits = arch.conv_po * arch.max_width * arch.max_height * acc
    buffer_bits = 8 * (arch.ibuf_bytes + arch.obuf_bytes + arch.wbuf_bytes)
    param_bits = arch.pbuf_entries * (arch.bias_bits + arch.mult_bits + arch.shift_bits)
    bram_kbits = math.ceil((line_buffer_bits + obuf_acc_bits + buffer_bits + param_bits) / 1024)
    return {"dsp": macs * dsp_per_mac, "lut": lut, "ff": ff, "bram_kbits": bram_kbits,
            "mac_units": macs}


def check_fits(arch: ArchConfig, board: Board) -> dict:
    """Return the estimate, or raise :class:`ResourceError` naming every exceeded resource."""
    use = estimate_resources(arch)
    over = [f"{name.upper()} needs {use[name]:,} but {board.name} has {have:,}"
            for name, have in board.budget.items() if use[name] > have]
    if over:
        raise ResourceError(
            f"Arch {arch.name!r} does not fit board {board.name}: " + "; ".join(over)
            + ". Reduce conv_pi/conv_po/pw_pi/pw_po/dw_channels or the buffer sizes.")
    return use
