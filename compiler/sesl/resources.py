"""The resource estimate of a SESL pipeline (``estimate_sesl_resources``).

Memories are counted from what the stages instantiate -- ROM, line-buffer and FIFO
words -- and placed where Yosys ``synth_xilinx`` puts them (:func:`memory_mapping`: the
cheapest of RAMB18 / RAMB36 shapes, LUT RAM cells and soft logic, with the costs of
Yosys ``memory_libmap``; block RAM counted in BRAM36, a RAMB18 as a half); DSPs are the
stages' multipliers (:func:`compiler.sesl.plan.stage_dsp`, the join stages' ones
included: :func:`join_dsp`). Logic (LUT, FF) is a linear model per stage
(:func:`stage_logic`) whose coefficients (:data:`LOGIC_COEFFS`) are fitted to Yosys
``synth_xilinx`` figures of synthesized pipelines, stage by stage
(``benchmarks/bench_sesl_synth.py --fit``, which also states the error on pipelines left
out of the fit). Callers use only :func:`estimate_sesl_resources`,
:func:`stage_memories` and :func:`memory_mapping`.
"""

from __future__ import annotations

import math

from hw.sesl.config import PipelineConfig, StageConfig

from .plan import join_dsp, stage_dsp

__all__ = ["BRAM18_SHAPES", "BRAM36_SHAPES", "LOGIC_COEFFS", "LOGIC_FEATURES", "LUTRAM_BITS",
           "bram36", "estimate_sesl_resources", "join_dsp", "logic_features",
           "memory_mapping", "stage_logic", "stage_memories"]

#: (depth, width) configurations of one BRAM36 in simple dual-port mode.
BRAM36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                 (512, 72))
#: (depth, width) configurations of one BRAM18 (half a BRAM36) in simple dual-port mode.
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: (depth, width) of one LUT RAM cell in simple dual-port mode (RAM32M as 32 x 6, RAM64M
#: as 64 x 3; four LUTs each).
LUTRAM_SHAPES = ((32, 6), (64, 3))
#: Costs Yosys ``memory_libmap`` weighs for ``synth_xilinx -family xc7``
#: (``techlibs/xilinx/{brams,lutrams}_*.txt``): a RAMB18, a RAMB36, a LUT RAM cell, and
#: per bit of a memory left to soft logic; the cheapest mapping is taken. The soft-logic
#: cost of a ROM bit is measured (``synth_xilinx`` on ROMs alone, sync read with enable):
#: a 640 x 8 ROM stays in logic (111 LUT6 / MUXF), so a bit costs under 129 / 5120; a
#: 288 x 128 ROM takes 2 RAMB36, so it costs over 514 / 36864: 1/64 lies between. ROMs
#: have no LUT RAM mapping (none was used for one).
COST_BRAM18, COST_BRAM36, COST_LUTRAM = 129, 257, 8
LOGIC_COST_ROM, LOGIC_COST_RAM = 1 / 64, 1.0
#: Kept for callers of the former rule (a memory under this many bits, or at most
#: :data:`LUTRAM_DEPTH` deep, stays out of block RAM); :func:`memory_mapping` replaces it.
LUTRAM_BITS = 4096
LUTRAM_DEPTH = 64


def memory_mapping(depth: int, width: int, rom: bool = False) -> dict:
    """Where Yosys puts a ``depth x width`` memory with one write port (none for a ROM)
    and one registered read port: ``{"kind": "bram" | "lutram" | "logic", "bram18",
    "lutram", "logic_bits"}`` -- the cheapest of block RAM (RAMB18 or RAMB36 shapes,
    :data:`COST_BRAM18`, :data:`COST_BRAM36`), LUT RAM (RAMs only: :data:`LUTRAM_SHAPES`
    cells at :data:`COST_LUTRAM`) and soft logic (:data:`LOGIC_COST_ROM` or
    :data:`LOGIC_COST_RAM` per bit), as ``memory_libmap`` chooses."""
    bits = depth * width
    n18 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in BRAM18_SHAPES)
    n36 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in BRAM36_SHAPES)
    options = [(COST_BRAM18 * n18, "bram", n18, 0), (COST_BRAM36 * n36, "bram", 2 * n36, 0)]
    if not rom:
        cells = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in LUTRAM_SHAPES)
        options.append((COST_LUTRAM * cells, "lutram", 0, cells))
    logic = bits * (LOGIC_COST_ROM if rom else LOGIC_COST_RAM)
    options.append((logic, "logic", 0, 0))
    _cost, kind, bram18, lutram = min(options, key=lambda o: (o[0], o[1] != "logic"))
    return {"kind": kind, "bram18": bram18, "lutram": lutram,
            "logic_bits": bits if kind == "logic" else 0}


def bram36(depth: int, width: int, rom: bool = False) -> float:
    """Block RAM of a ``depth x width`` memory in BRAM36 (a RAMB18 counts a half; 0 when
    it maps to LUT RAM or logic: :func:`memory_mapping`)."""
    return memory_mapping(depth, width, rom)["bram18"] / 2


def _is_rom(kind: str) -> bool:
    return kind in ("weights", "params")


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
LOGIC_FEATURES = ("window", "scaling_lanes", "shifting_lanes", "mac_units", "select_bits",
                  "register_bits", "join_lanes", "join_bits", "lutram_cells",
                  "rom_logic_bits")
#: Per-feature LUT and FF coefficients of :func:`stage_logic` (see :data:`LOGIC_MODEL`).
LOGIC_COEFFS = {
    "lut": (102.29, 76.65, 155.51, 6.8, 0.6, 0.43, 10.45, 0.73, 1.37, 0.08),
    "ff": (143.46, 73.79, 13.5, 5.59, 0.41, 0.96, 6.56, 0.92, 2.37, 0.01),
}
#: Where :data:`LOGIC_COEFFS` come from.
LOGIC_MODEL = ("logic fitted to Yosys synth_xilinx per stage on the small MobileNetV2 and "
               "ResNet-style pipelines (32 stages; LUT -3 % / +3 %, FF -1 % / +1 %; fitted "
               "on one, checked on the other: LUT -15 % / +6 %, FF -4 % / +7 %); memories "
               "mapped as Yosys memory_libmap chooses")


def _memory_maps(st: StageConfig, cfg: PipelineConfig) -> dict:
    return {k: memory_mapping(d, w, _is_rom(k))
            for k, (d, w) in stage_memories(st, cfg).items()}


def logic_features(st: StageConfig, cfg: PipelineConfig) -> list:
    """The quantities a stage's logic grows with (:data:`LOGIC_FEATURES`): a window
    stage's fixed control (1), its scaling lanes (``pe``: bias add, the 2-DSP product's
    adder, rounding, clamp), the lanes among them whose shift changes from one channel
    group to the next (a barrel shifter; with one group, or one shift for all channels,
    the parameter ROM is a constant and the shift is wiring), its MAC units (products' adder tree and
    accumulators), the bits its lane select chooses from (none when one chunk is the
    whole pixel), its register bits (the output assembly and output register; the
    one-pixel input register and its read register in an unbuffered FIRB stage); a join stage's lanes
    (``pe`` per input) and its datapath bits (one holding register per input, the
    output assembly and register, the output register of its skip FIFOs); and, for
    every stage, the LUT RAM cells of its RAMs and the ROM bits left to soft logic
    (:func:`memory_mapping`)."""
    a = cfg.act_bits
    maps = _memory_maps(st, cfg)
    cells = sum(m["lutram"] for m in maps.values())
    rom_bits = sum(m["logic_bits"] for k, m in maps.items() if _is_rom(k))
    if st.is_window:
        lanes_in = st.simd if st.op == "conv" else st.pe
        n_sel = st.chunks if st.op == "conv" else st.groups
        select = lanes_in * a * n_sel if n_sel > 1 else 0
        regs = 2 * st.out_channels * a + (0 if st.buffered else 2 * st.in_channels * a)
        shifting = st.pe if st.groups > 1 and len(set(st.s)) > 1 else 0
        return [1, st.pe, shifting, st.mac_units, select, regs, 0, 0, cells, rom_bits]
    fifo_bits = sum(w for k, (_, w) in stage_memories(st, cfg).items()
                    if k.startswith("fifo:"))
    bits = sum(s[0] for s in st.in_shapes) * a + 2 * st.out_channels * a + fifo_bits
    return [0, 0, 0, 0, 0, 0, st.pe * len(st.inputs), bits, cells, rom_bits]


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
        maps = _memory_maps(st, cfg)
        blocks = sum(m["bram18"] for m in maps.values()) / 2
        logic = stage_logic(st, cfg)
        dsp = stage_dsp(st)
        stages[st.name] = {"lut": logic["lut"], "ff": logic["ff"], "dsp": dsp,
                           "bram36": blocks,
                           "memories": {k: {"depth": d, "width": w, "bits": d * w,
                                            "maps_to": maps[k]["kind"],
                                            "bram36": maps[k]["bram18"] / 2}
                                        for k, (d, w) in mems.items()}}
        total["lut"] += logic["lut"]
        total["ff"] += logic["ff"]
        total["dsp"] += dsp
        total["bram36"] += blocks
    total["stages"] = stages
    total["model"] = f"compiler.sesl.resources.estimate_sesl_resources ({LOGIC_MODEL})"
    return total
