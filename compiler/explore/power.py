"""A documented power estimate from resources, clock and activity.

FPGA power is static (leakage of the whole device, whatever the design uses) plus
dynamic power, which is ``C V^2 f`` summed over the toggling nodes. Without a
placed design and switching activity files, the estimate charges each used
resource a dynamic energy per cycle at full activity, scaled by how often it
toggles:

``P = P_static(family, device LUTs)
      + f_MHz * 1e-6 * (e_lut * LUT * a_logic + e_ff * FF * a_logic
                        + e_dsp * DSP * a_mac + e_bram * BRAM36 * a_mem)``  (watts)

with the per-resource energies of :data:`ENERGY_UW_PER_MHZ` (microwatts per MHz at
activity 1: figures of the size the vendors' spreadsheet estimators use for
28 nm 7-series and 16 nm UltraScale+ parts, and the ECP5) and

- ``a_logic`` the logic toggle rate (default 12.5 %, the estimators' default);
- ``a_mac`` the MAC activity: the fraction of cycles the MACs do useful work
  (MAC utilization from the cycle model) times the fraction of non-zero weights
  (the PEs are zero-aware: a zero weight gates the multiplier);
- ``a_mem`` the buffers' access rate (default 0.5: one port busy of two).

Static power scales with the device (:data:`STATIC_W_PER_KLUT` per thousand LUTs of
the part). The model is for comparing designs with each other, not for sign-off:
its absolute figures are of the right order, not measured.
"""

from __future__ import annotations

__all__ = ["ENERGY_UW_PER_MHZ", "STATIC_W_PER_KLUT", "estimate_power"]

#: Dynamic energy per resource in microwatts per MHz at activity 1.
ENERGY_UW_PER_MHZ = {
    "xc7": {"lut": 0.036, "ff": 0.012, "dsp": 4.0, "bram36": 18.0},
    "xcup": {"lut": 0.024, "ff": 0.008, "dsp": 2.6, "bram36": 12.0},
    "ecp5": {"lut": 0.030, "ff": 0.010, "dsp": 3.0, "bram36": 14.0},
}

#: Static (leakage) power per thousand device LUTs, watts.
STATIC_W_PER_KLUT = {"xc7": 0.0012, "xcup": 0.0022, "ecp5": 0.0006}

DEFAULT_LOGIC_ACTIVITY = 0.125
DEFAULT_MEMORY_ACTIVITY = 0.5


def estimate_power(resources: dict, clock_mhz: float, *, family: str = "xcup",
                   device_luts: int | None = None, mac_activity: float = 1.0,
                   logic_activity: float = DEFAULT_LOGIC_ACTIVITY,
                   memory_activity: float = DEFAULT_MEMORY_ACTIVITY) -> dict:
    """Power estimate in watts: ``{"static_w", "dynamic_w", "total_w", "terms"}``.

    Parameters
    ----------
    resources : dict
        ``lut``, ``ff``, ``dsp`` and ``bram36`` (or ``bram``) of the design.
    clock_mhz : float
    family : str
        ``"xc7"``, ``"xcup"`` or ``"ecp5"``.
    device_luts : int or None
        LUTs of the whole part (static power); ``None`` counts the design's LUTs only.
    mac_activity : float
        Fraction of cycles the MACs toggle (utilization x weight density), 0 to 1.
    """
    if family not in ENERGY_UW_PER_MHZ:
        raise ValueError(f"Unknown family {family!r}; known: {', '.join(ENERGY_UW_PER_MHZ)}")
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz!r}")
    for name, value in (("mac_activity", mac_activity), ("logic_activity", logic_activity),
                        ("memory_activity", memory_activity)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], not {value!r}")
    e = ENERGY_UW_PER_MHZ[family]
    bram = resources.get("bram36", resources.get("bram", 0)) or 0
    terms = {
        "lut": e["lut"] * resources.get("lut", 0) * logic_activity,
        "ff": e["ff"] * resources.get("ff", 0) * logic_activity,
        "dsp": e["dsp"] * resources.get("dsp", 0) * mac_activity,
        "bram": e["bram36"] * bram * memory_activity,
    }
    terms = {k: v * clock_mhz * 1e-6 for k, v in terms.items()}
    luts = device_luts if device_luts is not None else resources.get("lut", 0)
    static = STATIC_W_PER_KLUT[family] * luts / 1000.0
    dynamic = sum(terms.values())
    return {"static_w": static, "dynamic_w": dynamic, "total_w": static + dynamic,
            "terms": terms}
