"""Run a SESL pipeline's RTL under Verilator (cocotb) on frames of integers.

:func:`run_pipeline_rtl` elaborates :class:`hw.sesl.SeslPipeline`, builds it (cached
per design), streams the frames back to back (optionally with random idle cycles on
the input and random back-pressure on the output) and returns every output pixel with
the cycle it left the pipeline. The wait is bounded: a pipeline that stops producing
(a deadlock) ends the run with ``finished = False`` instead of hanging.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.sesl.config import PipelineConfig

__all__ = ["RtlFrames", "pack_frames", "run_pipeline_rtl", "unpack_frames"]


@dataclass
class RtlFrames:
    """Result of :func:`run_pipeline_rtl`.

    Members
    -------
    outputs : ndarray
        ``(frames, M, OH, OW)`` int64 (missing pixels of an unfinished run are 0).
    cycles : list of int
        Cycle of every output beat, from the first input beat's cycle.
    frame_done : list of int
        Cycle of each frame's last output beat.
    finished : bool
        Whether every output pixel arrived within the cycle bound.
    beats : int
        Output beats received.
    """

    outputs: np.ndarray
    cycles: list
    frame_done: list
    finished: bool
    beats: int

    def steady_cycles(self) -> float:
        """Mean cycles between consecutive frames' last outputs (after the first)."""
        done = self.frame_done
        if len(done) < 2:
            raise ValueError("steady state needs at least two finished frames")
        return (done[-1] - done[0]) / (len(done) - 1)


def pack_frames(frames: np.ndarray, bits: int) -> list[int]:
    """``(N, C, H, W)`` integers -> one word per pixel (lane 0 lowest), raster order."""
    n, c, h, w = frames.shape
    mask = (1 << bits) - 1
    words = []
    for f in range(n):
        for y in range(h):
            for x in range(w):
                word = 0
                for ch in range(c):
                    word |= (int(frames[f, ch, y, x]) & mask) << (ch * bits)
                words.append(word)
    return words


def unpack_frames(words, shape, bits: int, frames: int) -> np.ndarray:
    c, h, w = shape
    out = np.zeros((frames, c, h, w), dtype=np.int64)
    mask = (1 << bits) - 1
    for k, word in enumerate(words[:frames * h * w]):
        f, rest = divmod(k, h * w)
        y, x = divmod(rest, w)
        for ch in range(c):
            v = (word >> (ch * bits)) & mask
            out[f, ch, y, x] = v - (1 << bits) if v >> (bits - 1) else v
    return out


def run_pipeline_rtl(cfg: PipelineConfig, frames: np.ndarray, *, p_idle: float = 0.0,
                     p_stall: float = 0.0, seed: int = 0, max_cycles: int | None = None,
                     build_name: str | None = None, timeout_s: float = 900.0) -> RtlFrames:
    """Stream ``frames`` (``(N, C, H, W)`` integers) through the RTL of ``cfg``.

    Parameters
    ----------
    p_idle : float
        Probability that the input is idle (``valid`` low) in a cycle.
    p_stall : float
        Probability that the output is not ready in a cycle.
    max_cycles : int, optional
        Bound of the run (default: generous, from the frame count and stage timing).
    """
    from hw.sesl.pipeline import SeslPipeline
    from sim.rtl import run_cocotb

    frames = np.asarray(frames)
    if frames.ndim != 4 or tuple(frames.shape[1:]) != tuple(cfg.input_shape):
        raise ValueError(f"frames must have shape (N, {', '.join(map(str, cfg.input_shape))}), "
                         f"not {frames.shape!r}")
    n = frames.shape[0]
    _, oh, ow = cfg.output_shape
    if max_cycles is None:
        slowest = max([cfg.input_shape[1] * cfg.input_shape[2]]
                      + [st.cycles_per_frame for st in cfg.stages])
        stretch = 1.0 / max(1e-3, (1 - p_idle) * (1 - p_stall))
        max_cycles = int(stretch * (n + 3) * (slowest + 64) * 2) + 20_000
    with tempfile.TemporaryDirectory(prefix="sesl-rtl-") as tmp:
        data = Path(tmp) / "data.json"
        result = Path(tmp) / "result.json"
        data.write_text(json.dumps({"inputs": pack_frames(frames, cfg.act_bits),
                                    "n_out": n * oh * ow}))
        run_cocotb(SeslPipeline(cfg), test_module="compiler.sesl.rtl_bench",
                   build_name=build_name or f"sesl-{_ident(cfg.name)}",
                   test_args={"data": str(data), "result": str(result), "seed": seed,
                              "p_idle": p_idle, "p_stall": p_stall,
                              "max_cycles": max_cycles},
                   timeout_s=timeout_s)
        got = json.loads(result.read_text())
    words, cycles = got["words"], got["cycles"]
    outputs = unpack_frames(words, cfg.output_shape, cfg.act_bits, n)
    per = oh * ow
    frame_done = [cycles[(f + 1) * per - 1] for f in range(len(words) // per)]
    return RtlFrames(outputs, cycles, frame_done, len(words) == n * per, len(words))


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)[:40]
