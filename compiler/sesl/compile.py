"""``convforge compile --mode sesl``: a quantized model -> a SESL pipeline description.

Writes, atomically::

    OUT/pipeline.json  the PipelineConfig (stages, folding, integer parameters, FIFOs)
    OUT/arch.json      widths and clock the model was quantized for
    OUT/manifest.json  mode, I/O tensors (shapes, scales), hashes
    OUT/report.txt     per-stage table (people)
    OUT/report.json    the same for scripts

``simulate`` runs the golden ops stage by stage on it (the SESL "ISS"), and with
``--rtl`` the pipeline's RTL under Verilator; ``elaborate --compiled OUT`` writes its
Verilog.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from compiler import errors
from compiler.codegen.output import write_output_dir
from compiler.codegen.report import REPORT_FORMAT
from hw.arch import ArchConfig
from hw.sesl.config import PipelineConfig

from . import plan
from .firb import buffer_comparison, fuse_bottlenecks
from .resources import estimate_sesl_resources
from .stages import graph_stages, stage_golden

__all__ = ["build_pipeline", "compile_sesl", "load_pipeline", "run_stages",
           "sesl_report_json"]

MANIFEST_FORMAT = 1


def build_pipeline(graph, arch: ArchConfig, budget: plan.Budget, *,
                   target_fps: float | None = None, name: str | None = None,
                   firb: bool = False, unroll: bool = False) -> PipelineConfig:
    """Fold, size the FIFOs and check the memory budget of a quantized graph's pipeline.

    ``unroll``: conv layers over one-row frames (stride 1) become fully parallel stages
    with constant weights (:class:`hw.sesl.unrolled.UnrolledConvStage`), whatever their
    weight scheme; the folding leaves them as they are.

    Raises
    ------
    compiler.errors.MappingError
        A layer without a SESL stage, a DSP budget too small for one engine per layer,
        or memories beyond the block-RAM budget (naming the layer and the resource).
    """
    stages = graph_stages(graph, unroll=unroll)
    shape = graph.shape(graph.inputs[0])
    pixels = shape[1] * shape[2]
    stages = plan.fold(stages, budget, input_pixels=pixels, clock_mhz=arch.clock_mhz,
                       target_fps=target_fps)
    cycles = plan.steady_cycles(stages, pixels)
    fifos = plan.fifo_depths(stages, graph.inputs[0], shape, cycles)
    if firb:
        stages = fuse_bottlenecks(stages)
    cfg = PipelineConfig(name or graph.name, graph.inputs[0], graph.outputs[0], tuple(shape),
                         tuple(graph.shape(graph.outputs[0])), tuple(stages), tuple(fifos),
                         act_bits=arch.act_bits, weight_bits=arch.weight_bits,
                         acc_bits=arch.acc_bits, mult_bits=arch.mult_bits,
                         shift_bits=arch.shift_bits)
    if budget.memory_bits is not None:
        res = estimate_sesl_resources(cfg)
        have = budget.memory_bits // 36864
        if res["bram36"] > have:
            worst, kind, blocks = None, None, -1
            for st_name, entry in res["stages"].items():
                for mem, info in entry["memories"].items():
                    if info["bram36"] > blocks:
                        worst, kind, blocks = st_name, mem, info["bram36"]
            what = "weights" if kind == "weights" else (
                "line buffer" if kind == "line_buffer" else kind)
            raise errors.MappingError(
                f"The SESL pipeline needs {res['bram36']} BRAM36 but the budget "
                f"({budget.source or 'block RAM'}) has {have}; the largest memory is the "
                f"{what} of layer {worst!r} ({blocks} BRAM36). One engine per layer does not "
                f"fit: use the hybrid mode (SESL for the first layers, SEML for the rest) or "
                f"--mode seml")
    return cfg


def sesl_report_json(cfg: PipelineConfig, clock_mhz: float, title: str = "") -> dict:
    summary = plan.model_summary(cfg)
    res = estimate_sesl_resources(cfg)
    cycles = summary["cycles_per_frame"]
    stages = []
    for st in cfg.stages:
        fifo = {t: cfg.fifo_depth(t, st.name) for t in st.inputs if cfg.fifo_depth(t, st.name)}
        fifo_bits = sum(d * next(s[0] for t2, s in zip(st.inputs, st.in_shapes) if t2 == t)
                        * cfg.act_bits for t, d in fifo.items())
        stages.append({
            "name": st.name, "kind": st.layer_kind,
            "engine": f"sesl.firb.{st.op}" if st.firb else f"sesl.{st.op}",
            "folding": {"simd": st.simd, "pe": st.pe}, "tiles": None,
            "firb": st.firb or None,
            "cycles": st.cycles_per_frame, "cycles_per_pixel": st.cycles_per_pixel,
            "macs": st.macs_per_frame, "mac_units": st.mac_units,
            "mac_utilization": (st.macs_per_frame / (cycles * st.mac_units)
                                if st.mac_units else None),
            "fifo_depths": fifo,
            "buffer_bits": st.line_buffer_bits * cfg.act_bits + fifo_bits,
            "weight_bits": len(st.weights) * cfg.weight_bits,
            "resources": {k: res["stages"][st.name][k] for k in ("lut", "ff", "dsp", "bram36")},
        })
    return {
        "format": REPORT_FORMAT, "mode": "sesl", "model": title or cfg.name,
        "clock_mhz": clock_mhz, "cycles_per_frame": cycles,
        "frames_per_s": clock_mhz * 1e6 / cycles,
        "latency_cycles": summary["latency_cycles"], "mac_units": summary["mac_units"],
        "macs_per_frame": summary["macs_per_frame"],
        "mac_utilization": summary["mac_utilization"], "bottleneck": summary["bottleneck"],
        "resources": {k: res[k] for k in ("lut", "ff", "dsp", "bram36")},
        "resource_model": res["model"],
        "buffer_bits": sum(s["buffer_bits"] for s in stages),
        "weight_bits": sum(s["weight_bits"] for s in stages),
        "firb": buffer_comparison(cfg),
        "layers": stages,
    }


def format_sesl_report(report: dict) -> str:
    head = ("stage", "kind", "engine", "simd x pe", "cycles/frame", "MAC util", "FIFO",
            "buffer bits", "DSP", "BRAM36")
    rows = []
    for s in report["layers"]:
        util = s["mac_utilization"]
        rows.append((s["name"], s["kind"], s["engine"],
                     f"{s['folding']['simd']} x {s['folding']['pe']}", f"{s['cycles']:,}",
                     "-" if util is None else f"{100 * util:.0f}%",
                     ",".join(str(d) for d in s["fifo_depths"].values()) or "-",
                     f"{s['buffer_bits']:,}", str(s["resources"]["dsp"]),
                     str(s["resources"]["bram36"])))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    r = report
    res = r["resources"]
    out = [f"ConvForge SESL compile report: {r['model']}",
           f"mode sesl, {r['clock_mhz']:g} MHz, one stage per layer", "",
           line(head), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    firb = r["firb"]
    out += ["",
            (f"steady state: {r['cycles_per_frame']:,} cycles/frame "
            f"({r['frames_per_s']:,.0f} frames/s), bottleneck {r['bottleneck']}"),
            f"first-frame latency: {r['latency_cycles']:,} cycles",
            (f"MACs: {r['macs_per_frame']:,}/frame on {r['mac_units']} MAC units, "
            f"utilization {100 * r['mac_utilization']:.1f}%"),
            (f"estimated resources: {res['lut']:,} LUT, {res['ff']:,} FF, {res['dsp']} DSP, "
            f"{res['bram36']} BRAM36 ({r['resource_model']})"),
            (f"buffers: {r['buffer_bits']:,} bits (line buffers + FIFOs), weights "
            f"{r['weight_bits']:,} bits")]
    if firb["bottlenecks"]:
        out.append(f"FIRB fusion of {len(firb['bottlenecks'])} inverted residual bottlenecks: "
                   f"{firb['fused_bits']:,} vs {firb['layer_by_layer_bits']:,} buffer bits "
                   f"layer by layer ({100 * firb['ratio']:.1f}%); whole pipeline "
                   f"{firb['model_fused_bits']:,} vs {firb['model_layer_by_layer_bits']:,} "
                   f"({100 * firb['model_ratio']:.1f}%); "
                   f"{100 * firb['ratio_vs_double_buffered']:.1f}% of the paper's "
                   f"double-buffered row tiles ({firb['double_buffered_bits']:,} bits, not "
                   f"built)")
    return "\n".join(out) + "\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_sesl(onnx_path, arch: ArchConfig, out_dir, budget: plan.Budget, calibration=None,
                 *, target_fps: float | None = None, scale_mode: str | None = None,
                 seed: int = 0, firb: bool = False) -> dict:
    """Compile an ONNX model to a SESL pipeline in ``out_dir``; returns the report dict."""
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import PassContext, import_model

    timings = {}
    start = time.perf_counter()
    graph = import_model(onnx_path, PassContext(arch=arch))
    overrides = {} if scale_mode is None else {"scale_mode": scale_mode}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if calibration is None else "default")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch, **overrides), calibration,
                             seed=seed)
    timings["import_quantize_s"] = time.perf_counter() - start
    start = time.perf_counter()
    title = Path(onnx_path).stem if isinstance(onnx_path, (str, Path)) else qgraph.name
    cfg = build_pipeline(qgraph, arch, budget, target_fps=target_fps, name=title, firb=firb)
    report = sesl_report_json(cfg, arch.clock_mhz, title)
    timings["map_s"] = time.perf_counter() - start
    report["compile_time_s"] = timings
    pipeline_json = cfg.to_json()
    arch_json = arch.to_json()
    io = [{"name": t, "shape": list(qgraph.shape(t)), "scale": qgraph.tensors[t].scale,
           "bits": arch.act_bits} for t in (cfg.input,)]
    out_io = [{"name": t, "shape": list(qgraph.shape(t)), "scale": qgraph.tensors[t].scale,
               "bits": arch.act_bits} for t in (cfg.output,)]
    manifest = {
        "format": MANIFEST_FORMAT, "mode": "sesl", "model": title,
        "files": {"pipeline.json": {"bytes": len(pipeline_json),
                                    "sha256": _sha(pipeline_json.encode())},
                  "arch.json": {"bytes": len(arch_json), "sha256": _sha(arch_json.encode())}},
        "inputs": io, "outputs": out_io,
        "host_ops": [{"name": op.name, "op_type": op.op_type, "input": op.input,
                      "output": op.output, "attrs": op.attrs} for op in qgraph.host_ops],
        "budget": {"dsp": budget.dsp, "memory_bits": budget.memory_bits,
                   "source": budget.source},
    }
    files = {"pipeline.json": pipeline_json, "arch.json": arch_json,
             "manifest.json": json.dumps(manifest, indent=2) + "\n",
             "report.txt": format_sesl_report(report),
             "report.json": json.dumps(report, indent=2) + "\n"}
    write_output_dir(out_dir, files)
    return report


def load_pipeline(out_dir) -> tuple[PipelineConfig, dict, ArchConfig]:
    """``(pipeline, manifest, arch)`` of a SESL compile output."""
    out = Path(out_dir)
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        text = (out / "pipeline.json").read_text()
        arch = ArchConfig.from_dict(json.loads((out / "arch.json").read_text()))
    except FileNotFoundError as e:
        raise errors.ProgramFormatError(f"{e.filename} is missing; {out} is not a complete "
                                        f"SESL compile output (run `convforge compile` "
                                        f"again)") from None
    except (ValueError, TypeError) as e:
        raise errors.ProgramFormatError(f"{out}: unreadable SESL output: {e}") from None
    if manifest.get("files", {}).get("pipeline.json", {}).get("sha256") != _sha(text.encode()):
        raise errors.ProgramFormatError(f"{out / 'pipeline.json'} does not match its manifest "
                                        f"(edited or from another compile); run `convforge "
                                        f"compile` again")
    return PipelineConfig.from_json(text), manifest, arch


def run_stages(cfg: PipelineConfig, frames: np.ndarray, keep_all: bool = False):
    """The golden ops stage by stage on ``(N, C, H, W)`` integers: the output (or every
    tensor with ``keep_all``)."""
    values = {cfg.input: np.asarray(frames, dtype=np.int64)}
    for st in cfg.stages:
        values[st.output] = stage_golden(st, [values[t] for t in st.inputs], cfg.act_bits)
    return values if keep_all else values[cfg.output]


def simulate_sesl(out_dir, inputs=None, *, backend: str = "iss", seed: int = 0):
    """One inference of a SESL compile output (see :func:`compiler.compile.simulate`).

    ``"iss"`` runs the golden ops stage by stage and reports the model's first-frame
    latency as its cycles; ``"rtl"`` streams the frame through the pipeline's RTL under
    Verilator and reports the cycle of its last output beat.
    """
    from compiler.compile import SimulationResult, _single_input

    cfg, manifest, arch = load_pipeline(out_dir)
    spec = manifest["inputs"][0]
    x = _single_input(spec, inputs, seed)
    if backend == "iss":
        y = run_stages(cfg, x)
        cycles = plan.latency_model(cfg)["latency_cycles"]
        details = None
    elif backend == "rtl":
        from .rtl import run_pipeline_rtl
        run = run_pipeline_rtl(cfg, x, seed=seed)
        if not run.finished:
            raise errors.ConvForgeError(
                f"The RTL of {out_dir} produced {run.beats} of "
                f"{cfg.output_shape[1] * cfg.output_shape[2]} output pixels before the cycle "
                f"bound; the pipeline stalled (please report this model)")
        y = run.outputs
        cycles = run.frame_done[0] + 1
        details = run
    else:
        raise errors.ConvForgeError(f"Backend {backend!r} does not run SESL outputs; use "
                                    f"the ISS or --rtl")
    out_spec = manifest["outputs"][0]
    outputs = {out_spec["name"]: y}
    real = {out_spec["name"]: y.astype(np.float64) * out_spec["scale"]}
    return SimulationResult(outputs, real, cycles, {spec["name"]: x}, details, arch)


#: Top module name of an elaborated SESL pipeline.
SESL_TOP = "convforge_sesl"


def elaborate_sesl(out_dir, verilog_dir) -> tuple[Path, PipelineConfig]:
    """Write the Verilog of a SESL compile output's pipeline to
    ``verilog_dir/convforge_sesl.v`` (plus its ``pipeline.json``)."""
    from amaranth.back import verilog

    from hw.sesl.pipeline import SeslPipeline

    cfg, _, _ = load_pipeline(out_dir)
    text = verilog.convert(SeslPipeline(cfg), name=SESL_TOP, emit_src=False)
    out = Path(verilog_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{SESL_TOP}.v"
        path.write_text(text)
        (out / "pipeline.json").write_text(cfg.to_json())
    except OSError as e:
        raise errors.ConvForgeError(f"-o {verilog_dir}: cannot write there "
                                    f"({e.strerror or e}); choose another directory") from None
    return path, cfg
