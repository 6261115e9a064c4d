"""A structural resource estimate of a SESL pipeline (``estimate_sesl_resources``).

It counts what the stages instantiate -- multipliers, adders, ROM and line-buffer bits,
FIFO bits -- and maps memories onto Xilinx BRAM36 shapes (a memory under
:data:`LUTRAM_BITS` bits is assumed to become distributed RAM). It is a first-order
model kept apart from :mod:`boards.database` so that a calibrated model can replace it:
callers use only :func:`estimate_sesl_resources` and :func:`stage_memories`.
"""

from __future__ import annotations

import math

from hw.sesl.config import PipelineConfig, StageConfig

from .plan import stage_dsp

__all__ = ["BRAM36_SHAPES", "LUTRAM_BITS", "bram36", "estimate_sesl_resources",
           "stage_memories"]

#: (depth, width) configurations of one BRAM36 in simple dual-port mode.
BRAM36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                 (512, 72))
#: Memories smaller than this, or at most :data:`LUTRAM_DEPTH` deep, are assumed to map
#: to LUT RAM / ROM.
LUTRAM_BITS = 4096
LUTRAM_DEPTH = 64


def bram36(depth: int, width: int) -> int:
    """BRAM36 blocks of a ``depth x width`` memory (0 when it stays in LUTs)."""
    if _in_luts(depth, width):
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in BRAM36_SHAPES)


def _in_luts(depth: int, width: int) -> bool:
    return depth * width < LUTRAM_BITS or depth <= LUTRAM_DEPTH


def stage_memories(st: StageConfig, cfg: PipelineConfig) -> dict:
    """``{"line_buffer": (depth, width), "weights": ..., "params": ...}`` of a stage."""
    a, wb = cfg.act_bits, cfg.weight_bits
    mems = {}
    if st.is_window:
        c, _, w = st.in_shapes[0]
        mems["line_buffer"] = (st.line_rows * w, c * a)
        if st.op in ("conv", "depthwise"):
            lanes = st.simd * st.pe if st.op == "conv" else st.pe
            mems["weights"] = (st.groups * st.taps * st.chunks, lanes * wb)
        mems["params"] = (st.groups, st.pe * (cfg.acc_bits + cfg.mult_bits + cfg.shift_bits + 1))
    for tensor in st.inputs:
        depth = cfg.fifo_depth(tensor, st.name)
        if depth:
            channels = next(s[0] for t, s in zip(st.inputs, st.in_shapes) if t == tensor)
            mems[f"fifo:{tensor}"] = (depth, channels * a)
    return mems


def estimate_sesl_resources(cfg: PipelineConfig) -> dict:
    """``{"lut", "ff", "dsp", "bram36", "stages": {name: {...}}}`` for a pipeline."""
    total = {"lut": 0, "ff": 0, "dsp": 0, "bram36": 0}
    stages = {}
    a, acc = cfg.act_bits, cfg.acc_bits
    for st in cfg.stages:
        mems = stage_memories(st, cfg)
        blocks = sum(bram36(d, w) for d, w in mems.values())
        lut_mem = sum(math.ceil(d * w / 64) for d, w in mems.values()
                      if _in_luts(d, w))
        if st.is_window:
            lanes_in = st.simd if st.op == "conv" else st.pe
            adders = st.mac_units * acc if st.op == "conv" else st.pe * acc
            scaling = st.pe * (acc + cfg.mult_bits + 4 * a)
            mux = lanes_in * a * max(st.chunks if st.op == "conv" else st.groups, 1) // 2
            control = 250
            lut = adders + scaling + mux + control + lut_mem
            ff = adders + st.mac_units * 2 * a + scaling + st.out_channels * a * 2 + control
        else:
            lanes = st.pe * len(st.inputs)
            lut = lanes * (a + 16) * 3 + st.out_channels * a + 150
            ff = sum(s[0] for s in st.in_shapes) * a + 2 * st.out_channels * a + 100
        dsp = stage_dsp(st)
        stages[st.name] = {"lut": lut, "ff": ff, "dsp": dsp, "bram36": blocks,
                           "memories": {k: {"depth": d, "width": w, "bits": d * w,
                                            "bram36": bram36(d, w)}
                                        for k, (d, w) in mems.items()}}
        total["lut"] += lut
        total["ff"] += ff
        total["dsp"] += dsp
        total["bram36"] += blocks
    total["stages"] = stages
    total["model"] = "compiler.sesl.resources.estimate_sesl_resources (structural, uncalibrated)"
    return total
