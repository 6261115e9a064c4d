"""The accelerator configuration: the single source of truth for every derived size.

One frozen dataclass describes a generated accelerator. The compiler fills it in
(from a board budget or a user's ``arch.json``), the hardware elaborates from it,
and its hash is stamped into every program header so that a program built for one
arch is refused by another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["WEIGHT_SCHEMES", "ArchConfig"]

#: Weight encodings a PE can be elaborated for (see ``hw.weight_codes``).
WEIGHT_SCHEMES = ("uniform", "pot", "apot")

#: Kernel sizes the line buffers and convolvers support.
KERNEL_SIZES = (1, 3, 5, 7)


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Arch parameter {name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"Arch parameter {name} must be {bound}, not {value!r}")


@dataclass(frozen=True)
class ArchConfig:
    """Parameters of one generated accelerator.

    Widths are in bits, buffer sizes in bytes (feature maps, weights) or entries
    (per-channel parameters).

    Parameters
    ----------
    name : str
        Human-readable name, carried into reports.
    act_bits, weight_bits, bias_bits, acc_bits : int
        Signed widths of activations, weights, biases and accumulators.
    mult_bits : int
        Width of the unsigned requantization multiplier.
    shift_bits : int
        Width of the requantization shift field (largest shift ``2**shift_bits - 1``).
    weight_scheme : str
        ``"uniform"`` (full multipliers), ``"pot"`` or ``"apot"`` (shift-based PEs).
    pot_exp_bits : int
        Exponent field width of PoT / APoT weight codes.
    conv_pi, conv_po : int
        Input x output channel parallelism of the conv engine (KxK convolvers).
    conv_k_max : int
        Largest kernel the conv engine's line buffers and convolvers support.
    dw_channels : int
        Channels the depthwise engine processes in parallel.
    pw_pi, pw_po : int
        Input x output channels of the pointwise (and fully connected) MAC array.
    max_width, max_height : int
        Largest feature-map tile (after padding) the line buffers accept.
    ibuf_bytes, obuf_bytes, wbuf_bytes : int
        On-chip input, output and weight buffer sizes.
    pbuf_entries : int
        On-chip per-output-channel parameter entries (bias, multiplier, shift).
    axi_data_bits, axi_addr_bits : int
        AXI4 master data and address widths.
    clock_mhz : float
        Target clock, used by the cycle model for time estimates.
    private_fetchers : bool
        Each engine unit reads IBUF and WBUF through lane fetchers of its own, beside it
        (no lane address crosses between units: shorter paths, more logic), instead of
        one pixel and one weight fetcher the units share. It changes neither what a
        program computes nor its cycles, so it is not part of :attr:`config_hash`.
    """

    name: str = "default"
    act_bits: int = 8
    weight_bits: int = 8
    bias_bits: int = 32
    acc_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    weight_scheme: str = "uniform"
    pot_exp_bits: int = 3
    conv_pi: int = 4
    conv_po: int = 4
    conv_k_max: int = 3
    dw_channels: int = 4
    pw_pi: int = 8
    pw_po: int = 8
    max_width: int = 64
    max_height: int = 64
    ibuf_bytes: int = 64 * 1024
    obuf_bytes: int = 64 * 1024
    wbuf_bytes: int = 32 * 1024
    pbuf_entries: int = 512
    axi_data_bits: int = 64
    axi_addr_bits: int = 32
    clock_mhz: float = 100.0
    private_fetchers: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Arch parameter name must be a non-empty string, not {self.name!r}")
        for name in ("act_bits", "weight_bits"):
            _check_int(name, getattr(self, name), 2, 16)
        _check_int("bias_bits", self.bias_bits, 2, 48)
        _check_int("acc_bits", self.acc_bits, 2, 48)
        if self.acc_bits < self.act_bits + self.weight_bits:
            raise ValueError(
                f"Arch parameter acc_bits must be at least act_bits + weight_bits "
                f"({self.act_bits + self.weight_bits}), not {self.acc_bits!r}")
        _check_int("mult_bits", self.mult_bits, 1, 32)
        _check_int("shift_bits", self.shift_bits, 1, 7)
        if self.weight_scheme not in WEIGHT_SCHEMES:
            raise ValueError(
                f"Arch parameter weight_scheme must be one of {', '.join(WEIGHT_SCHEMES)}, "
                f"not {self.weight_scheme!r}")
        _check_int("pot_exp_bits", self.pot_exp_bits, 1, 5)
        for name in ("conv_pi", "conv_po", "dw_channels", "pw_pi", "pw_po"):
            _check_int(name, getattr(self, name), 1, 256)
        if self.conv_k_max not in KERNEL_SIZES:
            raise ValueError(
                f"Arch parameter conv_k_max must be one of {KERNEL_SIZES}, not {self.conv_k_max!r}")
        _check_int("max_width", self.max_width, 1, 4096)
        _check_int("max_height", self.max_height, 1, 4096)
        for name in ("ibuf_bytes", "obuf_bytes", "wbuf_bytes"):
            _check_int(name, getattr(self, name), 64)
        _check_int("pbuf_entries", self.pbuf_entries, 1)
        if self.axi_data_bits not in (32, 64, 128, 256, 512):
            raise ValueError(
                f"Arch parameter axi_data_bits must be one of 32, 64, 128, 256, 512, "
                f"not {self.axi_data_bits!r}")
        _check_int("axi_addr_bits", self.axi_addr_bits, 16, 64)
        if not isinstance(self.clock_mhz, (int, float)) or self.clock_mhz <= 0:
            raise ValueError(f"Arch parameter clock_mhz must be positive, not {self.clock_mhz!r}")
        if not isinstance(self.private_fetchers, bool):
            raise TypeError(f"Arch parameter private_fetchers must be true or false, "
                            f"not {self.private_fetchers!r}")

    # Derived quantities -------------------------------------------------------------

    @property
    def conv_macs(self) -> int:
        """MAC units of the conv engine (Pi x Po convolvers of K_max x K_max)."""
        return self.conv_pi * self.conv_po * self.conv_k_max * self.conv_k_max

    @property
    def dw_macs(self) -> int:
        return self.dw_channels * self.conv_k_max * self.conv_k_max

    @property
    def pw_macs(self) -> int:
        return self.pw_pi * self.pw_po

    @property
    def axi_data_bytes(self) -> int:
        return self.axi_data_bits // 8

    # Serialization ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> ArchConfig:
        if not isinstance(data, dict):
            raise TypeError(f"Arch description must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown arch parameter(s) {', '.join(unknown)}; known parameters are "
                f"{', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, path) -> ArchConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"Arch file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"Arch file {path} is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @property
    def config_hash(self) -> int:
        """64-bit hash of every parameter but the name and ``private_fetchers`` (which
        changes no program's result or cycles); stamped into program headers."""
        data = self.to_dict()
        data.pop("name")
        data.pop("private_fetchers")
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def replace(self, **changes) -> ArchConfig:
        return dataclasses.replace(self, **changes)
