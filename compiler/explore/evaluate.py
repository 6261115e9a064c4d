"""Evaluate one design point: prune, quantize, map, and measure every objective.

A :class:`Problem` is prepared once per process from a picklable
:class:`ProblemSpec` (the model's bytes, the target, the calibration samples) and
cached, so that Dask workers import the model and run the float reference once.
:func:`evaluate_point` then, for one point of :mod:`compiler.explore.space`:

1. prunes the float graph per layer group (:func:`compiler.passes.prune.prune`);
2. quantizes it with the point's weight scheme and word sizes on the calibration
   samples (:func:`compiler.passes.quantize.quantize`);
3. measures accuracy on those samples: SNR and NMSE (dB) of the golden integer
   network's outputs against the unpruned float model, and top-1 agreement;
4. maps it in the point's mode: SEML generates the program (its cycle model gives
   cycles per frame) and estimates the core's resources with the calibrated model
   (:func:`boards.database.estimate_resources`); SESL folds the pipeline under the
   point's share of the DSP budget;
5. estimates power (:mod:`compiler.explore.power`) and checks the fit: each
   resource's excess over the board (or DSP budget) is a constraint violation.

A point that cannot be quantized or mapped comes back with ``error`` set and no
metrics (the search records it as failed).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import ConvForgeError
from compiler.ir import WEIGHTED_KINDS, OpKind

from .power import estimate_power
from .space import MAX_PRUNE_GROUPS, MODES, Mode, register_mode

__all__ = ["Problem", "ProblemSpec", "evaluate_point", "get_problem", "metrics_summary"]


@dataclass(frozen=True)
class ProblemSpec:
    """Everything a worker needs to rebuild a :class:`Problem` (picklable).

    ``board`` names a board of :mod:`boards.database`, or ``None`` with
    ``budget_dsp`` set; ``calibration`` is ``{input name: (N, ...) float32}`` or
    ``None`` (seeded random samples); ``accuracy_samples`` bounds the samples used for
    calibration and accuracy.
    """

    model_bytes: bytes
    model_name: str
    board: str | None = None
    budget_dsp: int | None = None
    calibration: dict | None = None
    accuracy_samples: int = 4
    seed: int = 0
    base_arch: object = None

    @property
    def key(self) -> str:
        h = hashlib.sha256(self.model_bytes)
        h.update(repr((self.model_name, self.board, self.budget_dsp, self.accuracy_samples,
                       self.seed, self.base_arch)).encode())
        calib = self.calibration
        if calib is not None and not isinstance(calib, dict):
            calib = {"": calib}
        for name in sorted(calib or {}):
            h.update(name.encode())
            h.update(np.ascontiguousarray(calib[name]).tobytes())
        return h.hexdigest()[:16]


@dataclass
class Problem:
    """A prepared exploration problem (one per process)."""

    spec: ProblemSpec
    graph: object
    base_arch: object
    family: str
    budget: dict
    device_luts: int | None
    calibration: dict
    reference: list
    total_macs: int
    max_kernel: int
    prune_groups: dict
    buffer_choices: tuple
    cache: dict = field(default_factory=dict)


_PROBLEMS: dict[str, Problem] = {}


def _calibration(graph, spec: ProblemSpec) -> dict:
    from compiler.passes.quantize import load_calibration, random_calibration

    if spec.calibration is None:
        batches = random_calibration(graph, spec.accuracy_samples, spec.seed)
    else:
        batches = load_calibration(graph, spec.calibration)
    return {k: v[:spec.accuracy_samples] for k, v in batches.items()}


def _groups(graph) -> dict:
    """Pruning groups: one per prunable layer (few layers) or one per layer kind."""
    layers = [layer for layer in graph.layers
              if layer.kind in WEIGHTED_KINDS and layer.kind is not OpKind.DEPTHWISE]
    if len(layers) <= MAX_PRUNE_GROUPS:
        return {layer.name: [layer.name] for layer in layers}
    out = {}
    for layer in layers:
        out.setdefault(layer.kind.value, []).append(layer.name)
    return out


def get_problem(spec: ProblemSpec) -> Problem:
    """The :class:`Problem` of ``spec``, prepared once per process."""
    key = spec.key
    if key in _PROBLEMS:
        return _PROBLEMS[key]
    import onnx

    from boards.database import get_board
    from compiler.pipeline import PassContext, import_model
    from compiler.profile import profile_graph
    from compiler.reference import run_float
    from hw.arch import ArchConfig

    model = onnx.load_from_string(spec.model_bytes)
    graph = import_model(model, PassContext())
    if spec.board is not None:
        board = get_board(spec.board)
        base = spec.base_arch if spec.base_arch is not None else board.default_arch()
        family = board.synth_family
        budget = dict(board.budget)
        device_luts = board.lut
        bram_kib = board.bram_kbits // 8
    else:
        base = spec.base_arch if spec.base_arch is not None else ArchConfig(name="explore")
        family = "xcup"
        budget = {"dsp": int(spec.budget_dsp)}
        device_luts = None
        bram_kib = 4096
    calib = _calibration(graph, spec)
    n = len(next(iter(calib.values())))
    reference = [run_float(graph, {k: v[i] for k, v in calib.items()}) for i in range(n)]
    kernels = [max(layer.kernel) for layer in graph.layers
               if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE) and layer.kernel]
    top = max(8, min(256, bram_kib // 4))
    buffers = tuple(b for b in (8, 16, 32, 64, 128, 256) if b <= top)
    problem = Problem(spec, graph, base, family, budget, device_luts, calib, reference,
                      profile_graph(graph).total_macs, max(kernels, default=1),
                      _groups(graph), buffers)
    _PROBLEMS[key] = problem
    return problem


# Steps shared by the modes -----------------------------------------------------------

def _arch(problem: Problem, point: dict):
    """The arch of ``point`` (dimensions the point's mode does not read keep the base
    arch's values)."""
    base = problem.base_arch

    def get(name, default):
        value = point.get(name)
        return default if value is None else value

    buf = int(get("buf_kib", base.ibuf_bytes // 1024)) * 1024
    return base.replace(
        name="explore", conv_pi=get("conv_pi", base.conv_pi),
        conv_po=get("conv_po", base.conv_po), pw_pi=get("pw_pi", base.pw_pi),
        pw_po=get("pw_po", base.pw_po),
        dw_channels=get("dw", base.dw_channels),
        conv_k_max=get("conv_k_max", base.conv_k_max),
        weight_scheme=point["weight_scheme"], act_bits=point["act_bits"],
        weight_bits=point["weight_bits"], ibuf_bytes=buf, obuf_bytes=buf,
        wbuf_bytes=max(buf // 2, 8 * 1024))


def seml_core_dsp(problem: Problem, point: dict) -> int:
    """DSPs of the SEML core of an SEML or hybrid ``point`` by the calibrated resource
    model (a lower bound of a hybrid design's DSPs; 0 for other modes)."""
    from boards.database import estimate_resources

    if point.get("mode") not in ("seml", "hybrid"):
        return 0
    return int(estimate_resources(_arch(problem, point), family=problem.family)["dsp"])


#: Quantized graphs (and their accuracy) kept per process: points that differ only in
#: their engines reuse the quantization and the golden run of the same pruning and
#: quantization.
QUANT_CACHE_SIZE = 4


def _quant_key(problem: Problem, point: dict, config) -> tuple:
    return (tuple(float(point.get(f"prune.{g}", 0.0) or 0.0) for g in problem.prune_groups),
            repr(config))


def prepare_graph(problem: Problem, point: dict):
    """The pruned, quantized graph of ``point``, and its arch."""
    from compiler.passes.prune import prune
    from compiler.passes.quantize import QuantConfig, quantize

    arch = _arch(problem, point)
    config = QuantConfig.from_arch(arch)
    key = _quant_key(problem, point, config)
    cache = problem.cache.setdefault("quantized", {})
    if key in cache:
        cache[key] = cache.pop(key)  # most recently used last
        return cache[key]["qgraph"], arch
    graph = problem.graph
    for group, names in problem.prune_groups.items():
        sparsity = float(point.get(f"prune.{group}", 0.0) or 0.0)
        if sparsity > 0:
            graph, _ = prune(graph, sparsity, layers=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, config, problem.calibration)
    cache[key] = {"qgraph": qgraph, "accuracy": None}
    while len(cache) > QUANT_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    return qgraph, arch


def cached_accuracy(problem: Problem, qgraph) -> dict:
    """:func:`accuracy` of ``qgraph``, computed once per quantized graph of the cache."""
    for entry in problem.cache.get("quantized", {}).values():
        if entry["qgraph"] is qgraph:
            if entry["accuracy"] is None:
                entry["accuracy"] = accuracy(problem, qgraph)
            return dict(entry["accuracy"])
    return accuracy(problem, qgraph)


def accuracy(problem: Problem, qgraph) -> dict:
    """SNR / NMSE (dB) of the golden integer outputs against the float model, and the
    fraction of samples whose arg-max agrees (top-1 agreement)."""
    from compiler.runner import run_golden

    result = run_golden(qgraph, problem.calibration)
    signal = noise = 0.0
    agree = 0
    n = len(problem.reference)
    for name in qgraph.outputs:
        got = result.real(name)
        for i, ref in enumerate(problem.reference):
            r = np.asarray(ref[name], dtype=np.float64).reshape(-1)
            q = got[i].reshape(-1)
            signal += float(np.sum(r * r))
            noise += float(np.sum((r - q) ** 2))
            agree += int(np.argmax(r) == np.argmax(q))
    if noise == 0:
        snr = math.inf
    elif signal == 0:
        snr = -math.inf
    else:
        snr = 10 * math.log10(signal / noise)
    return {"snr_db": snr, "nmse_db": -snr,
            "top1_agreement": agree / (n * len(qgraph.outputs))}


def weight_density(qgraph) -> tuple[int, int]:
    """``(non-zero integer weights, all weights)`` of the quantized graph."""
    nnz = total = 0
    for layer in qgraph.layers:
        if layer.quant is not None and layer.quant.weight is not None:
            w = layer.quant.weight
            nnz += int(np.count_nonzero(w))
            total += int(w.size)
    return nnz, total


def fit_violations(problem: Problem, resources: dict) -> dict:
    """Each budgeted resource's excess as a fraction of the budget (0 = fits)."""
    out = {}
    for name, have in problem.budget.items():
        use = resources.get(name, 0)
        out[name] = max(0.0, use / have - 1.0) if have else (0.0 if not use else math.inf)
    return out


# Modes ----------------------------------------------------------------------------------

def _seml_evaluate(problem: Problem, point: dict, qgraph, arch) -> dict:
    from boards.database import estimate_resources
    from compiler.codegen.program import generate
    from compiler.compile import check_buildable

    check_buildable(arch)
    program = generate(qgraph, arch)
    est = estimate_resources(arch, family=problem.family)
    mac_units = arch.conv_macs + arch.dw_macs + arch.pw_macs
    return {"cycles_per_frame": program.cycles, "latency_cycles": program.cycles,
            "clock_mhz": arch.clock_mhz, "mac_units": mac_units,
            "mac_utilization": problem.total_macs / (program.cycles * mac_units),
            "resources": {"lut": est["lut"], "ff": est["ff"], "dsp": est["dsp"],
                          "bram": est["bram"], "bram36": est["bram36"]}}


def _seml_compile(problem: Problem, point: dict, qgraph, arch, out_dir) -> None:
    from compiler.compile import compile_graph

    compile_graph(qgraph, arch, out_dir, model_name=problem.spec.model_name, verify=False)


def _sesl_budget(problem: Problem, point: dict):
    from compiler.sesl.plan import Budget

    dsp = max(1, int(problem.budget["dsp"] * float(point["sesl_dsp_share"])))
    bram = problem.budget.get("bram")
    memory = None if bram is None else bram * 36 * 1024
    return Budget(dsp, memory, f"{point['sesl_dsp_share']:.0%} of the DSP budget")


def _sesl_evaluate(problem: Problem, point: dict, qgraph, arch) -> dict:
    from compiler.sesl.compile import build_pipeline, sesl_report_json

    cfg = build_pipeline(qgraph, arch, _sesl_budget(problem, point))
    rep = sesl_report_json(cfg, arch.clock_mhz, problem.spec.model_name)
    res = dict(rep["resources"])
    res["bram"] = math.ceil(res["bram36"])
    return {"cycles_per_frame": rep["cycles_per_frame"],
            "latency_cycles": rep["latency_cycles"], "clock_mhz": arch.clock_mhz,
            "mac_units": rep["mac_units"], "mac_utilization": rep["mac_utilization"],
            "resources": res}


def _sesl_compile(problem: Problem, point: dict, qgraph, arch, out_dir) -> None:
    import json

    from compiler.codegen.output import write_output_dir
    from compiler.sesl.compile import build_pipeline, format_sesl_report, sesl_report_json

    budget = _sesl_budget(problem, point)
    name = problem.spec.model_name
    cfg = build_pipeline(qgraph, arch, budget, name=name)
    report = sesl_report_json(cfg, arch.clock_mhz, name)

    def io(t):
        return [{"name": t, "shape": list(qgraph.shape(t)), "scale": qgraph.tensors[t].scale,
                 "bits": arch.act_bits}]

    pipeline_json, arch_json = cfg.to_json(), arch.to_json()
    manifest = {
        "format": 1, "mode": "sesl", "model": name,
        "files": {"pipeline.json": {"bytes": len(pipeline_json), "sha256": hashlib.sha256(
                      pipeline_json.encode()).hexdigest()},
                  "arch.json": {"bytes": len(arch_json), "sha256": hashlib.sha256(
                      arch_json.encode()).hexdigest()}},
        "inputs": io(cfg.input), "outputs": io(cfg.output),
        "host_ops": [{"name": op.name, "op_type": op.op_type, "input": op.input,
                      "output": op.output, "attrs": op.attrs} for op in qgraph.host_ops],
        "budget": {"dsp": budget.dsp, "memory_bits": budget.memory_bits,
                   "source": budget.source},
    }
    write_output_dir(out_dir, {"pipeline.json": pipeline_json, "arch.json": arch_json,
                               "manifest.json": json.dumps(manifest, indent=2) + "\n",
                               "report.txt": format_sesl_report(report),
                               "report.json": json.dumps(report, indent=2) + "\n"})


register_mode(Mode("seml", _seml_evaluate, _seml_compile,
                   uses=("conv_pi", "conv_po", "pw_pi", "pw_po", "dw", "buf_kib",
                         "conv_k_max")))
# The SESL stages multiply uniform weights (PoT / APoT are served by the SEML engines).
register_mode(Mode("sesl", _sesl_evaluate, _sesl_compile, uses=("sesl_dsp_share",),
                   schemes=("uniform",)))


#: Most hybrid split points offered (the first single-tensor cuts of the model: later
#: cuts hand larger expanded tensors to the core through DDR).
MAX_HYBRID_CUTS = 6


def hybrid_cuts(problem: Problem) -> dict:
    """``{k: cut tensor}``: the first :data:`MAX_HYBRID_CUTS` valid splits of the model
    (:func:`compiler.hybrid.split.valid_cuts` on the default quantization: SESL stages
    need a quantized graph; pruning and word sizes do not change the cuts)."""
    if problem is None:
        return {}
    if "hybrid_cuts" not in problem.cache:
        from compiler.hybrid.split import valid_cuts
        from compiler.passes.quantize import QuantConfig, quantize

        cuts = {}
        if len(problem.graph.inputs) == 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qgraph, _ = quantize(problem.graph,
                                     QuantConfig.from_arch(problem.base_arch.replace(
                                         weight_scheme="uniform")), problem.calibration)
            cuts = dict(valid_cuts(qgraph)[:MAX_HYBRID_CUTS])
        problem.cache["hybrid_cuts"] = cuts
    return problem.cache["hybrid_cuts"]


def _hybrid_dimensions(problem):
    from .space import Dimension

    cuts = hybrid_cuts(problem)
    return (Dimension("hybrid_layers", tuple(sorted(cuts))),) if cuts else ()


def _hybrid_split(problem: Problem, point: dict, qgraph, arch):
    """The SEML core of ``point`` on the layers after the first ``hybrid_layers``, and
    the SESL prefix folded (:func:`compiler.hybrid.split`) to keep pace with the core
    on the DSPs the core leaves: ``(candidate, baseline cycles or None)``."""
    from compiler.codegen.program import generate
    from compiler.compile import check_buildable
    from compiler.hybrid.split import Candidate, _prefix, seml_resources, suffix_graph

    check_buildable(arch)
    k = point.get("hybrid_layers")
    cuts = hybrid_cuts(problem)
    if k not in cuts or cuts[k] not in qgraph.tensors:
        raise ConvForgeError(f"hybrid_layers={k!r} is not a split point of the model "
                             f"(valid: {', '.join(map(str, sorted(cuts))) or 'none'})")
    cut = cuts[k]
    seml_cycles = generate(suffix_graph(qgraph, k, cut), arch).cycles
    core = seml_resources(arch, problem.family)
    left = problem.budget["dsp"] - core["dsp"]
    if left <= 0:
        raise ConvForgeError(f"hybrid: the SEML core takes {core['dsp']} DSPs, leaving none "
                             f"of the {problem.budget['dsp']} for the SESL prefix")
    cfg, use, cycles, latency = _prefix(qgraph, k, cut, arch, left, seml_cycles, False)
    return Candidate(k, cut, arch, core, seml_cycles, cfg, use, cycles, latency)


def _hybrid_evaluate(problem: Problem, point: dict, qgraph, arch) -> dict:
    cand = _hybrid_split(problem, point, qgraph, arch)
    core, pre = cand.seml_use, cand.sesl_use
    mac_units = (arch.conv_macs + arch.dw_macs + arch.pw_macs
                 + sum(st.mac_units for st in cand.pipeline.stages))
    cycles = cand.cycles_per_frame
    bram36 = core["bram36"] + pre["bram36"]
    return {"cycles_per_frame": cycles, "latency_cycles": cand.latency_cycles,
            "clock_mhz": arch.clock_mhz, "mac_units": mac_units,
            "mac_utilization": problem.total_macs / (cycles * mac_units),
            "sesl_dsp": pre["dsp"], "seml_dsp": core["dsp"],
            "resources": {"lut": core["lut"] + pre["lut"], "ff": core["ff"] + pre["ff"],
                          "dsp": core["dsp"] + pre["dsp"], "bram": math.ceil(bram36 - 1e-9),
                          "bram36": bram36}}


def _hybrid_compile(problem: Problem, point: dict, qgraph, arch, out_dir) -> None:
    from compiler.codegen.output import write_output_dir
    from compiler.codegen.program import generate
    from compiler.hybrid.compile import _assemble
    from compiler.hybrid.split import Candidate, HybridBudget, SplitResult, seml_resources

    cand = _hybrid_split(problem, point, qgraph, arch)
    base = Candidate(0, None, arch, seml_resources(arch, problem.family),
                     generate(qgraph, arch).cycles)
    b = problem.budget
    budget = HybridBudget(b["dsp"], b.get("lut"), b.get("ff"), b.get("bram"), problem.family,
                          arch, (), problem.spec.board or f"--budget-dsp {b['dsp']}")
    moved = [layer.name for layer in qgraph.layers[:cand.k]]
    split = SplitResult(cand, base, [dict(base.record(), step=0, improves=None),
                                     dict(cand.record(moved), step=1,
                                          improves=cand.cycles_per_frame
                                          < base.cycles_per_frame)],
                        f"chosen by the exploration: {cand.k} SESL layers", budget)
    name = qgraph.inputs[0]
    model_input = {"name": name, "shape": list(qgraph.shape(name)),
                   "scale": qgraph.tensors[name].scale, "bits": arch.act_bits}
    files, _ = _assemble(qgraph, split, problem.spec.model_name, model_input)
    write_output_dir(out_dir, files)


# Hybrid: a SESL prefix of the first ``hybrid_layers`` layers hands its output through DDR
# to the SEML core, which runs the rest (the compile keeps the core's smallest buffers
# within 1 % of its throughput, as ``convforge compile --mode hybrid`` does).
register_mode(Mode("hybrid", _hybrid_evaluate, _hybrid_compile,
                   uses=("conv_pi", "conv_po", "pw_pi", "pw_po", "dw", "buf_kib", "conv_k_max",
                         "hybrid_layers"),
                   schemes=("uniform",), dimensions=_hybrid_dimensions))


def metrics_summary(problem: Problem, point: dict, qgraph, arch, mapped: dict) -> dict:
    """Flat metrics of an evaluated point (what the objectives and the CSV read)."""
    nnz, total = weight_density(qgraph)
    cycles = mapped["cycles_per_frame"]
    clock = mapped["clock_mhz"]
    res = mapped["resources"]
    density = nnz / total if total else 1.0
    activity = min(1.0, max(0.0, mapped["mac_utilization"] or 0.0)) * density
    power = estimate_power(res, clock, family=problem.family, device_luts=problem.device_luts,
                           mac_activity=activity)
    fps = clock * 1e6 / cycles
    violations = fit_violations(problem, res)
    return {
        "cycles_per_frame": cycles, "latency_cycles": mapped["latency_cycles"],
        "latency_ms": mapped["latency_cycles"] / (clock * 1e3), "fps": fps,
        "clock_mhz": clock, "mac_units": mapped["mac_units"],
        "mac_utilization": mapped["mac_utilization"],
        "dsp": res["dsp"], "lut": res["lut"], "ff": res["ff"], "bram": res["bram"],
        "power": power["total_w"], "power_dynamic": power["dynamic_w"],
        "energy_mj": power["total_w"] / fps * 1e3,
        "nnz": nnz, "weights": total, "density": density,
        "fits": all(v == 0 for v in violations.values()),
        "violation": sum(violations.values()),
        # the hybrid mode's DSP split (SESL prefix, SEML core)
        **{k: mapped[k] for k in ("sesl_dsp", "seml_dsp") if k in mapped},
    }


def evaluate_point(spec: ProblemSpec, point: dict) -> dict:
    """Evaluate ``point`` on the problem of ``spec`` (runs on a Dask worker).

    Returns ``{"point", "metrics", "error", "seconds"}``; ``metrics`` is ``None`` and
    ``error`` names the reason when the point cannot be quantized or mapped.
    """
    start = time.perf_counter()
    problem = get_problem(spec)
    mode = MODES.get(point.get("mode"))
    try:
        if mode is None:
            raise ConvForgeError(f"Unknown mode {point.get('mode')!r}; registered modes: "
                                 f"{', '.join(MODES)}")
        qgraph, arch = prepare_graph(problem, point)
        mapped = mode.evaluate(problem, point, qgraph, arch)
        metrics = metrics_summary(problem, point, qgraph, arch, mapped)
        metrics.update(cached_accuracy(problem, qgraph))
        error = None
    except (ConvForgeError, ValueError) as e:
        metrics, error = None, f"{type(e).__name__}: {e}"
    return {"point": point, "metrics": metrics, "error": error,
            "seconds": time.perf_counter() - start}


def compile_point(spec: ProblemSpec, point: dict, out_dir) -> None:
    """Compile ``point`` into ``out_dir`` (its mode's compile output)."""
    problem = get_problem(spec)
    qgraph, arch = prepare_graph(problem, point)
    MODES[point["mode"]].compile(problem, point, qgraph, arch, out_dir)

