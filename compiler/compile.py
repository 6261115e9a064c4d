"""Top level: compile an ONNX model for an arch, and simulate a compiled output directory.

:func:`compile_model` runs the whole flow -- import and lowering
(:mod:`compiler.pipeline`), quantization (:mod:`compiler.passes.quantize`), code
generation (:mod:`compiler.codegen.program`) -- and writes, atomically::

    OUT/program.bin    header + instructions (docs/isa.md)
    OUT/weights.bin    weight image
    OUT/arch.json      the arch (its hash is in the program header)
    OUT/manifest.json  memory map, I/O tensors (offsets, shapes, scales), hashes, layers
    OUT/listing.txt    disassembly (assembles back to program.bin)
    OUT/report.txt     per-layer table: engine, tiles, MACs, predicted cycles
    OUT/report.json    the same for scripts (mode, cycles, frames/s, resources, layers)

:func:`simulate` loads such a directory into a DDR image, runs it on a backend
(``"iss"`` built in; :func:`register_backend` adds others, e.g. the RTL) and
returns the outputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler import errors
from compiler.codegen.listing import disassemble
from compiler.codegen.output import write_file, write_output_dir
from compiler.codegen.program import Program, generate
from compiler.codegen.report import format_report, report_json
from compiler.ir import Graph
from hw import isa
from hw.arch import ArchConfig
from sim import golden
from sim.iss import ISS, decode_activations, encode_activations

__all__ = [
    "BACKENDS",
    "MANIFEST_FORMAT",
    "CompileResult",
    "SimulationResult",
    "check_buildable",
    "compile_graph",
    "compile_model",
    "ddr_image",
    "load_arch",
    "load_image",
    "register_backend",
    "simulate",
    "verify_program",
]

#: Version of the ``manifest.json`` layout.
MANIFEST_FORMAT = 1


@dataclass
class CompileResult:
    """What :func:`compile_model` produced.

    Members
    -------
    out_dir : Path
    graph : Graph
        The quantized graph that was compiled (the golden runner's input).
    program : Program
    program_bin : bytes
    manifest : dict
    timings : dict
        Seconds per stage.
    """
    out_dir: Path
    graph: Graph
    program: Program
    program_bin: bytes
    manifest: dict
    timings: dict = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _io(program: Program, graph: Graph, names, arch: ArchConfig):
    return [{"name": n, "offset": program.tensors[n]["offset"],
             "shape": program.tensors[n]["shape"], "bytes": program.tensors[n]["bytes"],
             "scale": graph.tensors[n].scale, "bits": arch.act_bits,
             "dtype": "int8" if isa.element_bytes(arch.act_bits) == 1 else "int16le"}
            for n in names]


def ddr_image(program: bytes, weights: bytes, weights_offset: int, ddr_bytes: int) -> np.ndarray:
    """The DDR image a run starts from (uint8): the program at 0, the weights at their offset."""
    ddr = np.zeros(ddr_bytes, dtype=np.uint8)
    ddr[:len(program)] = np.frombuffer(program, dtype=np.uint8)
    ddr[weights_offset:weights_offset + len(weights)] = np.frombuffer(weights, dtype=np.uint8)
    return ddr


def verify_program(graph: Graph, arch: ArchConfig, program: Program, program_bin: bytes,
                   seed: int = 0) -> int:
    """Run ``program`` on the ISS with a seeded random input and compare every output
    with the golden network runner, bit for bit; returns the ISS cycle count.

    Raises
    ------
    ConvForgeError
        If any output differs (naming the tensor and the first differing index).
    """
    from compiler.runner import run_golden_int
    ddr = ddr_image(program_bin, program.weights, program.weights_offset, program.ddr_bytes)
    rng = np.random.default_rng(seed)
    lo, hi = golden.qrange(arch.act_bits)
    inputs = {}
    for name in graph.inputs:
        x = rng.integers(lo, hi + 1, size=(1,) + graph.shape(name), dtype=np.int64)
        spec = program.tensors[name]
        ddr[spec["offset"]:spec["offset"] + spec["bytes"]] = encode_activations(x, arch.act_bits)
        inputs[name] = x
    cycles = ISS(arch).run(program_bin, ddr, check_written=True).cycles
    want = run_golden_int(graph, inputs).outputs
    for name, ref in want.items():
        spec = program.tensors[name]
        got = decode_activations(ddr[spec["offset"]:spec["offset"] + spec["bytes"]],
                                 arch.act_bits).reshape(ref.shape)
        if not np.array_equal(got, ref):
            index = tuple(int(i) for i in np.argwhere(got != ref)[0])
            raise errors.ConvForgeError(
                f"Verification failed: ISS output {name!r} differs from the golden runner at "
                f"{index} ({int(got[index])} != {int(ref[index])}); please report this model")
    return cycles


def check_buildable(arch: ArchConfig) -> None:
    """Refuse an arch whose conv and depthwise engines cannot be built: their line
    buffers must hold a ``conv_k_max x conv_k_max`` window.

    Raises
    ------
    MappingError
        Naming ``max_width`` / ``max_height`` and ``conv_k_max``.
    """
    for name in ("max_width", "max_height"):
        if getattr(arch, name) < arch.conv_k_max:
            raise errors.MappingError(
                f"Arch {arch.name!r} has {name}={getattr(arch, name)}, smaller than "
                f"conv_k_max={arch.conv_k_max}: the conv and depthwise engines' line buffers "
                f"cannot hold one kernel window; increase {name} to at least "
                f"{arch.conv_k_max} or lower conv_k_max")


def compile_graph(graph: Graph, arch: ArchConfig, out_dir, *, model_name: str | None = None,
                  timings: dict | None = None, verify: bool = False,
                  arch_choice: dict | None = None) -> CompileResult:
    """Generate code for an already quantized graph and write ``out_dir``.

    With ``verify``, the program is first run on the ISS and checked against the
    golden runner (:func:`verify_program`); nothing is written if they differ.

    Raises
    ------
    ConvForgeError
        The arch cannot be built (:func:`check_buildable`) or a layer cannot be mapped.
    """
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
    check_buildable(arch)
    timings = {} if timings is None else timings
    start = time.perf_counter()
    program = generate(graph, arch)
    timings["codegen"] = time.perf_counter() - start
    start = time.perf_counter()
    program_bin = isa.build_program(arch.config_hash, program.instructions,
                                    weights_offset=program.weights_offset,
                                    weights=program.weights, ddr_bytes=program.ddr_bytes)
    if verify:
        verify_start = time.perf_counter()
        verify_program(graph, arch, program, program_bin)
        timings["verify"] = time.perf_counter() - verify_start
    title = model_name or graph.name
    listing = disassemble(program_bin, program.comments, title)
    report = format_report(program, arch, title)
    summary = report_json(program, arch, title)
    if arch_choice is not None:  # --board: the arch sized to the model, and why
        from compiler.mapping.arch_fit import format_choice
        report += "\n" + format_choice(arch_choice)
        summary["arch_choice"] = arch_choice
    arch_json = arch.to_json()
    manifest = {
        "format": MANIFEST_FORMAT,
        "mode": "seml",
        "isa_version": isa.ISA_VERSION,
        "model": title,
        "arch_hash": f"0x{arch.config_hash:016x}",
        "files": {
            "program.bin": {"bytes": len(program_bin), "sha256": _sha256(program_bin)},
            "weights.bin": {"bytes": len(program.weights), "sha256": _sha256(program.weights)},
            "arch.json": {"bytes": len(arch_json), "sha256": _sha256(arch_json.encode())},
        },
        "memory_map": {
            "program": {"offset": 0, "bytes": len(program_bin)},
            "weights": {"offset": program.weights_offset, "bytes": len(program.weights)},
            "activations": {"offset": program.activations_offset,
                            "bytes": program.activations_bytes},
            "ddr_bytes": program.ddr_bytes,
        },
        "inputs": _io(program, graph, graph.inputs, arch),
        "outputs": _io(program, graph, graph.outputs, arch),
        "host_ops": [{"name": op.name, "op_type": op.op_type, "input": op.input,
                      "output": op.output, "attrs": op.attrs} for op in graph.host_ops],
        "tensors": program.tensors,
        "weight_blocks": program.weight_blocks,
        "predicted_cycles": program.cycles,
        "instructions": len(program.instructions),
        "layers": [r.to_dict() for r in program.layers],
    }
    files = {
        "program.bin": program_bin,
        "weights.bin": program.weights,
        "arch.json": arch_json,
        "manifest.json": json.dumps(manifest, indent=2, default=_json_default) + "\n",
        "listing.txt": listing,
        "report.txt": report,
        "report.json": json.dumps(summary, indent=2, default=_json_default) + "\n",
    }
    out = write_output_dir(out_dir, files)
    timings["write"] = time.perf_counter() - start
    return CompileResult(out, graph, program, program_bin, manifest, timings)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{value!r} is not JSON serializable")


def compile_model(onnx_path, arch: ArchConfig, out_dir, calibration=None, *,
                  scale_mode: str | None = None, seed: int = 0,
                  verify: bool = False, arch_choice: dict | None = None) -> CompileResult:
    """Compile an ONNX model for ``arch`` into ``out_dir``.

    Parameters
    ----------
    onnx_path : str, Path or onnx.ModelProto
    arch : ArchConfig
    out_dir : str or Path
        Written atomically; an existing ConvForge output there is replaced.
    calibration : str, Path, ndarray, dict or None
        Calibration samples (``.npy`` / ``.npz`` or arrays); ``None`` uses seeded
        random inputs (with a warning).
    scale_mode : str or None
        ``"per_channel"`` (default), ``"per_layer"`` or ``"pot"``.
    seed : int
        Seed of the random calibration.
    verify : bool
        Run the program on the ISS against the golden runner before writing.

    Raises
    ------
    ConvForgeError
        Unsupported model, quantization or mapping failure; nothing is written.
    """
    from compiler.passes.quantize import QuantConfig, quantize
    from compiler.pipeline import PassContext, import_model

    if not isinstance(arch, ArchConfig):
        raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
    timings = {}
    start = time.perf_counter()
    graph = import_model(onnx_path, PassContext(arch=arch))
    timings["import"] = time.perf_counter() - start
    start = time.perf_counter()
    overrides = {} if scale_mode is None else {"scale_mode": scale_mode}
    config = QuantConfig.from_arch(arch, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if calibration is None else "default")
        qgraph, _ = quantize(graph, config, calibration, seed=seed)
    timings["quantize"] = time.perf_counter() - start
    name = Path(onnx_path).stem if isinstance(onnx_path, (str, Path)) else None
    return compile_graph(qgraph, arch, out_dir, model_name=name, timings=timings, verify=verify,
                         arch_choice=arch_choice)


# Simulation ---------------------------------------------------------------------------

@dataclass
class SimulationResult:
    """Outputs of one simulated inference.

    Members
    -------
    outputs : dict of str to ndarray
        Integer outputs ``(1, C, H, W)`` (int64).
    real : dict of str to ndarray
        The same, dequantized with the manifest's scales.
    cycles : int
        Cycles reported by the backend (predicted by the ISS, counted by the RTL).
    inputs : dict of str to ndarray
        The integer inputs that were fed.
    details : object
        Backend-specific result (the ISS's :class:`sim.iss.RunResult`).
    arch : ArchConfig or None
        The arch of the compile output that ran.
    """
    outputs: dict
    real: dict
    cycles: int
    inputs: dict
    details: object = None
    arch: ArchConfig | None = None


def _run_iss(arch: ArchConfig, program: bytes, ddr: np.ndarray):
    result = ISS(arch).run(program, ddr, check_written=True)
    return result.cycles, result


#: Simulation backends: name -> ``fn(arch, program_bytes, ddr_uint8) -> (cycles, details)``;
#: ``fn`` executes the program over the DDR image in place.
BACKENDS = {"iss": _run_iss}


def register_backend(name: str, fn) -> None:
    """Make ``fn`` available as ``simulate(..., backend=name)`` (e.g. an RTL runner)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"backend name must be a non-empty string, not {name!r}")
    if not callable(fn):
        raise TypeError(f"backend must be callable, not {fn!r}")
    BACKENDS[name] = fn


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise errors.ProgramFormatError(
            f"{path} is missing; {path.parent} is not a complete compile output "
            f"(run `convforge compile` again)") from None
    except OSError as e:
        raise errors.ProgramFormatError(
            f"{path} cannot be read ({e.strerror or e}); run `convforge compile` again") \
            from None


def load_image(out_dir):
    """Read a compile output: ``(arch, program bytes, ddr image, manifest)``.

    The DDR image holds the program at 0 and the weights at their offset.

    Raises
    ------
    compiler.errors.ProgramFormatError
        Missing files, a program or weight image that fails its checks, or files
        of different compilations.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise errors.ProgramFormatError(f"{out} is not a compile output directory")
    try:
        manifest = json.loads(_read(out / "manifest.json"))
        arch = ArchConfig.from_dict(json.loads(_read(out / "arch.json")))
    except (ValueError, TypeError) as e:
        raise errors.ProgramFormatError(f"{out}: unreadable manifest.json or arch.json: {e}") \
            from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise errors.ProgramFormatError(
            f"{out / 'manifest.json'} is not a format-{MANIFEST_FORMAT} ConvForge manifest "
            f"(format {found!r}); run `convforge compile` again")
    program = _read(out / "program.bin")
    weights = _read(out / "weights.bin")
    try:
        header, _ = isa.parse_program(program, arch.config_hash)
        ISS.check_weights(program, weights)
    except isa.ProgramFormatError as e:
        raise errors.ProgramFormatError(f"{out / 'program.bin'}: {e}") from None
    ddr = ddr_image(program, weights, header.weights_offset, header.ddr_bytes)
    return arch, program, ddr, manifest


def _mode(out_dir) -> str:
    """``"seml"`` or ``"sesl"``: the mode a compile output was made for."""
    try:
        manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return "seml"  # load_image reports what is wrong
    return manifest.get("mode", "seml") if isinstance(manifest, dict) else "seml"


def _single_input(spec, inputs, seed):
    """The one input of a single-input output directory: ``inputs`` is ``None``, an
    array, or a dict naming that input."""
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - {spec["name"]})
        if unknown:
            raise errors.ConvForgeError(f"No model input named {', '.join(map(repr, unknown))};"
                                        f" the input is {spec['name']!r}")
        inputs = inputs.get(spec["name"])
    return _input_values(spec, inputs, seed)


def _input_values(spec, value, seed):
    shape = tuple(spec["shape"])
    lo, hi = golden.qrange(spec["bits"])
    if value is None:
        rng = np.random.default_rng(seed)
        return rng.integers(lo, hi + 1, size=(1,) + shape, dtype=np.int64)
    x = np.asarray(value)
    if x.size != int(np.prod(shape)):
        raise errors.ConvForgeError(
            f"Input {spec['name']!r} needs {int(np.prod(shape))} values (shape {shape}), "
            f"not an array of shape {x.shape}")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise errors.ConvForgeError(f"Input {spec['name']!r} contains inf or NaN; pass "
                                        f"finite samples")
        return golden.quantize(x.reshape((1,) + shape), spec["scale"], spec["bits"])
    if x.dtype.kind not in "iu" or x.min() < lo or x.max() > hi:
        raise errors.ConvForgeError(
            f"Integer input {spec['name']!r} must lie in [{lo}, {hi}] (act_bits="
            f"{spec['bits']}); pass float samples to have them quantized")
    return x.astype(np.int64).reshape((1,) + shape)


def simulate(out_dir, inputs=None, *, backend: str = "iss", seed: int = 0) -> SimulationResult:
    """Run one inference of a compile output on ``backend``.

    Parameters
    ----------
    out_dir : str or Path
        A directory written by :func:`compile_model`.
    inputs : ndarray, dict of str to ndarray, or None
        Float samples are quantized at the input scale; integer samples are fed as
        they are; ``None`` feeds seeded random integers.
    backend : str
        A key of :data:`BACKENDS`.
    seed : int
        Seed of the random input.
    """
    if backend not in BACKENDS:
        raise errors.ConvForgeError(f"Unknown simulation backend {backend!r}; available: "
                                    f"{', '.join(sorted(BACKENDS))}")
    if _mode(out_dir) == "sesl":
        from compiler.sesl.compile import simulate_sesl
        return simulate_sesl(out_dir, inputs, backend=backend, seed=seed)
    if _mode(out_dir) == "partitioned":  # host fallback: segments + onnxruntime
        from compiler.partition import simulate_partitioned
        return simulate_partitioned(out_dir, inputs, backend=backend, seed=seed)
    if _mode(out_dir) == "hybrid":
        from compiler.hybrid.compile import simulate_hybrid
        return simulate_hybrid(out_dir, inputs, backend=backend, seed=seed)
    arch, program, ddr, manifest = load_image(out_dir)
    specs = manifest["inputs"]
    if not isinstance(inputs, dict):
        if inputs is not None and len(specs) != 1:
            raise errors.ConvForgeError(f"The model has {len(specs)} inputs; pass a dict")
        inputs = {specs[0]["name"]: inputs} if specs else {}
    unknown = sorted(set(inputs) - {spec["name"] for spec in specs})
    if unknown:
        raise errors.ConvForgeError(
            f"No model input named {', '.join(map(repr, unknown))}; the inputs are "
            f"{', '.join(repr(spec['name']) for spec in specs)}")
    fed = {}
    for spec in specs:
        x = _input_values(spec, inputs.get(spec["name"]), seed)
        fed[spec["name"]] = x
        raw = encode_activations(x, spec["bits"])
        ddr[spec["offset"]:spec["offset"] + raw.size] = raw
    try:
        cycles, details = BACKENDS[backend](arch, program, ddr)
    except isa.ProgramFormatError as e:
        raise errors.ProgramFormatError(str(e)) from None
    outputs, real = {}, {}
    for spec in manifest["outputs"]:
        raw = ddr[spec["offset"]:spec["offset"] + spec["bytes"]]
        y = decode_activations(raw, spec["bits"]).reshape((1,) + tuple(spec["shape"]))
        outputs[spec["name"]] = y
        real[spec["name"]] = y.astype(np.float64) * spec["scale"]
    return SimulationResult(outputs, real, cycles, fed, details, arch)


# Command line -------------------------------------------------------------------------

def load_arch(path) -> ArchConfig:
    """The arch of ``--arch ARCH.json``; any problem with the file is a :class:`ConvForgeError`."""
    try:
        arch = ArchConfig.from_json(path)
    except (TypeError, ValueError) as e:
        raise errors.ConvForgeError(f"--arch {path}: {e}") from None
    except OSError as e:
        raise errors.ConvForgeError(f"--arch {path}: cannot read the arch file "
                                    f"({e.strerror or e}); pass an arch.json file") from None
    try:
        check_buildable(arch)
    except errors.MappingError as e:
        raise errors.ConvForgeError(f"--arch {path}: {e}") from None
    return arch


def _arch_from_args(args) -> ArchConfig:
    if (args.arch is None) == (args.board is None):
        raise errors.ConvForgeError("Give exactly one of --arch ARCH.json or --board NAME")
    if args.arch is not None:
        return load_arch(args.arch)
    from boards.database import get_board
    try:
        return get_board(args.board).default_arch()
    except ValueError as e:
        raise errors.ConvForgeError(f"--board {args.board}: {e}") from None


def sized_arch(model, board_name: str):
    """``(arch, reasons)``: the arch ``--board`` sizes to ``model`` on that board
    (:func:`compiler.mapping.arch_fit.size_arch`)."""
    from boards.database import get_board
    from compiler.mapping.arch_fit import size_arch
    from compiler.pipeline import import_model

    try:
        board = get_board(board_name)
    except ValueError as e:
        raise errors.ConvForgeError(f"--board {board_name}: {e}") from None
    return size_arch(import_model(model), board)


def _sesl_target(args):
    """``(arch, budget)`` of ``--mode sesl`` from --board, --arch or --budget-dsp."""
    from compiler.sesl.plan import Budget

    given = [x is not None for x in (args.arch, args.board, args.budget_dsp)]
    if sum(given) != 1:
        raise errors.ConvForgeError("--mode sesl needs exactly one of --board NAME, "
                                    "--arch ARCH.json or --budget-dsp N")
    bram = None if args.budget_bram is None else args.budget_bram * 36 * 1024
    if args.board is not None:
        from boards.database import get_board
        try:
            board = get_board(args.board)
            arch = board.default_arch()
        except ValueError as e:
            raise errors.ConvForgeError(f"--board {args.board}: {e}") from None
        memory = bram if bram is not None else board.bram_blocks * board.bram_block_kbits * 1024
        return arch, Budget(board.dsp, memory, f"board {board.name}")
    if args.arch is not None:
        arch = load_arch(args.arch)
        dsp = arch.conv_macs + arch.dw_macs + arch.pw_macs
        memory = bram if bram is not None else 8 * (arch.ibuf_bytes + arch.obuf_bytes
                                                    + arch.wbuf_bytes)
        return arch, Budget(dsp, memory, f"arch {arch.name}")
    if args.budget_dsp < 1:
        raise errors.ConvForgeError(f"--budget-dsp must be a positive integer, not "
                                    f"{args.budget_dsp}")
    return ArchConfig(), Budget(args.budget_dsp, bram, f"--budget-dsp {args.budget_dsp}")


def compile_command(args) -> int:
    """``convforge compile MODEL (--arch ARCH.json | --board NAME) -o OUT [--calib S]``;
    with ``--mode sesl`` also ``--budget-dsp N`` and ``--target-fps F``."""
    from compiler.lstm import cli as lstm_cli
    if lstm_cli.is_lstm_model(args.model):  # ONNX LSTM: the Descartes core
        return lstm_cli.compile_command(args)
    if args.mode == "hybrid":
        from compiler.hybrid.compile import hybrid_command
        return hybrid_command(args)
    if args.mode == "sesl":
        from compiler.sesl.compile import compile_sesl

        if args.target_fps is not None and not args.target_fps > 0:
            raise errors.ConvForgeError(f"--target-fps must be positive, not "
                                        f"{args.target_fps}")
        arch, budget = _sesl_target(args)
        compile_sesl(args.model, arch, args.output, budget, args.calib,
                     target_fps=args.target_fps, scale_mode=args.scale_mode, firb=args.firb)
        if not args.quiet:
            print((Path(args.output) / "report.txt").read_text(), end="")
        if args.calib is None:
            print("note: no --calib samples given; scales come from seeded random inputs")
        print(f"wrote {args.output}/ (pipeline.json, arch.json, manifest.json, report.txt, "
              f"report.json)")
        return 0
    if args.budget_dsp is not None or args.target_fps is not None \
            or args.budget_bram is not None or args.firb:
        raise errors.ConvForgeError("--budget-dsp, --budget-bram, --target-fps and --firb "
                                    "apply to --mode sesl")
    if (args.arch is None) == (args.board is None):
        raise errors.ConvForgeError("Give exactly one of --arch ARCH.json or --board NAME")
    choice = None
    try:
        if args.board is not None:
            arch, choice = sized_arch(args.model, args.board)
        else:
            arch = _arch_from_args(args)
        result = compile_model(args.model, arch, args.output, args.calib,
                               scale_mode=args.scale_mode, verify=args.verify,
                               arch_choice=choice)
    except errors.UnsupportedModelError:
        from compiler.partition import host_fallback_needed
        if not host_fallback_needed(args.model):
            raise
        return _compile_partitioned_command(args, _arch_from_args(args))
    if not args.quiet:
        print((result.out_dir / "report.txt").read_text(), end="")
    if args.calib is None:
        print("note: no --calib samples given; scales come from seeded random inputs")
    if args.verify:
        print("verified: ISS output equals the golden runner, bit for bit")
    print(f"wrote {result.out_dir}/ (program.bin, weights.bin, arch.json, manifest.json, "
          f"listing.txt, report.txt, report.json)")
    return 0


def _compile_partitioned_command(args, arch) -> int:
    """``compile`` of a model with nodes that run on the host (host fallback)."""
    from compiler.partition import compile_partitioned

    result = compile_partitioned(args.model, arch, args.output, args.calib,
                                 scale_mode=args.scale_mode, verify=args.verify)
    if not args.quiet:
        print((result.out_dir / "report.txt").read_text(), end="")
    if args.calib is None:
        print("note: no --calib samples given; scales come from seeded random inputs")
    if args.verify:
        print("verified: every segment and the whole chain, ISS equal to the golden runner "
              "bit for bit")
    print(f"wrote {result.out_dir}/ (manifest.json, host_plan.json, arch.json, "
          f"{', '.join(f'{s}/' for s in result.segments)}, host*.onnx, report.txt, "
          f"report.json)")
    return 0


def _print_result(label, result, arch):
    print(f"{label}: {result.cycles:,} cycles "
          f"({result.cycles / (arch.clock_mhz * 1e3):.3f} ms at {arch.clock_mhz:g} MHz)")
    for name, y in result.outputs.items():
        flat = y.reshape(-1)
        top = int(np.argmax(flat))
        print(f"output {name}: shape {list(y.shape[1:])}, argmax {top}, "
              f"first values {flat[:8].tolist()}")


def simulate_command(args) -> int:
    """``convforge simulate OUT [--input x.npy] [-o y.npz] [--rtl]``: one inference.

    With a backend other than the ISS (``--rtl``), the ISS runs the same input too; the
    command says whether both agree bit for bit and exits 1 if they do not.
    """
    from compiler.lstm import cli as lstm_cli
    from compiler.passes.quantize import load_samples

    if lstm_cli.is_lstm_output(args.out_dir):
        return lstm_cli.simulate_command(args)
    x = load_samples(args.input, f"--input {args.input}") if args.input else None
    result = simulate(args.out_dir, x, backend=args.backend, seed=args.seed)
    arch = result.arch
    _print_result(args.backend, result, arch)
    status = 0
    if args.backend != "iss":
        reference = simulate(args.out_dir, x, backend="iss", seed=args.seed)
        same = all(np.array_equal(result.outputs[k], reference.outputs[k])
                   for k in reference.outputs)
        if same:
            print(f"{args.backend} == iss: outputs equal bit for bit")
        else:
            for k, want in reference.outputs.items():
                got = result.outputs[k]
                if not np.array_equal(got, want):
                    index = tuple(int(i) for i in np.argwhere(got != want)[0])
                    print(f"{args.backend} != iss: output {k!r} differs at {index} "
                          f"({int(got[index])} != {int(want[index])})")
            status = 1
    if args.trace:
        write_file(args.trace, _trace(result), "--trace")
        print(f"wrote {args.trace}")
    if args.output:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: v for k, v in result.outputs.items()},
                 **{f"{k}.real": v for k, v in result.real.items()})
        # np.savez names its file *.npz; keep that name for the bytes written here
        path = args.output if str(args.output).endswith(".npz") else f"{args.output}.npz"
        write_file(path, buffer.getvalue(), "-o")
        print(f"wrote {path}")
    return status


def _trace(result: SimulationResult) -> str:
    """The per-instruction timeline of an ISS run as CSV."""
    details = result.details
    if not hasattr(details, "start"):
        raise errors.ConvForgeError("This backend reports no per-instruction timeline; "
                                    "--trace needs the ISS")
    lines = ["index,opcode,start,finish,cycles"]
    for i, (instr, start, finish) in enumerate(zip(details.instructions, details.start,
                                                   details.finish)):
        lines.append(f"{i},{instr.opcode.name},{start},{finish},{finish - start}")
    return "\n".join(lines) + "\n"


def add_compile_parser(sub) -> None:
    """Register ``compile`` on the CLI's subparsers."""
    p = sub.add_parser("compile", help="compile an ONNX model to program and weight images",
                       description="Import, quantize, tile and generate code for an ONNX model; "
                                   "writes program.bin, weights.bin, arch.json, manifest.json, "
                                   "listing.txt and report.txt to OUT atomically.")
    p.add_argument("model", help="ONNX model file")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--arch", metavar="ARCH.json", help="arch description (JSON)")
    target.add_argument("--board", metavar="NAME",
                        help="board name: the arch is sized to the model under its budget")
    target.add_argument("--budget-dsp", type=int, metavar="N",
                        help="--mode sesl: fold the pipeline under N DSPs; --mode hybrid: "
                             "split N DSPs between the SESL prefix and the SEML core")
    p.add_argument("--mode", choices=("seml", "sesl", "hybrid"), default="seml",
                   help="seml (default): one reusable engine per layer type, run by a "
                        "program; sesl: a streaming pipeline, one dedicated stage per layer; "
                        "hybrid: SESL stages for the first layers, the SEML core for the "
                        "rest, split by SplitCNN under one budget")
    p.add_argument("--target-fps", type=float, metavar="F",
                   help="--mode sesl: stop folding once F frames/s are reached")
    p.add_argument("--firb", action="store_true",
                   help="--mode sesl: fuse each inverted residual bottleneck (expand, "
                        "depthwise, project) into one FIRB stage whose depthwise line buffer "
                        "is its only buffer")
    p.add_argument("--budget-bram", type=int, metavar="N",
                   help="--mode sesl: block-RAM budget in BRAM36 (default: the board's or "
                        "the arch's buffers)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.add_argument("--calib", metavar="SAMPLES", help="calibration samples (.npy or .npz)")
    p.add_argument("--scale-mode", choices=("per_channel", "per_layer", "pot"),
                   help="quantization scales (default per_channel)")
    p.add_argument("--verify", action="store_true",
                   help="run the program on the ISS and check it against the golden runner "
                        "before writing")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the report")
    p.add_argument("--density", type=float, default=1.0,
                   help="LSTM models: fraction of weights kept by pruning (default 1.0)")
    p.add_argument("--no-load-balance", action="store_true",
                   help="LSTM models: prune globally instead of load-balance-aware")
    p.set_defaults(func=compile_command)


def add_simulate_parser(sub) -> None:
    """Register ``simulate`` on the CLI's subparsers."""
    p = sub.add_parser("simulate", help="run a compiled model on the ISS",
                       description="Load OUT/ into a DDR image, run one inference and print "
                                   "the outputs and the cycle count.")
    p.add_argument("out_dir", metavar="OUT", help="directory written by `convforge compile`")
    p.add_argument("--input", metavar="X.npy", help="input sample (float: quantized at the "
                                                     "input scale; integer: fed as is); default "
                                                     "seeded random")
    p.add_argument("-o", "--output", metavar="Y.npz", help="save the outputs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--trace", metavar="T.csv",
                   help="write each instruction's predicted start and finish cycle (CSV)")
    p.add_argument("--backend", default="iss",
                   help="simulation backend: iss (default) or a registered one")
    p.set_defaults(func=simulate_command)
