"""The quantization report: per-layer scales, shifts, sparsity and SNR.

Filled by :func:`compiler.passes.quantize.quantize` (or the QDQ import) and
completed by :func:`compiler.runner.compare_with_onnx` (SNR, top-1 agreement).
Serializes to JSON and prints as a table.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = ["LayerReport", "QuantReport"]


def _json_float(x):
    """JSON has no inf/NaN: encode them as strings."""
    if x is None:
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    return x


@dataclass
class LayerReport:
    """One layer's quantization.

    Parameters
    ----------
    name, kind : str
    output_scale : float
        Step of the output tensor.
    frac_bits : int or None
        ``-log2(output_scale)`` when the scale is a power of two (dynamic fixed point).
    m_min, m_max, s_min, s_max : int
        Range of the requantization multipliers and shifts (per channel or per layer).
    per_channel : bool
        Whether there is one multiplier and shift per output channel (else one per layer).
    lo, hi : int
        Output clamp.
    weight_scheme : str or None
        For weighted layers.
    sparsity : float or None
        Fraction of zero integer weights.
    acc_bound : int or None
        Proven worst-case accumulator magnitude.
    snr_db : float or None
        SNR of the dequantized golden output against the float reference.
    reference : str or None
        What ``snr_db`` was measured against (``"onnxruntime"`` or ``"float IR"``).
    """

    name: str
    kind: str
    output_scale: float
    frac_bits: int | None
    m_min: int
    m_max: int
    s_min: int
    s_max: int
    per_channel: bool
    lo: int
    hi: int
    weight_scheme: str | None = None
    sparsity: float | None = None
    acc_bound: int | None = None
    snr_db: float | None = None
    reference: str | None = None


@dataclass
class QuantReport:
    """What quantization did to a graph and how close the result stays to float.

    Parameters
    ----------
    model : str
    act_bits, weight_bits : int
    weight_scheme : str
    scale_mode : str
        ``"per_channel"``, ``"per_layer"``, ``"pot"`` (dynamic fixed point) or
        ``"qdq"`` (scales imported from a QDQ model).
    calibration : str
        Where the calibration samples came from.
    calibration_samples : int
    layers : list of LayerReport
    final_snr_db : dict of str to float
        Per graph output, once compared.
    top1_agreement : float or None
        Fraction of samples whose arg-max matches the float model's.
    samples_compared : int
    warnings : list of str
    extra : dict
        Free-form figures (timings, QDQ agreement fraction).
    """

    model: str
    act_bits: int
    weight_bits: int
    weight_scheme: str
    scale_mode: str
    calibration: str
    calibration_samples: int
    layers: list[LayerReport] = field(default_factory=list)
    final_snr_db: dict[str, float] = field(default_factory=dict)
    top1_agreement: float | None = None
    samples_compared: int = 0
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def layer(self, name: str) -> LayerReport:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"No layer named {name!r} in the quantization report")

    @property
    def min_final_snr_db(self) -> float | None:
        return min(self.final_snr_db.values()) if self.final_snr_db else None

    def to_dict(self) -> dict:
        data = asdict(self)
        for row in data["layers"]:
            for key, value in row.items():
                row[key] = _json_float(value)
        data["final_snr_db"] = {k: _json_float(v) for k, v in self.final_snr_db.items()}
        data["extra"] = {k: _json_float(v) for k, v in self.extra.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def table(self) -> str:
        """A fixed-width per-layer table followed by the summary lines."""
        head = (f"{'layer':<28} {'kind':<9} {'scale':>10} {'fl':>4} {'m':>13} {'s':>7} "
                f"{'lo..hi':>11} {'sparse':>6} {'SNR dB':>7}")
        lines = [(f"Quantization of {self.model}: act {self.act_bits} b, weights "
                 f"{self.weight_bits} b {self.weight_scheme}, scales {self.scale_mode}, "
                 f"calibration {self.calibration} ({self.calibration_samples} samples)"),
                 head, "-" * len(head)]
        for r in self.layers:
            m = f"{r.m_min}" if r.m_min == r.m_max else f"{r.m_min}..{r.m_max}"
            s = f"{r.s_min}" if r.s_min == r.s_max else f"{r.s_min}..{r.s_max}"
            fl = "" if r.frac_bits is None else str(r.frac_bits)
            sp = "" if r.sparsity is None else f"{100 * r.sparsity:5.1f}%"
            snr = "" if r.snr_db is None else f"{r.snr_db:7.2f}"
            name = r.name if len(r.name) <= 28 else "..." + r.name[-25:]
            lines.append(f"{name:<28} {r.kind:<9} {r.output_scale:>10.4g} {fl:>4} {m:>13} "
                         f"{s:>7} {f'{r.lo}..{r.hi}':>11} {sp:>6} {snr:>7}")
        for out, snr in self.final_snr_db.items():
            lines.append(f"final SNR ({out}): {snr:.2f} dB over {self.samples_compared} samples")
        if self.top1_agreement is not None:
            lines.append(f"top-1 agreement with float: {100 * self.top1_agreement:.1f}%")
        for key, value in self.extra.items():
            lines.append(f"{key}: {value}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)
