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


@dataclass
class HybridRun:
    """Outcome of :func:`run_hybrid_rtl`.

    ``outputs``: per frame, ``{name: int array of the output's shape}`` read from DDR when
    the top reported the frame done; ``done``: the cycle of each ``frame_done`` pulse and
    ``first_beat``: the cycle of each frame's first input pixel (cycles from the first
    input pixel); ``registers``: the hybrid's registers after the run (and the core's
    ``CYCLES`` of its last run, as ``CORE_CYCLES``).
    """

    outputs: list
    done: list
    first_beat: list
    registers: dict

    def steady_cycles(self) -> float:
        """Cycles between frame completions, first to last (steady state)."""
        if len(self.done) < 2:
            raise ValueError("steady state needs at least two frames")
        return (self.done[-1] - self.done[0]) / (len(self.done) - 1)

    def latencies(self) -> list:
        """Per frame: cycles from its first input pixel to its output in DDR."""
        return [d - b for d, b in zip(self.done, self.first_beat)]


#: DDR addresses of the two copies of the SEML image (hand-off buffers A and B).
IMAGE_A = 0x100000
IMAGE_B = 0x200000


def run_hybrid_rtl(out_dir, frames: np.ndarray, *, seed: int = 0, p_idle: float = 0.0,
                   p_pause: float = 0.0, max_cycles: int | None = None,
                   prog_base: int | None = None, timeout_s: float = 1800.0) -> HybridRun:
    """Stream ``frames`` (``(N, C, H, W)`` integers) through the whole hybrid of a compile
    output as one RTL top (:class:`hw.hybrid.top.HybridTop`) under Verilator, DDR a
    cocotbext-axi memory holding two copies of the SEML image (at :data:`IMAGE_A` and
    :data:`IMAGE_B`). ``prog_base``: the core's ``PROG_BASE`` (default :data:`IMAGE_A`).
    A run the top stops on an error returns the frames done before it."""
    from hw.hybrid.top import HybridTop
    from sim.codecs import decode_activations
    from sim.rtl import run_cocotb

    from .compile import load_hybrid

    arch, program, ddr, manifest, cfg = load_hybrid(out_dir)
    if cfg is None:
        raise ValueError(f"{out_dir} is a pure SEML compile (SplitCNN found no prefix); "
                         f"there is no hybrid top to run")
    frames = np.asarray(frames)
    n = frames.shape[0]
    image = ddr.copy()
    image[:len(program)] = np.frombuffer(program, dtype=np.uint8)
    if IMAGE_A + image.size > IMAGE_B:
        raise ValueError(f"The SEML image of {out_dir} ({image.size:,} bytes) does not fit "
                         f"between the test's image bases")
    report = json.loads((Path(out_dir) / "report.json").read_text())
    if max_cycles is None:
        stretch = 1.0 / max(1e-3, (1 - p_idle) * (1 - p_pause) ** 2)
        max_cycles = int(stretch * (n + 2) * 2 * report["cycles_per_frame"]
                         + report["latency_cycles"]) + 100_000
    name = "".join(ch if ch.isalnum() else "-" for ch in cfg.name)[:40]
    with tempfile.TemporaryDirectory(prefix="hybrid-top-") as tmp:
        tmp = Path(tmp)
        (tmp / "image.bin").write_bytes(image.tobytes())
        data = tmp / "data.json"
        result = tmp / "result.json"
        data.write_text(json.dumps({"inputs": pack_frames(frames, cfg.act_bits), "frames": n,
                                    "outputs": manifest["outputs"],
                                    "handoff": manifest["handoff"]["offset"]}))
        run_cocotb(HybridTop(cfg, arch), test_module="compiler.hybrid.top_bench",
                   build_name=f"hybrid-top-{name}-{arch.config_hash:016x}"[:60],
                   test_args={"data": str(data), "result": str(result),
                              "image": str(tmp / "image.bin"), "seed": seed,
                              "image_a": IMAGE_A, "image_b": IMAGE_B,
                              "prog_base": IMAGE_A if prog_base is None else prog_base,
                              "ram_bytes": 1 << (IMAGE_B + image.size).bit_length(),
                              "p_idle": p_idle, "p_pause": p_pause, "max_cycles": max_cycles},
                   timeout_s=timeout_s)
        got = json.loads(result.read_text())
    outputs = []
    for raw in got["outputs"]:
        outputs.append({spec["name"]: decode_activations(
            np.asarray(raw[spec["name"]], dtype=np.uint8), spec["bits"]).reshape(spec["shape"])
            for spec in manifest["outputs"]})
    return HybridRun(outputs, got["done"], got["first_beat"], got["registers"])


#: Module name of the hybrid top's Verilog.
HYBRID_TOP = "convforge_hybrid"


def elaborate_hybrid(out_dir, verilog_dir):
    """Write the Verilog of a hybrid compile output's top (SESL prefix, hand-off, SEML core:
    :class:`hw.hybrid.top.HybridTop`) to ``verilog_dir/convforge_hybrid.v``, plus the
    ``arch.json`` and ``pipeline.json`` it was made for; returns ``(path, cfg, arch)``, or
    ``None`` when SplitCNN answered "pure SEML" (there is no prefix: the SEML core is the
    whole design)."""
    from amaranth.back import verilog

    from compiler import errors
    from hw.hybrid.top import HybridTop

    from .compile import load_hybrid

    arch, _, _, _, cfg = load_hybrid(out_dir)
    if cfg is None:
        return None
    text = verilog.convert(HybridTop(cfg, arch), name=HYBRID_TOP, emit_src=False)
    out = Path(verilog_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{HYBRID_TOP}.v"
        path.write_text(text)
        (out / "pipeline.json").write_text(cfg.to_json())
        (out / "arch.json").write_text(arch.to_json())
    except OSError as e:
        raise errors.ConvForgeError(f"-o {verilog_dir}: cannot write there "
                                    f"({e.strerror or e}); choose another directory") from None
    return path, cfg, arch
