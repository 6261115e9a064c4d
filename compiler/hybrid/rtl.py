"""Run a hybrid's SESL part (prefix pipeline + hand-off writer) as RTL under Verilator.

:func:`run_prefix_rtl` streams frames back to back through
:class:`hw.hybrid.prefix.SeslPrefix`, whose hand-off writer writes each frame's output
tensor into a DDR model (cocotbext-axi memory with random stalls) at the SEML input's
offset; the tensor is copied out each time a frame is reported written. The run is
bounded: a design that stops ends with fewer frames, never a hang.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.sesl.rtl import pack_frames

__all__ = ["PrefixRun", "run_prefix_rtl"]


@dataclass
class PrefixRun:
    """``tensors``: the hand-off bytes of each written frame (uint8 arrays);
    ``done``: the cycle each frame was reported written (from the first input beat);
    ``error``: the writer's AXI error flag at the end."""

    tensors: list
    done: list
    error: bool

    def steady_cycles(self) -> float:
        if len(self.done) < 2:
            raise ValueError("steady state needs at least two frames")
        return (self.done[-1] - self.done[0]) / (len(self.done) - 1)


def run_prefix_rtl(cfg, frames: np.ndarray, *, base: int, data_bits: int = 64,
                   addr_bits: int = 32, seed: int = 0, p_idle: float = 0.0,
                   p_pause: float = 0.0, max_cycles: int | None = None,
                   timeout_s: float = 1200.0) -> PrefixRun:
    """Stream ``frames`` (``(N, C, H, W)`` integers) through the SESL part of a hybrid."""
    from compiler.sesl.plan import steady_cycles
    from hw.hybrid.handoff import handoff_cycles_per_frame
    from hw.hybrid.prefix import SeslPrefix
    from sim.rtl import run_cocotb

    frames = np.asarray(frames)
    n = frames.shape[0]
    c, h, w = cfg.output_shape
    size = c * h * w
    if max_cycles is None:
        per = max(steady_cycles(cfg.stages, cfg.input_shape[1] * cfg.input_shape[2]),
                  handoff_cycles_per_frame(c, h, w, data_bits))
        stretch = 1.0 / max(1e-3, (1 - p_idle) * (1 - p_pause) ** 2)
        max_cycles = int(stretch * (n + 3) * (per + 64) * 3) + 50_000
    ram = 1 << max(12, (base + size).bit_length())
    name = "".join(ch if ch.isalnum() else "-" for ch in cfg.name)[:40]
    with tempfile.TemporaryDirectory(prefix="hybrid-rtl-") as tmp:
        data = Path(tmp) / "data.json"
        result = Path(tmp) / "result.json"
        data.write_text(json.dumps({"inputs": pack_frames(frames, cfg.act_bits), "frames": n}))
        run_cocotb(SeslPrefix(cfg, data_bits=data_bits, addr_bits=addr_bits),
                   test_module="compiler.hybrid.rtl_bench",
                   build_name=f"hybrid-prefix-{name}-d{data_bits}",
                   test_args={"data": str(data), "result": str(result), "seed": seed,
                              "base": base, "bytes": size, "ram_bytes": ram,
                              "p_idle": p_idle, "p_pause": p_pause,
                              "max_cycles": max_cycles},
                   timeout_s=timeout_s)
        got = json.loads(result.read_text())
    tensors = [np.asarray(t, dtype=np.uint8) for t in got["tensors"]]
    return PrefixRun(tensors, got["done"], bool(got["error"]))
