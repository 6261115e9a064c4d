"""``convforge compile --mode hybrid``: a SESL prefix plus the SEML core, split by SplitCNN.

Writes, atomically::

    OUT/program.bin    the SEML part's program (its input is the hand-off tensor)
    OUT/weights.bin    the SEML part's weight image
    OUT/arch.json      the SEML core's arch
    OUT/listing.txt    the SEML program's disassembly
    OUT/pipeline.json  the SESL prefix (absent when SplitCNN answers "pure SEML")
    OUT/manifest.json  mode "hybrid": the model input, the hand-off tensor (its DDR
                       offset, where the prefix writes it in the SEML input layout), the
                       outputs, the split and hashes
    OUT/report.txt     SplitCNN's steps, the split and both parts (people)
    OUT/report.json    the same keys as every mode's, plus ``split``, ``budget`` and
                       ``splitcnn`` (scripts)

``simulate`` runs the prefix's golden ops stage by stage, writes the hand-off tensor
into the SEML part's DDR image and runs the program on the ISS.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from compiler import errors
from compiler.codegen.output import write_output_dir
from compiler.codegen.report import REPORT_FORMAT
from hw.arch import ArchConfig

from .split import (
    BUFFER_SLACK,
    HybridBudget,
    handoff_cycles,
    seml_resources,
    shrink_buffers,
    split_cnn,
    suffix_graph,
)

__all__ = ["compile_hybrid", "hybrid_command", "hybrid_report", "simulate_hybrid"]

#: Files of the SEML part copied into a hybrid output.
SEML_FILES = ("program.bin", "weights.bin", "arch.json", "listing.txt")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_quantized(onnx_path, arch: ArchConfig, calibration=None, *,
                     scale_mode: str | None = None, seed: int = 0):
    """The quantized graph the hybrid compile splits (as the other modes quantize)."""
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import PassContext, import_model

    graph = import_model(onnx_path, PassContext(arch=arch))
    overrides = {} if scale_mode is None else {"scale_mode": scale_mode}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if calibration is None else "default")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(arch, **overrides), calibration,
                             seed=seed)
    return qgraph


def hybrid_report(split, graph, seml_report: dict, cfg, title: str, arch: ArchConfig,
                  base_arch: ArchConfig) -> dict:
    """``report.json`` of a hybrid compile (``seml_report``: the SEML part's report on
    ``arch``; ``base_arch``: the SEML baseline with its buffers shrunk alike)."""
    from compiler.sesl.compile import sesl_report_json
    from compiler.sesl.plan import latency_model

    best = split.best
    clock = arch.clock_mhz
    seml_cycles = int(seml_report["cycles_per_frame"])
    seml_use = seml_resources(arch, split.budget.family)
    layers = [dict(entry, part="seml") for entry in seml_report["layers"]]
    sesl = None
    sesl_cycles = sesl_latency = 0
    if cfg is not None:
        sesl = sesl_report_json(cfg, clock, title)
        drain = handoff_cycles(cfg, arch)
        sesl_cycles = max(int(sesl["cycles_per_frame"]), drain)
        sesl_latency = int(latency_model(cfg)["latency_cycles"]) + drain // cfg.output_shape[1]
        layers = [dict(entry, part="sesl") for entry in sesl["layers"]] + layers
    cycles = max(seml_cycles, sesl_cycles)
    sesl_units = sesl["mac_units"] if sesl else 0
    units = seml_report["mac_units"] + sesl_units
    macs = seml_report["macs_per_frame"] + (sesl["macs_per_frame"] if sesl else 0)
    use = dict(seml_use)
    handoff_bytes = int(np.prod(graph.shape(best.cut))) if best.cut else 0
    if sesl:
        for r in ("lut", "ff", "dsp"):
            use[r] += best.sesl_use[r]
        use["bram36"] += sesl["resources"]["bram36"]
    sesl_buffer = sesl["buffer_bits"] if sesl else 0
    seml_buffer = seml_report["buffer_bits"]
    baseline = split.baseline
    return {
        "format": REPORT_FORMAT, "mode": "hybrid", "model": title, "arch": arch.name,
        "clock_mhz": clock, "cycles_per_frame": cycles,
        "frames_per_s": clock * 1e6 / cycles, "latency_cycles": sesl_latency + seml_cycles,
        "mac_units": units, "macs_per_frame": int(macs),
        "mac_utilization": macs / (cycles * units) if units else None,
        "resources": {"lut": int(use["lut"]), "ff": int(use["ff"]), "dsp": int(use["dsp"]),
                      "bram36": int(np.ceil(use["bram36"] - 1e-9))},
        "resource_model": ("SEML core: boards.database.estimate_resources; SESL prefix: "
                           "compiler.sesl.resources.estimate_sesl_resources + hand-off"),
        "buffer_bits": int(sesl_buffer + seml_buffer),
        "buffers": {"sesl_bits": int(sesl_buffer), "seml_bits": int(seml_buffer),
                    "handoff": "ddr", "handoff_bytes": handoff_bytes,
                    "baseline_seml_bits": 8 * (base_arch.ibuf_bytes + base_arch.obuf_bytes
                                               + base_arch.wbuf_bytes)},
        "weight_bits": int((sesl["weight_bits"] if sesl else 0)
                           + 8 * sum(e["weight_bits"] // 8 for e in seml_report["layers"])),
        "split": {"sesl_layers": best.k, "cut": best.cut, "pure_seml": split.pure_seml,
                  "sesl_layer_names": [layer.name for layer in graph.layers[:best.k]],
                  "seml_layers": len(graph.layers) - best.k, "reason": split.reason},
        "budget": dict(split.budget.to_dict(),
                       split={"sesl_dsp": int(best.sesl_use["dsp"]) if best.sesl_use else 0,
                              "seml_dsp": int(seml_use["dsp"]),
                              "sesl_mac_units": int(sesl_units),
                              "seml_mac_units": int(seml_report["mac_units"])}),
        "parts": {
            "sesl": None if sesl is None else {
                "cycles_per_frame": sesl_cycles, "latency_cycles": sesl_latency,
                "pipeline_cycles_per_frame": int(sesl["cycles_per_frame"]),
                "handoff_cycles_per_frame": drain,
                "mac_units": sesl_units, "bottleneck": sesl["bottleneck"],
                "resources": sesl["resources"], "firb": sesl["firb"]},
            "seml": {"cycles_per_frame": seml_cycles, "mac_units": seml_report["mac_units"],
                     "arch": arch.to_dict(), "resources": seml_use,
                     "predicted_by_splitcnn": best.seml_cycles},
        },
        "splitcnn": {"baseline": split.steps[0], "steps": split.steps[1:],
                     "speedup_vs_baseline": baseline.cycles_per_frame / cycles},
        "layers": layers,
    }


def format_hybrid_report(r: dict, seml_text: str, sesl_text: str | None) -> str:
    s = r["split"]
    b = r["budget"]
    out = [f"ConvForge hybrid compile report: {r['model']}",
           (f"mode hybrid (SESL prefix + SEML core), {r['clock_mhz']:g} MHz, budget "
           f"{b['dsp']} DSPs ({b['source']})"), "", "SplitCNN steps:",
           ("step  SESL layers  cut                          DSP SESL+SEML   T_SESL      "
           "T_SEML      frames/s  improves")]
    for st in [r["splitcnn"]["baseline"]] + r["splitcnn"]["steps"]:
        if st.get("feasible") is False:
            out.append(f"{st['step']:>4}  {st['sesl_layers']:>11}  {st['cut']!s:<27}  "
                       f"does not fit the budget")
            continue
        d = st["dsp"]
        out.append(f"{st['step']:>4}  {st['sesl_layers']:>11}  {st['cut'] or '-'!s:<27}  "
                   f"{d['sesl']:>5}+{d['seml']:<8}  {st['sesl_cycles']:>10,}  "
                   f"{st['seml_cycles']:>10,}  {st['frames_per_s']:>9,.1f}  "
                   f"{'-' if st['improves'] is None else ('yes' if st['improves'] else 'no')}")
    out.append("")
    if s["pure_seml"]:
        out.append(f"answer: {s['reason']}")
    else:
        out.append(f"answer: {s['sesl_layers']} layers on SESL engines, cut at {s['cut']!r} "
                   f"(hand-off through DDR, {r['buffers']['handoff_bytes']:,} B/frame); "
                   f"{r['split']['seml_layers']} layers on the SEML core")
        out.append(f"stopped: {s['reason']}")
    res = r["resources"]
    out += [
        (f"throughput: {r['cycles_per_frame']:,} cycles/frame = 1/max(T_SESL, T_SEML) "
         f"({r['frames_per_s']:,.1f} frames/s, {r['splitcnn']['speedup_vs_baseline']:.2f}x "
         f"the SEML baseline); latency {r['latency_cycles']:,} cycles = T_SESL latency + "
         f"T_SEML"),
        (f"DSP split: SESL {b['split']['sesl_dsp']} ({b['split']['sesl_mac_units']} MAC "
         f"units), SEML {b['split']['seml_dsp']} ({b['split']['seml_mac_units']} MAC units)"),
        (f"MAC utilization {100 * (r['mac_utilization'] or 0):.1f}%; estimated resources "
         f"{res['lut']:,} LUT, {res['ff']:,} FF, {res['dsp']} DSP, {res['bram36']} BRAM36"),
        (f"on-chip buffers: {r['buffer_bits'] // 8:,} B (SESL {r['buffers']['sesl_bits'] // 8:,}"
         f" B, SEML {r['buffers']['seml_bits'] // 8:,} B) vs "
         f"{r['buffers']['baseline_seml_bits'] // 8:,} B for the SEML baseline"), ""]
    if sesl_text:
        out += ["SESL prefix:", sesl_text]
    out += ["SEML part:", seml_text]
    return "\n".join(out)


def _assemble(qgraph, split, title: str, model_input: dict) -> dict:
    """All files of the hybrid output (SEML part compiled exactly)."""
    from compiler.compile import compile_graph
    from compiler.sesl.compile import format_sesl_report, sesl_report_json

    best = split.best
    arch = best.arch
    if best.k:
        seml_graph = suffix_graph(qgraph, best.k, best.cut)
        cfg = best.pipeline
    else:
        seml_graph, cfg = qgraph, None
    # the SEML part keeps the smallest buffers that cost at most 1 % of the throughput
    from compiler.codegen.program import generate

    full = generate(seml_graph, arch).cycles
    arch, _ = shrink_buffers(seml_graph, arch, (1 + BUFFER_SLACK) * max(full, best.sesl_cycles))
    base_arch, _ = shrink_buffers(qgraph, split.baseline.arch,
                                  (1 + BUFFER_SLACK) * split.baseline.cycles_per_frame)
    with tempfile.TemporaryDirectory(prefix="convforge-hybrid-") as tmp:
        result = compile_graph(seml_graph, arch, Path(tmp) / "seml", model_name=title)
        files = {name: (result.out_dir / name).read_bytes() for name in SEML_FILES}
        seml_report = json.loads((result.out_dir / "report.json").read_text())
        seml_text = (result.out_dir / "report.txt").read_text()
        manifest = result.manifest
    report = hybrid_report(split, qgraph, seml_report, cfg, title, arch, base_arch)
    manifest = dict(manifest, mode="hybrid")
    manifest["seml_inputs"] = manifest["inputs"]
    manifest["inputs"] = [model_input]
    manifest["handoff"] = None if cfg is None else dict(manifest["seml_inputs"][0],
                                                        via="ddr")
    manifest["split"] = report["split"]
    manifest["budget"] = report["budget"]
    sesl_text = None
    if cfg is not None:
        pipeline_json = cfg.to_json()
        files["pipeline.json"] = pipeline_json
        manifest["files"]["pipeline.json"] = {"bytes": len(pipeline_json),
                                              "sha256": _sha(pipeline_json.encode())}
        sesl_text = format_sesl_report(sesl_report_json(cfg, arch.clock_mhz, title))
    files["manifest.json"] = json.dumps(manifest, indent=2, default=_json) + "\n"
    files["report.json"] = json.dumps(report, indent=2, default=_json) + "\n"
    files["report.txt"] = format_hybrid_report(report, seml_text, sesl_text)
    return files, report


def _json(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{value!r} is not JSON serializable")


def compile_hybrid(onnx_path, budget: HybridBudget, out_dir, calibration=None, *,
                   scale_mode: str | None = None, seed: int = 0, firb: bool = False,
                   verify: bool = False, qgraph=None) -> dict:
    """Compile an ONNX model to a hybrid output in ``out_dir``; returns the report dict.

    With ``verify``, a seeded random input is first run through the output (prefix golden
    ops, then the SEML program on the ISS) and compared with the golden runner on the
    whole model, bit for bit; nothing is written if they differ.
    """
    start = time.perf_counter()
    if qgraph is None:
        qgraph = import_quantized(onnx_path, budget.base, calibration, scale_mode=scale_mode,
                                  seed=seed)
    title = Path(onnx_path).stem if isinstance(onnx_path, (str, Path)) else qgraph.name
    if len(qgraph.inputs) != 1:
        raise errors.MappingError(f"The hybrid mode maps models with one input; "
                                  f"{title!r} has {len(qgraph.inputs)}")
    split = split_cnn(qgraph, budget, firb=firb)
    name = qgraph.inputs[0]
    model_input = {"name": name, "shape": list(qgraph.shape(name)),
                   "scale": qgraph.tensors[name].scale, "bits": budget.base.act_bits}
    files, report = _assemble(qgraph, split, title, model_input)
    report["compile_time_s"] = time.perf_counter() - start
    if verify:
        with tempfile.TemporaryDirectory(prefix="convforge-hybrid-verify-") as tmp:
            write_output_dir(Path(tmp) / "out", files)
            verify_hybrid(Path(tmp) / "out", qgraph, seed)
    write_output_dir(out_dir, files)
    return report


def verify_hybrid(out_dir, qgraph, seed: int = 0) -> None:
    """Run a seeded random input through a hybrid output and compare with the golden
    runner on the whole quantized graph; raise :class:`ConvForgeError` on a difference."""
    from compiler.runner import run_golden_int

    result = simulate_hybrid(out_dir, None, seed=seed)
    want = run_golden_int(qgraph, result.inputs).outputs
    for name, ref in want.items():
        got = result.outputs[name].reshape(ref.shape)
        if not np.array_equal(got, ref):
            index = tuple(int(i) for i in np.argwhere(got != ref)[0])
            raise errors.ConvForgeError(
                f"Verification failed: hybrid output {name!r} differs from the golden runner "
                f"at {index} ({int(got[index])} != {int(ref[index])}); please report this "
                f"model")


def load_hybrid(out_dir):
    """``(arch, program, ddr, manifest, pipeline or None)`` of a hybrid output."""
    from compiler.compile import load_image
    from hw.sesl.config import PipelineConfig

    arch, program, ddr, manifest = load_image(out_dir)
    cfg = None
    if manifest.get("handoff") is not None:
        path = Path(out_dir) / "pipeline.json"
        try:
            text = path.read_text()
        except OSError:
            raise errors.ProgramFormatError(f"{path} is missing; {out_dir} is not a complete "
                                            f"hybrid compile output (run `convforge compile` "
                                            f"again)") from None
        want = manifest.get("files", {}).get("pipeline.json", {}).get("sha256")
        if want != _sha(text.encode()):
            raise errors.ProgramFormatError(f"{path} does not match its manifest (edited or "
                                            f"from another compile); run `convforge compile` "
                                            f"again")
        cfg = PipelineConfig.from_json(text)
    return arch, program, ddr, manifest, cfg


def simulate_hybrid(out_dir, inputs=None, *, backend: str = "iss", seed: int = 0):
    """One inference of a hybrid output: the prefix's golden ops (with ``"rtl"``: the
    prefix's RTL and hand-off writer under Verilator), then the SEML program on
    ``backend`` (a key of :data:`compiler.compile.BACKENDS`: the ISS, or the SEML core's
    RTL); cycles are the prefix's latency plus the SEML run's."""
    from compiler.compile import BACKENDS, SimulationResult, _single_input
    from compiler.sesl.compile import run_stages
    from compiler.sesl.plan import latency_model
    from sim.iss import decode_activations, encode_activations

    if backend not in BACKENDS:
        raise errors.ConvForgeError(f"Unknown simulation backend {backend!r}; available: "
                                    f"{', '.join(sorted(BACKENDS))}")
    if backend not in ("iss", "rtl"):
        raise errors.ConvForgeError(
            f"Backend {backend!r} does not run hybrid outputs; use the ISS or --rtl")
    arch, program, ddr, manifest, cfg = load_hybrid(out_dir)
    spec = manifest["inputs"][0]
    x = _single_input(spec, inputs, seed)
    handoff = manifest["handoff"] or manifest["seml_inputs"][0]
    latency = 0
    prefix = None
    if cfg is not None and backend == "rtl":
        # the SESL part's RTL (pipeline + hand-off writer) writes the SEML input to DDR
        from .rtl import run_prefix_rtl

        prefix = run_prefix_rtl(cfg, x, base=handoff["offset"], data_bits=arch.axi_data_bits,
                                addr_bits=arch.axi_addr_bits, seed=seed)
        if len(prefix.tensors) != 1 or prefix.error:
            raise errors.ConvForgeError(
                f"The RTL of the SESL prefix of {out_dir} did not write its frame "
                f"({len(prefix.tensors)} frames, AXI error {prefix.error}); please report "
                f"this model")
        raw = prefix.tensors[0]
        latency = prefix.done[0]
    else:
        if cfg is not None:
            h = run_stages(cfg, x)
            latency = latency_model(cfg)["latency_cycles"]
        else:
            h = x
        raw = encode_activations(h, handoff["bits"])
    ddr[handoff["offset"]:handoff["offset"] + raw.size] = raw
    cycles, details = BACKENDS[backend](arch, program, ddr)
    outputs, real = {}, {}
    for out_spec in manifest["outputs"]:
        y = decode_activations(ddr[out_spec["offset"]:out_spec["offset"] + out_spec["bytes"]],
                               out_spec["bits"]).reshape((1,) + tuple(out_spec["shape"]))
        outputs[out_spec["name"]] = y
        real[out_spec["name"]] = y.astype(np.float64) * out_spec["scale"]
    if prefix is not None:
        details = {"prefix": prefix, "seml": details}
    return SimulationResult(outputs, real, latency + cycles, {spec["name"]: x}, details, arch)


def budget_from_args(args) -> HybridBudget:
    """The budget of ``--board NAME`` or ``--budget-dsp N`` (exactly one)."""
    if args.arch is not None:
        raise errors.ConvForgeError("--mode hybrid sizes its own SEML core: give --board NAME "
                                    "or --budget-dsp N instead of --arch")
    if (args.board is None) == (args.budget_dsp is None):
        raise errors.ConvForgeError("--mode hybrid needs exactly one of --board NAME or "
                                    "--budget-dsp N")
    if args.board is not None:
        from boards.database import get_board
        try:
            return HybridBudget.from_board(get_board(args.board))
        except ValueError as e:
            raise errors.ConvForgeError(f"--board {args.board}: {e}") from None
    if args.budget_dsp < 1:
        raise errors.ConvForgeError(f"--budget-dsp must be a positive integer, not "
                                    f"{args.budget_dsp}")
    return HybridBudget(args.budget_dsp, source=f"--budget-dsp {args.budget_dsp}")


def hybrid_command(args) -> int:
    """``convforge compile MODEL --mode hybrid (--board NAME | --budget-dsp N) -o OUT``."""
    if args.target_fps is not None or args.budget_bram is not None:
        raise errors.ConvForgeError("--target-fps and --budget-bram apply to --mode sesl; "
                                    "the hybrid mode balances its two parts itself")
    budget = budget_from_args(args)
    compile_hybrid(args.model, budget, args.output, args.calib, scale_mode=args.scale_mode,
                   firb=args.firb, verify=args.verify)
    if not args.quiet:
        print((Path(args.output) / "report.txt").read_text(), end="")
    if args.calib is None:
        print("note: no --calib samples given; scales come from seeded random inputs")
    if args.verify:
        print("verified: the SESL prefix's golden ops then the ISS equal the golden runner, "
              "bit for bit")
    print(f"wrote {args.output}/ (program.bin, weights.bin, arch.json, pipeline.json, "
          f"manifest.json, listing.txt, report.txt, report.json)")
    return 0
