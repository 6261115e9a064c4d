"""SESL mapping: folding under a budget, FIFO depths and the cycle model.

Everything here is analytical: the stages' timing rules come from
:mod:`hw.sesl.config` (the same numbers the RTL generators use) and nothing is
simulated to size a FIFO.

Folding
    Each stage starts at one multiplier; the pipeline's slowest stage gets the
    next-cheaper folding that makes it faster (input-channel ``simd`` x output-channel
    ``pe``, divisors of the channel counts first), as long as the DSP budget holds or
    until a ``target_fps`` is reached. Stages faster than the bottleneck are then
    folded back to the cheapest folding that keeps them at or below it.
FIFO depths
    A join (residual add, concat) pairs pixel ``q`` of each input. Composing each
    stage's window ("output pixel ``(oy, ox)`` needs input pixel ``need(oy, ox)``")
    from the join back to the tensor where the branches fork gives, per branch, the
    fork pixel it must have seen to deliver ``q``. The branch that needs fewer is the
    skip; its FIFO holds the difference (the main branch filling its line buffers),
    plus the pixels that arrive during the main branch's pipeline latency.
Cycle model
    Steady state: a frame every ``max(stage cycles per frame, input pixels)`` cycles.
    First-frame latency: each stage issues output pixel ``q`` at
    ``s(q) = max(ready(q), s(q-1) + cycles_per_pixel)``, evaluated in closed form
    (``s(q) = q c + cummax(ready(q) - q c)``) along the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from compiler.errors import MappingError
from hw.sesl.config import JOIN_LATENCY, PipelineConfig, StageConfig

__all__ = [
    "FIFO_LATENCY",
    "Budget",
    "fifo_depths",
    "fold",
    "join_dsp",
    "join_lags",
    "latency_model",
    "stage_dsp",
    "steady_cycles",
]

#: Cycles a beat spends in a skip FIFO (write to readable) when the FIFO is empty.
FIFO_LATENCY = 2
#: Extra beats each skip FIFO gets beyond the computed lag (the join's and the fork's
#: holding registers are not counted on the other side either).
FIFO_MARGIN = 2


@dataclass(frozen=True)
class Budget:
    """What the folding may spend: DSPs and, when known, block RAM (bits)."""

    dsp: int
    memory_bits: int | None = None
    source: str = ""


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pow2(v: int) -> bool:
    return v > 0 and not v & (v - 1)


def join_dsp(st: StageConfig) -> int:
    """DSP slices of a join stage: ``pe`` multipliers per input of an add, ``pe`` for a
    concat (its constant changes with the input), none where the multiplier is a
    constant power of two (a shift). Yosys maps these products to DSP slices."""
    if st.is_window:
        return 0
    if st.op == "add":
        return st.pe * sum(not _pow2(mult) for mult in st.input_m)
    return st.pe * (len(set(st.input_m)) > 1 or not _pow2(st.input_m[0]))


def stage_dsp(st: StageConfig) -> int:
    """DSP estimate of a stage: a window stage's MAC multipliers and two per scaling
    lane (a 32 x 16 product takes two DSP48 slices); an unrolled stage's constant
    multipliers (weights that are not shifts or shift-adds) and two per output channel;
    a join stage's multipliers (:func:`join_dsp`)."""
    if not st.is_window:
        return join_dsp(st)
    if st.unrolled:  # constant multipliers: only weights of three or more NAF digits
        from hw.sesl.unrolled import naf_digits

        return sum(1 for v in st.weights if len(naf_digits(v)) > 2) + 2 * st.out_channels
    return st.mac_units + 2 * st.pe


def _options(st: StageConfig) -> list[tuple[int, int]]:
    """Candidate ``(simd, pe)`` foldings, cheapest first."""
    if st.unrolled:
        return [(1, 1)]
    if st.op == "conv":
        c, m = st.in_channels, st.out_channels
        opts = {(s, p) for s in _divisors(c) for p in _divisors(m)}
    else:
        c = st.out_channels
        opts = {(1, p) for p in _divisors(c)}
    return sorted(opts, key=lambda o: (o[0] * o[1], -o[0]))


def steady_cycles(stages, input_pixels: int) -> int:
    """Cycles per frame at steady state: the slowest stage, or the input at one pixel
    per cycle."""
    return max([input_pixels] + [st.cycles_per_frame for st in stages])


def fold(stages: list[StageConfig], budget: Budget, *, input_pixels: int,
         clock_mhz: float, target_fps: float | None = None) -> list[StageConfig]:
    """Choose every stage's folding (see the module docstring).

    Raises
    ------
    MappingError
        The budget cannot give every stage its smallest folding (naming the stage
        where it runs out).
    """
    stages = [replace(st, simd=1, pe=1) for st in stages]
    used = 0
    for st in stages:
        used += stage_dsp(st)
        if used > budget.dsp:
            raise MappingError(
                f"Stage {st.name!r} ({st.layer_kind}): the DSP budget ({budget.dsp}"
                f"{', ' + budget.source if budget.source else ''}) is exhausted before every "
                f"layer has its own engine ({used} DSPs needed up to this layer at the "
                f"smallest folding); give a larger --budget-dsp or board, or use the hybrid "
                f"or SEML mode (--mode seml)")
    goal = None if target_fps is None else clock_mhz * 1e6 / target_fps
    while True:
        cycles = steady_cycles(stages, input_pixels)
        if goal is not None and cycles <= goal:
            break
        k = max(range(len(stages)), key=lambda i: stages[i].cycles_per_frame)
        st = stages[k]
        if st.cycles_per_frame < input_pixels:
            break
        better = [replace(st, simd=s, pe=p) for s, p in _options(st)]
        better = [b for b in better if b.cycles_per_frame < st.cycles_per_frame]
        if not better:
            break
        nxt = min(better, key=lambda b: (stage_dsp(b), b.cycles_per_frame))
        if used - stage_dsp(st) + stage_dsp(nxt) > budget.dsp:
            break
        used += stage_dsp(nxt) - stage_dsp(st)
        stages[k] = nxt
    # Stages faster than the bottleneck: the cheapest folding that keeps up.
    bound = steady_cycles(stages, input_pixels)
    for k, st in enumerate(stages):
        fits = [replace(st, simd=s, pe=p) for s, p in _options(st)]
        fits = [f for f in fits if f.cycles_per_frame <= bound]
        if fits:
            stages[k] = min(fits, key=lambda f: (stage_dsp(f), f.cycles_per_frame))
    return stages


# Joins and FIFO depths ------------------------------------------------------------------

def _producers(stages):
    return {st.output: st for st in stages}


def _ancestors(tensor, producers):
    seen = []
    stack = [tensor]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.append(t)
        st = producers.get(t)
        if st is not None:
            stack.extend(st.inputs)
    return seen


def _need(st: StageConfig, rows, cols):
    """Vectorized :meth:`StageConfig.need`."""
    if not st.is_window:
        return rows, cols
    _, h, w = st.in_shapes[0]
    return (np.minimum(h - 1, rows * st.stride[0] - st.pads[0] + st.kernel[0] - 1),
            np.minimum(w - 1, cols * st.stride[1] - st.pads[1] + st.kernel[1] - 1))


def _need_index(tensor, fork, producers, rows, cols, width):
    """For pixels ``(rows, cols)`` of ``tensor``: the flat index of the last pixel of
    ``fork`` (``width`` pixels per row) they depend on (the max over paths)."""
    if tensor == fork:
        return rows * width + cols
    st = producers[tensor]
    best = None
    for t in st.inputs:
        if fork not in _ancestors(t, producers):
            continue
        r, c = _need(st, rows, cols)
        flat = _need_index(t, fork, producers, r, c, width)
        best = flat if best is None else np.maximum(best, flat)
    return best


def join_lags(stages, input_tensor, input_shape):
    """Per join input edge ``(tensor, join)``: ``(fork tensor, lag in fork pixels,
    other branches' stages)``; the lag is how many more fork pixels the slowest other
    branch needs than this one, at the worst output pixel."""
    producers = _producers(stages)
    widths = {input_tensor: input_shape[2]}
    for st in stages:
        widths[st.output] = st.out_shape[2]
    result = {}
    for st in stages:
        if st.is_window:
            continue
        anc = [_ancestors(t, producers) for t in st.inputs]
        common = [t for t in anc[0] if all(t in a for a in anc[1:])]
        if not common:
            continue
        order = {input_tensor: -1} | {s.output: i for i, s in enumerate(stages)}
        fork = max(common, key=lambda t: order[t])
        _, oh, ow = st.out_shape
        rows, cols = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        flats = []
        for t in st.inputs:
            flats.append(_need_index(t, fork, producers, rows.ravel(), cols.ravel(),
                                     widths[fork]))
        for k, t in enumerate(st.inputs):
            others = [f for j, f in enumerate(flats) if j != k]
            lag = int(max(0, np.max(np.max(others, axis=0) - flats[k])))
            branch = [s for j, t2 in enumerate(st.inputs) if j != k
                      for s in _path(t2, fork, producers)]
            result[(t, st.name)] = (fork, lag, branch)
    return result


def _path(tensor, fork, producers):
    out = []
    stack = [tensor]
    while stack:
        t = stack.pop()
        if t == fork or t not in producers:
            continue
        st = producers[t]
        if st not in out:
            out.append(st)
        stack.extend(x for x in st.inputs if fork in _ancestors(x, producers))
    return out


def fifo_depths(stages, input_tensor, input_shape, frame_cycles: int):
    """``[(tensor, join stage, depth)]`` for every join input edge that needs a FIFO."""
    fifos = []
    pixels = {input_tensor: input_shape[1] * input_shape[2]}
    for st in stages:
        pixels[st.output] = st.out_pixels
    for (tensor, join), (fork, lag, branch) in join_lags(stages, input_tensor,
                                                          input_shape).items():
        if lag <= 0:
            continue
        interval = frame_cycles / pixels[fork]
        delay = sum(s.latency + s.cycles_per_pixel for s in branch) + JOIN_LATENCY
        slack = math.ceil(delay / interval)
        fifos.append((tensor, join, lag + slack + FIFO_MARGIN))
    return fifos


# First-frame latency ----------------------------------------------------------------------

def latency_model(cfg: PipelineConfig) -> dict:
    """Cycle of each output pixel of the first frame (input at one pixel per cycle from
    cycle 0, output always ready); returns ``{"latency_cycles", "first_output", ...}``."""
    times = {}
    _, h0, w0 = cfg.input_shape
    times[cfg.input] = np.arange(h0 * w0, dtype=np.int64)
    per_stage = {}
    for st in cfg.stages:
        _, oh, ow = st.out_shape
        rows, cols = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        ready = np.zeros(oh * ow, dtype=np.int64)
        for t, shape in zip(st.inputs, st.in_shapes):
            arrive = times[t] + FIFO_LATENCY * (cfg.fifo_depth(t, st.name) > 0)
            if st.is_window:
                r, c = _need(st, rows, cols)
                idx = r * shape[2] + c
                ready = np.maximum(ready, arrive[idx] + 1)
            else:
                ready = np.maximum(ready, arrive + 1)
        cpp = st.cycles_per_pixel
        q = np.arange(oh * ow, dtype=np.int64)
        start = q * cpp + np.maximum.accumulate(ready - q * cpp)
        times[st.output] = start + cpp - 1 + st.latency
        per_stage[st.name] = int(times[st.output][-1])
    out = times[cfg.output]
    return {"latency_cycles": int(out[-1]) + 1, "first_output": int(out[0]),
            "stage_done": per_stage}


def model_summary(cfg: PipelineConfig) -> dict:
    """Steady-state cycles per frame, first-frame latency and MAC figures."""
    pixels = cfg.input_shape[1] * cfg.input_shape[2]
    cycles = steady_cycles(cfg.stages, pixels)
    macs = sum(st.macs_per_frame for st in cfg.stages)
    units = sum(st.mac_units for st in cfg.stages)
    lat = latency_model(cfg)
    bottleneck = max(cfg.stages, key=lambda st: st.cycles_per_frame)
    return {"cycles_per_frame": cycles, "latency_cycles": lat["latency_cycles"],
            "macs_per_frame": macs, "mac_units": units,
            "mac_utilization": macs / (cycles * units) if units else 0.0,
            "bottleneck": bottleneck.name if bottleneck.cycles_per_frame >= pixels
            else "input"}
