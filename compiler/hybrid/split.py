"""SplitCNN: split a quantized CNN and one DSP budget between a SESL prefix and the SEML core.

The heuristic (FiBHA, seed 003):

1. Baseline: the fastest SEML core that fits the budget runs every layer.
2. Move the first layers, one at a time, onto dedicated SESL engines. A layer joins the
   prefix only where the cut between prefix and core is a single tensor (inside a
   residual block the block's layers move together), and only while it has a SESL
   stage.
3. For each prefix, share the DSPs so that the two parts' times balance: for every SEML
   core that leaves DSPs over, the prefix is folded with what is left, aiming at the
   core's frame time (``target_fps``); the pair with the best batch-1 throughput
   ``1 / max(T_SESL, T_SEML)`` wins (latency ``T_SESL latency + T_SEML``).
4. Continue while the throughput improves; the best step is the answer. When no step
   beats the baseline the answer is "pure SEML", with the reason.

The SEML core's time for a suffix is the sum of its layers' cycles in the core's static
schedule (:func:`compiler.codegen.program.generate` of the whole graph, once per
candidate core); the chosen split is then compiled exactly. The SESL prefix is folded
and timed by :mod:`compiler.sesl.plan`. Resources: the SEML core by the calibrated model
(:func:`boards.database.estimate_resources`), the prefix by
:func:`compiler.sesl.resources.estimate_sesl_resources`, plus the hand-off's AXI write
master (:data:`HANDOFF_LUT`, :data:`HANDOFF_FF`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

from compiler import errors
from compiler.ir import Graph
from hw.arch import ArchConfig

__all__ = ["SEML_SHAPES", "HybridBudget", "SplitResult", "prefix_graph", "split_cnn",
           "suffix_graph", "valid_cuts"]

#: SEML core shapes SplitCNN tries: (conv Pi, conv Po, pointwise Pi = Po, depthwise
#: channels). Small conv engines with wide pointwise and depthwise engines are there for
#: the cores left with the later layers of compact CNNs (1x1 and depthwise only).
SEML_SHAPES = tuple(sorted(
    {(1, 1, 2, 2), (2, 2, 4, 4), (1, 1, 4, 4), (4, 2, 8, 4), (8, 4, 16, 8), (16, 8, 32, 16)}
    | {(c, c, pw, dw) for c in (1, 2, 4, 8, 16) for pw in (8, 16, 32)
       for dw in (pw // 2, pw)}))
#: Logic of the hand-off (stream-to-AXI write master, address counter, frame control).
HANDOFF_LUT = 600
HANDOFF_FF = 900


@dataclass(frozen=True)
class HybridBudget:
    """One fixed budget shared by both parts.

    ``dsp`` always binds; ``lut``, ``ff`` and ``bram36`` bind when given (a board).
    ``base`` carries the widths, clock, AXI widths and (unless ``buffer_sizes`` are
    given) the buffer sizes of every SEML core tried.
    """

    dsp: int
    lut: int | None = None
    ff: int | None = None
    bram36: float | None = None
    family: str = "xc7"
    base: ArchConfig = field(default_factory=ArchConfig)
    buffer_sizes: tuple = ()
    source: str = ""

    @classmethod
    def from_board(cls, board) -> HybridBudget:
        from boards.database import _buffer_sizes

        base = ArchConfig(name=f"{board.name.lower()}-hybrid", clock_mhz=board.clock_mhz,
                          axi_data_bits=board.axi_data_bits,
                          axi_addr_bits=board.axi_addr_bits)
        return cls(board.dsp, board.lut, board.ff, board.budget36()["bram36"],
                   board.synth_family, base, tuple(_buffer_sizes(board)),
                   f"board {board.name}")

    def to_dict(self) -> dict:
        return {"dsp": self.dsp, "lut": self.lut, "ff": self.ff, "bram36": self.bram36,
                "family": self.family, "source": self.source}


def _seml_arch(budget: HybridBudget, shape, buf=None) -> ArchConfig:
    pi, po, pw, dw = shape
    changes = {"conv_pi": pi, "conv_po": po, "pw_pi": pw, "pw_po": pw, "dw_channels": dw,
               "name": f"{budget.base.name}-seml-{pi}x{po}-pw{pw}-dw{dw}"}
    if buf is not None:
        changes.update(ibuf_bytes=buf, obuf_bytes=buf, wbuf_bytes=max(buf // 2, 8 * 1024))
    return budget.base.replace(**changes)


def seml_resources(arch: ArchConfig, family: str) -> dict:
    """The calibrated estimate of a SEML core (name and clock do not change it)."""
    return dict(_seml_resources(arch.replace(name="seml", clock_mhz=100.0), family))


@functools.lru_cache(maxsize=4096)
def _seml_resources(arch: ArchConfig, family: str) -> dict:
    from boards.database import estimate_resources

    use = estimate_resources(arch, family=family)
    return {"dsp": int(use["dsp"]), "lut": int(use["lut"]), "ff": int(use["ff"]),
            "bram36": float(use["bram_kbits"]) / 36}


def _fits(use: dict, budget: HybridBudget) -> bool:
    return all(getattr(budget, k) is None or use[k] <= getattr(budget, k)
               for k in ("dsp", "lut", "ff", "bram36"))


def fit_kernels(graph: Graph, budget: HybridBudget) -> HybridBudget:
    """``budget`` with its SEML cores' ``conv_k_max`` raised to the model's largest
    square kernel (5x5 and 7x7 depthwise layers of searched networks)."""
    from hw.arch import KERNEL_SIZES

    need = max((max(layer.kernel) for layer in graph.layers
                if layer.kind.value in ("conv", "depthwise")), default=1)
    k = next((s for s in KERNEL_SIZES if s >= need), None)
    if k is None or k <= budget.base.conv_k_max:
        return budget
    return replace(budget, base=budget.base.replace(conv_k_max=k))


def seml_candidates(budget: HybridBudget) -> list[tuple[ArchConfig, dict]]:
    """``[(arch, resources)]``: per shape the core with the largest buffers that fits the
    budget on its own, fewest DSPs first."""
    out = []
    sizes = sorted(budget.buffer_sizes or (None,), key=lambda b: b or 0)
    for shape in SEML_SHAPES:
        # resources grow with the buffers: bisect for the largest size that fits
        lo, hi, found = 0, len(sizes) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            arch = _seml_arch(budget, shape, sizes[mid])
            use = seml_resources(arch, budget.family)
            if _fits(use, budget):
                found, lo = (arch, use), mid + 1
            else:
                hi = mid - 1
        if found is not None:
            out.append(found)
    out.sort(key=lambda item: item[1]["dsp"])
    return out


# Cuts --------------------------------------------------------------------------------------

def valid_cuts(graph: Graph) -> list[tuple[int, str]]:
    """``[(k, tensor)]``: prefixes ``graph.layers[:k]`` (``k >= 1``) whose only tensor read
    after them is ``tensor`` (the hand-off), and every layer of which has a SESL stage."""
    from compiler.passes.fuse_pool import plan_pool_fusion
    from compiler.sesl.stages import graph_stages

    if len(graph.inputs) != 1:
        return []
    layers = graph.layers
    # a max pool the SEML core fuses into its producer moves with it
    fused_pools = {pool.name for pool in plan_pool_fusion(graph).values()}
    cuts = []
    for k in range(1, len(layers)):
        try:
            graph_stages(Graph("probe", list(graph.inputs), [layers[k - 1].output],
                               graph.tensors, [layers[k - 1]]))
        except errors.MappingError:
            break
        produced = set(graph.inputs) | {layer.output for layer in layers[:k]}
        read = {t for layer in layers[k:] for t in layer.inputs} | set(graph.outputs)
        crossing = produced & read
        if len(crossing) == 1 and graph.inputs[0] not in crossing \
                and layers[k].name not in fused_pools:
            cuts.append((k, crossing.pop()))
    return cuts


def _subgraph(graph: Graph, name, inputs, outputs, layers, host_ops=()) -> Graph:
    names = set(inputs) | {t for layer in layers for t in (*layer.inputs, *layer.outputs)}
    tensors = {t: v for t, v in graph.tensors.items() if t in names}
    return Graph(name, list(inputs), list(outputs), tensors, list(layers), list(host_ops),
                 list(graph.notes), graph.lowered).validate()


def prefix_graph(graph: Graph, k: int, cut: str) -> Graph:
    """The first ``k`` layers as a graph from the model input to ``cut``."""
    return _subgraph(graph, f"{graph.name}.sesl", graph.inputs, [cut], graph.layers[:k])


def suffix_graph(graph: Graph, k: int, cut: str) -> Graph:
    """The layers after the first ``k`` as a graph from ``cut`` to the model outputs."""
    return _subgraph(graph, f"{graph.name}.seml", [cut], graph.outputs, graph.layers[k:],
                     graph.host_ops)


# The search ----------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One evaluated split: ``k`` layers on SESL (0: pure SEML) and a SEML core."""

    k: int
    cut: str | None
    arch: ArchConfig
    seml_use: dict
    seml_cycles: int
    pipeline: object = None  # PipelineConfig of the prefix
    sesl_use: dict | None = None
    sesl_cycles: int = 0
    sesl_latency: int = 0

    @property
    def cycles_per_frame(self) -> int:
        return max(self.seml_cycles, self.sesl_cycles)

    @property
    def latency_cycles(self) -> int:
        return self.sesl_latency + self.seml_cycles

    @property
    def dsp(self) -> int:
        return self.seml_use["dsp"] + (self.sesl_use["dsp"] if self.sesl_use else 0)

    def frames_per_s(self) -> float:
        return self.arch.clock_mhz * 1e6 / self.cycles_per_frame

    def record(self, moved=()) -> dict:
        a = self.arch
        return {
            "sesl_layers": self.k, "moved": list(moved), "cut": self.cut,
            "seml_core": {"conv_pi": a.conv_pi, "conv_po": a.conv_po, "pw": a.pw_pi,
                          "dw_channels": a.dw_channels, "ibuf_bytes": a.ibuf_bytes,
                          "mac_units": a.conv_macs + a.dw_macs + a.pw_macs},
            "dsp": {"sesl": self.sesl_use["dsp"] if self.sesl_use else 0,
                    "seml": self.seml_use["dsp"], "total": self.dsp},
            "sesl_mac_units": (sum(st.mac_units for st in self.pipeline.stages)
                               if self.pipeline else 0),
            "sesl_cycles": self.sesl_cycles, "seml_cycles": self.seml_cycles,
            "cycles_per_frame": self.cycles_per_frame,
            "frames_per_s": self.frames_per_s(), "latency_cycles": self.latency_cycles,
        }


@dataclass
class SplitResult:
    best: Candidate
    baseline: Candidate
    steps: list
    reason: str
    budget: HybridBudget

    @property
    def pure_seml(self) -> bool:
        return self.best.k == 0


class _Profiles:
    """Per-layer SEML cycles of the whole graph, per candidate core (codegen once each)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.cache = {}

    def __call__(self, arch: ArchConfig):
        key = arch.config_hash
        if key not in self.cache:
            from compiler.codegen.program import generate

            try:
                program = generate(self.graph, arch)
            except errors.ConvForgeError:
                self.cache[key] = None
            else:
                per = {r.name: int(r.cycles) for r in program.layers}
                for r in program.layers:
                    for fused in r.fused:
                        per.setdefault(fused, 0)
                self.cache[key] = (per, int(program.cycles))
        return self.cache[key]

    def suffix_cycles(self, arch, k):
        prof = self(arch)
        if prof is None:
            return None
        per, total = prof
        if k == 0:
            return total
        return sum(per.get(layer.name, 0) for layer in self.graph.layers[k:])


def _prefix(graph, k, cut, arch, dsp, target_cycles, firb):
    from compiler.sesl.compile import build_pipeline
    from compiler.sesl.plan import Budget, latency_model, model_summary
    from compiler.sesl.resources import estimate_sesl_resources

    sub = prefix_graph(graph, k, cut)
    fps = arch.clock_mhz * 1e6 / max(target_cycles, 1)
    cfg = build_pipeline(sub, arch, Budget(dsp, None, "hybrid"), target_fps=fps,
                         name=sub.name, firb=firb)
    res = estimate_sesl_resources(cfg)
    use = {"dsp": int(res["dsp"]), "lut": int(res["lut"]) + HANDOFF_LUT,
           "ff": int(res["ff"]) + HANDOFF_FF, "bram36": float(res["bram36"])}
    summary = model_summary(cfg)
    drain = handoff_cycles(cfg, arch)
    return (cfg, use, max(summary["cycles_per_frame"], drain),
            latency_model(cfg)["latency_cycles"] + drain // cfg.output_shape[1])


def handoff_cycles(cfg, arch: ArchConfig) -> int:
    """Cycles the hand-off writer (:mod:`hw.hybrid.handoff`) needs per frame to write the
    prefix's output to DDR; the SESL part's frame time is at least this."""
    from hw.hybrid.handoff import handoff_cycles_per_frame

    c, h, w = cfg.output_shape
    return handoff_cycles_per_frame(c, h, w, arch.axi_data_bits)


def _best_for(graph, k, cut, candidates, profiles, budget, firb):
    best = None
    timed = [(profiles.suffix_cycles(arch, k), arch, use) for arch, use in candidates]
    # fastest cores first: once a split reaches C cycles/frame, slower cores cannot win
    timed = sorted((t for t in timed if t[0] is not None), key=lambda t: (t[0], t[2]["dsp"]))
    for seml, arch, use in timed:
        if best is not None and seml > best.cycles_per_frame:
            break
        left = budget.dsp - use["dsp"]
        if left <= 0:
            continue
        try:
            cfg, sesl_use, cyc, lat = _prefix(graph, k, cut, arch, left, seml, firb)
        except errors.MappingError:
            continue
        total = {r: use[r] + sesl_use[r] for r in use}
        if not _fits(total, budget):
            continue
        cand = Candidate(k, cut, arch, use, seml, cfg, sesl_use, cyc, lat)
        if best is None or (cand.cycles_per_frame, cand.dsp, cand.latency_cycles) < \
                (best.cycles_per_frame, best.dsp, best.latency_cycles):
            best = cand
    return best


#: The least speed-up over the SEML baseline a SESL prefix must bring to be built: below
#: it the second datapath, its DDR hand-off and control are not worth their logic.
MIN_GAIN = 0.10


def split_cnn(graph: Graph, budget: HybridBudget, *, firb: bool = False,
              max_steps: int | None = None, min_gain: float = MIN_GAIN) -> SplitResult:
    """Run SplitCNN on a quantized graph (see the module docstring); a best split faster
    than the baseline by less than ``min_gain`` (a fraction) is answered "pure SEML".

    Raises
    ------
    compiler.errors.MappingError
        No SEML core fits the budget (naming the budget and the smallest core's needs).
    """
    budget = fit_kernels(graph, budget)
    candidates = seml_candidates(budget)
    profiles = _Profiles(graph)
    baseline = None
    for arch, use in candidates:
        cyc = profiles.suffix_cycles(arch, 0)
        if cyc is None:
            continue
        cand = Candidate(0, None, arch, use, cyc)
        if baseline is None or cand.cycles_per_frame < baseline.cycles_per_frame:
            baseline = cand
    if baseline is None:
        smallest = seml_resources(_seml_arch(budget, SEML_SHAPES[0]), budget.family)
        raise errors.MappingError(
            f"No SEML core fits the budget ({budget.source or f'{budget.dsp} DSPs'}): the "
            f"smallest needs {smallest['dsp']} DSPs, {smallest['lut']:,} LUTs; give a "
            f"larger --budget-dsp or board")
    steps = [dict(baseline.record(), step=0, improves=None)]
    best = baseline
    reason = None
    prev_k = 0
    cuts = valid_cuts(graph)
    if not cuts:
        reason = (f"no layer at the start of {graph.name!r} can move to a dedicated SESL "
                  f"engine (its first layer has no SESL stage or no single-tensor cut "
                  f"follows it)")
    for k, cut in cuts:
        if max_steps is not None and len(steps) > max_steps:
            reason = f"stopped after {max_steps} steps (max_steps)"
            break
        moved = [layer.name for layer in graph.layers[prev_k:k]]
        cand = _best_for(graph, k, cut, candidates, profiles, budget, firb)
        if cand is None:
            reason = (f"moving {', '.join(moved)} onto dedicated engines does not fit the "
                      f"budget next to any SEML core")
            steps.append({"step": len(steps), "sesl_layers": k, "moved": moved, "cut": cut,
                          "feasible": False, "improves": False})
            break
        improves = cand.cycles_per_frame < best.cycles_per_frame
        steps.append(dict(cand.record(moved), step=len(steps), improves=improves))
        if not improves:
            reason = (f"moving {', '.join(moved)} onto dedicated engines gives "
                      f"{cand.frames_per_s():,.1f} frames/s, no better than "
                      f"{best.frames_per_s():,.1f} with {best.k} SESL layers: "
                      + _why(cand, best))
            break
        best = cand
        prev_k = k
    else:
        if cuts:
            reason = "every layer that has a SESL stage and a single-tensor cut was tried"
    if best.k and best.cycles_per_frame * (1 + min_gain) > baseline.cycles_per_frame:
        gain = baseline.cycles_per_frame / best.cycles_per_frame
        reason = (f"the best split ({best.k} SESL layers, cut at {best.cut!r}) is only "
                  f"{gain:.2f}x the SEML baseline, under the {1 + min_gain:.2f}x a SESL "
                  f"prefix must gain to pay for its DDR hand-off and second datapath "
                  f"({reason})")
        best = baseline
    if best.k == 0:
        reason = "pure SEML: " + reason
    return SplitResult(best, baseline, steps, reason, budget)


def _why(cand: Candidate, best: Candidate) -> str:
    drain = handoff_cycles(cand.pipeline, cand.arch) if cand.pipeline is not None else 0
    if cand.sesl_cycles >= cand.seml_cycles and drain >= cand.sesl_cycles:
        c, h, w = cand.pipeline.output_shape
        return (f"the hand-off is the bottleneck: writing the cut tensor {cand.cut!r} "
                f"({c} x {h} x {w}) to DDR takes {drain:,} cycles/frame vs the core's "
                f"{cand.seml_cycles:,}")
    if cand.sesl_cycles >= cand.seml_cycles:
        return (f"the SESL prefix is the bottleneck ({cand.sesl_cycles:,} cycles/frame with "
                f"{cand.sesl_use['dsp']} DSPs vs the core's {cand.seml_cycles:,}): the DSPs "
                f"the core keeps are worth more on its reusable engines")
    return (f"the SEML core is the bottleneck ({cand.seml_cycles:,} cycles/frame on "
            f"{cand.seml_use['dsp']} DSPs): the DSPs the prefix takes cost the core more "
            f"than the moved layers saved it")


def ceil_bram(x: float) -> int:
    return math.ceil(x - 1e-9)


#: Throughput a part may lose when its SEML buffers shrink (see :func:`shrink_buffers`).
BUFFER_SLACK = 0.01


def shrink_buffers(graph: Graph, arch: ArchConfig, limit_cycles: float):
    """``(arch, cycles)``: the SEML core with the smallest feature-map buffers (halving
    ``ibuf``/``obuf``, ``wbuf`` half of them, 8 KiB at least) whose program for ``graph``
    takes at most ``limit_cycles``; ``arch`` itself when no smaller one does."""
    from compiler.codegen.program import generate

    best, cycles = arch, None
    buf = arch.ibuf_bytes // 2
    while buf >= 8 * 1024:
        cand = arch.replace(ibuf_bytes=buf, obuf_bytes=buf, wbuf_bytes=max(buf // 2, 8 * 1024))
        try:
            cyc = generate(graph, cand).cycles
        except errors.ConvForgeError:
            break
        if cyc > limit_cycles:
            break
        best, cycles = cand, cyc
        buf //= 2
    return best, cycles
