"""The resource estimate of a SESL pipeline (``estimate_sesl_resources``).

Memories are counted from what the stages instantiate -- ROM, line-buffer and FIFO
words -- and mapped onto Xilinx BRAM36 shapes (a memory under :data:`LUTRAM_BITS` bits
or at most :data:`LUTRAM_DEPTH` deep is assumed to become distributed RAM); DSPs are
the stages' multipliers (:func:`compiler.sesl.plan.stage_dsp`, the join stages' ones
included: :func:`join_dsp`). Logic (LUT, FF) is a
linear model per stage (:func:`stage_logic`) whose coefficients
(:data:`LOGIC_COEFFS`) are fitted to Yosys ``synth_xilinx`` figures of synthesized
pipelines, stage by stage (``benchmarks/bench_sesl_synth.py --fit``, which also states
the error on pipelines left out of the fit). Callers use only
:func:`estimate_sesl_resources` and :func:`stage_memories`.
"""

from __future__ import annotations

import math

from hw.sesl.config import PipelineConfig, StageConfig

from .plan import join_dsp, stage_dsp

__all__ = ["BRAM36_SHAPES", "LOGIC_COEFFS", "LOGIC_FEATURES", "LUTRAM_BITS", "bram36",
           "estimate_sesl_resources", "join_dsp", "logic_features", "stage_logic",
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
        c = st.in_channels
        if st.line_words:
            mems["line_buffer"] = (st.line_words, c * a)
        if st.op in ("conv", "depthwise"):
            lanes = st.simd * st.pe if st.op == "conv" else st.pe
            mems["weights"] = (st.groups * st.taps * st.chunks, lanes * wb)
        mems["params"] = (st.groups, st.pe * (cfg.acc_bits + cfg.mult_bits + cfg.shift_bits))
    for tensor in st.inputs:
        depth = cfg.fifo_depth(tensor, st.name)
        if depth:
            channels = next(s[0] for t, s in zip(st.inputs, st.in_shapes) if t == tensor)
            mems[f"fifo:{tensor}"] = (depth, channels * a)
    return mems


#: Names of :func:`logic_features`, in order.
LOGIC_FEATURES = ("window", "scaling_lanes", "mac_units", "datapath_bits", "join_lanes",
                  "lutram_words")
#: Per-feature LUT and FF coefficients of :func:`stage_logic` (see :data:`LOGIC_MODEL`).
LOGIC_COEFFS = {
    "lut": (357.7, 0.0, 0.0, 0.58, 15.88, 7.34),
    "ff": (117.89, 0.0, 14.15, 0.99, 21.75, 3.87),
}
#: Where :data:`LOGIC_COEFFS` come from.
LOGIC_MODEL = ("logic fitted to Yosys synth_xilinx per stage on 4 small pipelines, 10 "
               "stages; leave-one-pipeline-out error LUT -33..+36 %, FF -21..+8 %; "
               "-5 % LUT, -11 % FF on a 9-stage pipeline left out")


def logic_features(st: StageConfig, cfg: PipelineConfig) -> list:
    """The quantities a stage's logic grows with (:data:`LOGIC_FEATURES`): a window
    stage's fixed control (1), its scaling lanes (``pe``: bias, multiply, round,
    clamp), its MAC units (products and adder tree), its datapath bits (the bits its
    lane select chooses from, its output assembly, the one-pixel input registers of an
    unbuffered FIRB stage); a join stage's lanes (``pe`` per input); the 64-bit LUT RAM
    words of memories too small for block RAM (skip FIFOs are not part of a stage)."""
    a = cfg.act_bits
    lut_words = sum(math.ceil(d * w / 64) for k, (d, w) in stage_memories(st, cfg).items()
                    if _in_luts(d, w) and not k.startswith("fifo:"))
    if st.is_window:
        lanes_in = st.simd if st.op == "conv" else st.pe
        n_sel = st.chunks if st.op == "conv" else st.groups
        bits = lanes_in * a * n_sel + st.out_channels * a \
            + (0 if st.buffered else 2 * st.in_channels * a)
        return [1, st.pe, st.mac_units, bits, 0, lut_words]
    return [0, 0, 0, 0, st.pe * len(st.inputs), lut_words]


def stage_logic(st: StageConfig, cfg: PipelineConfig) -> dict:
    """``{"lut", "ff"}`` of a stage: :data:`LOGIC_COEFFS` times :func:`logic_features`."""
    x = logic_features(st, cfg)
    return {k: round(sum(c * v for c, v in zip(LOGIC_COEFFS[k], x)))
            for k in ("lut", "ff")}


def estimate_sesl_resources(cfg: PipelineConfig) -> dict:
    """``{"lut", "ff", "dsp", "bram36", "stages": {name: {...}}}`` for a pipeline."""
    total = {"lut": 0, "ff": 0, "dsp": 0, "bram36": 0}
    stages = {}
    for st in cfg.stages:
        mems = stage_memories(st, cfg)
        blocks = sum(bram36(d, w) for d, w in mems.values())
        logic = stage_logic(st, cfg)
        dsp = stage_dsp(st)
        stages[st.name] = {"lut": logic["lut"], "ff": logic["ff"], "dsp": dsp,
                           "bram36": blocks,
                           "memories": {k: {"depth": d, "width": w, "bits": d * w,
                                            "bram36": bram36(d, w)}
                                        for k, (d, w) in mems.items()}}
        total["lut"] += logic["lut"]
        total["ff"] += logic["ff"]
        total["dsp"] += dsp
        total["bram36"] += blocks
    total["stages"] = stages
    total["model"] = f"compiler.sesl.resources.estimate_sesl_resources ({LOGIC_MODEL})"
    return total
