"""Host fallback: a model whose unmappable nodes run on the host, between accelerator segments.

A node has *no accelerator mapping* when ConvForge has no translator for its operator
at all: LRN, a Softmax that is not the last node, an operator of another domain.
Such nodes become **host partitions**, executed by onnxruntime; everything else is
cut into **accelerator segments**, each compiled as its own program. A node whose
operator ConvForge maps but whose attributes it refuses (e.g. an unsupported
padding mode) is *not* moved to the host: it stays an error naming the node.

Partitioning (:func:`plan_partition`) assigns every non-constant node a stage, in
topological order: the smallest stage not below any producer's, even for the
accelerator and odd for the host. Stage ``s`` therefore reads only tensors of
graph inputs and stages ``< s``; each stage is extracted as an ONNX sub-model by
tensor names (constant sub-graphs come along). An accelerator stage that holds no
compute node (only reshapes, dropouts...) runs on the host too.

Boundaries (the one definition, used by the ISS, RTL and golden runs alike):

- accelerator -> host: ``real = float32(q * scale)`` with the segment output's
  ``scale`` from its manifest (``q`` the integer output);
- host -> accelerator: ``q = clamp(round_half_even(real / scale), lo, hi)``
  (:func:`sim.golden.quantize`) at the segment input's scale and width;
- accelerator -> accelerator (a tensor crossing a host partition): the same
  quantize of the dequantized value, which is the integer itself when both sides
  share the scale.

:func:`compile_partitioned` writes, atomically::

    OUT/manifest.json    {"mode": "partitioned", ...}
    OUT/host_plan.json   the steps in order (see docs/host_fallback.md)
    OUT/arch.json        the accelerator's arch (the same for every segment)
    OUT/seg<i>/          a complete compile output per accelerator segment
    OUT/host<i>.onnx     the sub-model of each host partition (onnxruntime)
    OUT/report.txt, OUT/report.json

:func:`simulate_partitioned` runs the whole model: segments on the ISS or the RTL,
host partitions on onnxruntime.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from compiler import errors
from compiler.frontend.onnx import _node_names, legality_issues, load_model
from compiler.frontend.ops import HOST_OPS, Issue, NodeTranslator

__all__ = [
    "HOST_PLAN_FORMAT",
    "Part",
    "PartitionPlan",
    "PartitionResult",
    "compile_partitioned",
    "host_fallback_needed",
    "plan_partition",
    "run_plan",
    "simulate_partitioned",
    "verify_partitioned",
]

#: Version of the ``host_plan.json`` layout.
HOST_PLAN_FORMAT = 1

#: Operators whose presence makes a stage worth the accelerator.
_COMPUTE_OPS = frozenset({"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool",
                          "GlobalAveragePool", "GlobalMaxPool", "Add", "Sum", "Concat",
                          "BatchNormalization"})


@dataclass
class Part:
    """One step of a partitioned model.

    Members
    -------
    index : int
        Position in execution order.
    kind : str
        ``"accelerator"`` or ``"host"``.
    nodes : list of (name, op_type)
        The model nodes the step executes (constant nodes excluded).
    inputs, outputs : list of str
        Boundary tensors read and written (ONNX names).
    macs : int
        Multiply-accumulates of the step (see :func:`node_macs`).
    """

    index: int
    kind: str
    nodes: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    macs: int = 0

    @property
    def name(self) -> str:
        return f"seg{self.index}" if self.kind == "accelerator" else f"host{self.index}"


@dataclass
class PartitionPlan:
    """The steps of a model split into accelerator segments and host partitions.

    Members
    -------
    model : onnx.ModelProto
        The (checked) source model.
    parts : list of Part
    shapes : dict of str to tuple
        Static ONNX shapes (batch 1) of the boundary tensors and graph inputs/outputs.
    inputs, outputs : list of str
        Graph inputs and outputs.
    """

    model: onnx.ModelProto
    parts: list
    shapes: dict
    inputs: list
    outputs: list

    def shapes_of(self, name: str) -> tuple:
        """The ONNX shape (batch 1) of boundary tensor or graph input ``name``."""
        return self.shapes[name]

    @property
    def host_nodes(self) -> list:
        return [n for p in self.parts if p.kind == "host" for n in p.nodes]

    @property
    def macs(self) -> tuple[int, int]:
        """``(accelerator MACs, total MACs)``."""
        total = sum(p.macs for p in self.parts)
        return sum(p.macs for p in self.parts if p.kind == "accelerator"), total

    def accelerator_share(self) -> float:
        acc, total = self.macs
        return acc / total if total else 0.0

    def summary(self) -> str:
        """Lines for ``convforge check``."""
        acc, total = self.macs
        n_seg = sum(p.kind == "accelerator" for p in self.parts)
        n_host = len(self.parts) - n_seg
        lines = [(f"  host fallback: {n_seg} accelerator segment(s), {n_host} host "
                 f"partition(s) (onnxruntime)")]
        for p in self.parts:
            if p.kind == "host":
                names = ", ".join(f"{n} ({op})" for n, op in p.nodes)
                lines.append(f"  host: {names}")
        lines.append(f"  MACs on the accelerator: {acc:,} of {total:,} "
                     f"({100 * self.accelerator_share():.2f} %)")
        return "\n".join(lines)

    def extract(self, part: Part) -> onnx.ModelProto:
        """The ONNX sub-model of ``part`` (batch 1 on its inputs and outputs)."""
        return _extract(self.model, part.inputs, part.outputs, self.shapes,
                        f"{self.model.graph.name or 'model'}_{part.name}")


def host_runnable_type(node: onnx.NodeProto) -> bool:
    """Whether ``node``'s operator has no accelerator mapping (so the host runs it)."""
    if node.domain not in ("", "ai.onnx"):
        return True
    return node.op_type in HOST_OPS or not hasattr(NodeTranslator, f"op_{node.op_type}")


def _static_shapes(model: onnx.ModelProto) -> dict:
    """ONNX shapes of every tensor whose dimensions are all known (a leading symbolic
    batch dimension counts as 1)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a model onnx cannot infer: shapes stay unknown
        inferred = model
    g = inferred.graph
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif i == 0:
                dims.append(1)
            else:
                dims = None
                break
        if dims is not None:
            shapes[vi.name] = tuple(dims)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def node_macs(node: onnx.NodeProto, shapes: dict) -> int:
    """Multiply-accumulates of one node: convolutions, Gemm and MatMul count their
    products; LRN its ``size`` squares per element; everything else 0."""
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes:
        w = shapes[node.input[1]]
        return math.prod(out) * math.prod(w[1:])
    if node.op_type in ("Gemm", "MatMul") and node.input[0] in shapes:
        a = shapes[node.input[0]]
        return math.prod(out) * int(a[-1])
    if node.op_type == "LRN":
        size = next((helper.get_attribute_value(a) for a in node.attribute
                     if a.name == "size"), 1)
        return math.prod(out) * int(size)
    return 0


def host_fallback_needed(model) -> bool:
    """Whether ``model`` imports only with host fallback: some node has no accelerator
    mapping (a trailing Softmax, handled inside a segment, does not count)."""
    issues, _ = legality_issues(model)
    if not issues:
        return False
    proto = load_model(model)
    by_name = dict(zip(_node_names(proto), proto.graph.node))
    return any(i.node in by_name and host_runnable_type(by_name[i.node]) for i in issues)


def plan_partition(model) -> PartitionPlan:
    """Split ``model`` into accelerator segments and host partitions.

    Raises
    ------
    UnsupportedModelError
        Listing every node that is refused for another reason than a missing
        accelerator mapping (those cannot be moved to the host), and host
        partitions onnxruntime cannot run.
    """
    proto = load_model(model)
    issues, _ = legality_issues(proto)
    names = _node_names(proto)
    nodes = list(proto.graph.node)
    by_name = dict(zip(names, nodes))
    host = set()
    blocking: list[Issue] = []
    for issue in issues:
        node = by_name.get(issue.node)
        if node is not None and host_runnable_type(node):
            host.add(issue.node)
        else:
            blocking.append(issue)
    # With host partitions, a trailing Softmax runs in the last host step.
    host.update(n for n, node in by_name.items()
                if node.op_type in HOST_OPS and node.domain in ("", "ai.onnx"))
    if blocking:
        from compiler.frontend.onnx import format_issues
        err = errors.UnsupportedModelError(format_issues(blocking, _where(model)) + (
            f"\n(nodes with no accelerator mapping would run on the host: "
            f"{', '.join(n for n in names if n in host)})" if host else ""))
        err.issues = blocking
        raise err
    g = proto.graph
    consts = {i.name for i in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in consts]
    # Constant nodes: every input constant (Constant, ConstantOfShape on constants...).
    for node in nodes:
        if all(not i or i in consts for i in node.input) and node.op_type not in (
                "RandomNormal", "RandomUniform"):
            consts.update(o for o in node.output if o)
    live = [(n, node) for n, node in zip(names, nodes) if not set(node.output) <= consts]
    shapes = _static_shapes(proto)
    while True:
        stage: dict[str, int] = {t: 0 for t in graph_inputs}
        node_stage = {}
        for n, node in live:
            kind = 1 if n in host else 0
            s = max([stage[i] for i in node.input if i in stage] + [0])
            if s % 2 != kind:
                s += 1
            node_stage[n] = s
            for o in node.output:
                if o:
                    stage[o] = s
        trivial = set()
        for s in sorted(set(node_stage.values())):
            members = [n for n, _ in live if node_stage[n] == s]
            if s % 2 == 0 and not any(by_name[n].op_type in _COMPUTE_OPS for n in members):
                trivial.update(members)
        if not trivial:
            break
        host |= trivial
    outputs = [o.name for o in g.output]
    parts = []
    for s in sorted(set(node_stage.values())):
        members = [(n, node) for n, node in live if node_stage[n] == s]
        produced = {o for _, node in members for o in node.output if o}
        ins, outs = [], []
        for _, node in members:
            for i in node.input:
                if i and i not in consts and i not in produced and i not in ins:
                    ins.append(i)
        later = {i for n, node in live if node_stage[n] > s for i in node.input}
        for _, node in members:
            for o in node.output:
                if o and (o in later or o in outputs) and o not in outs:
                    outs.append(o)
        parts.append(Part(len(parts), "accelerator" if s % 2 == 0 else "host",
                          [(n, node.op_type) for n, node in members], ins, outs,
                          sum(node_macs(node, shapes) for _, node in members)))
    bshapes = {t: (1,) + tuple(shapes[t][1:]) for p in parts for t in p.inputs + p.outputs
               if t in shapes}
    plan = PartitionPlan(proto, parts, bshapes, graph_inputs, outputs)
    for part in parts:
        if part.kind == "host":
            _host_session(plan, part)
    unknown = [t for p in parts for t in p.inputs + p.outputs if t not in shapes]
    if unknown:
        raise errors.UnsupportedModelError(
            f"{_where(model)}: the shape of boundary tensor(s) {', '.join(sorted(set(unknown)))}"
            f" between the accelerator and the host is not static; export the model with "
            f"fixed input dimensions")
    return plan


def _where(model) -> str:
    from compiler.frontend.onnx import _where as where
    return where(model)


def _extract(model: onnx.ModelProto, inputs, outputs, shapes, name) -> onnx.ModelProto:
    """The sub-model computing ``outputs`` from ``inputs`` (tensor names)."""
    g = model.graph
    producer = {o: node for node in g.node for o in node.output if o}
    inits = {i.name: i for i in g.initializer}
    keep, seen, stack = [], set(), list(outputs)
    boundary = set(inputs)
    while stack:
        t = stack.pop()
        if t in boundary or t in seen or t in inits or t not in producer:
            continue
        seen.add(t)
        node = producer[t]
        if id(node) in {id(k) for k in keep}:
            continue
        keep.append(node)
        stack.extend(i for i in node.input if i)
    order = {id(node): i for i, node in enumerate(g.node)}
    keep.sort(key=lambda node: order[id(node)])
    used = {i for node in keep for i in node.input}
    elem = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        keep, name,
        [helper.make_tensor_value_info(t, elem, _dims(shapes, t)) for t in inputs],
        [helper.make_tensor_value_info(t, elem, _dims(shapes, t)) for t in outputs],
        [inits[t] for t in inits if t in used and t not in boundary])
    sub = helper.make_model(graph, opset_imports=list(model.opset_import),
                            producer_name="convforge-partition")
    # IR 3 wants every initializer listed as a graph input; IR 4 lifted that rule.
    sub.ir_version = max(model.ir_version, 4)
    return sub


def _dims(shapes, t):
    return list(shapes[t]) if t in shapes else None


def _host_session(plan: PartitionPlan, part: Part, model: onnx.ModelProto | None = None):
    import onnxruntime as ort

    model = plan.extract(part) if model is None else model
    try:
        return ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
        what = ", ".join(f"{n} ({op})" for n, op in part.nodes)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise errors.UnsupportedModelError(
            f"{what}: no accelerator mapping, and onnxruntime cannot run it on the host "
            f"({first}); replace the node with supported operators or register the "
            f"operator with onnxruntime") from None


# Calibration ---------------------------------------------------------------------------

def _float_samples(plan: PartitionPlan, calibration, samples: int, seed: int) -> dict:
    """Float samples (ONNX layout, leading sample axis) of the graph inputs."""
    if calibration is None:
        rng = np.random.default_rng(seed)
        return {n: rng.standard_normal((samples,) + plan.shapes_of(n)[1:]).astype(np.float32)
                for n in plan.inputs}
    if isinstance(calibration, (str, Path)):
        from compiler.samples import load_samples
        calibration = load_samples(Path(calibration), f"Calibration file {calibration}")
    if not isinstance(calibration, dict):
        if len(plan.inputs) != 1:
            raise errors.QuantizationError(f"Model has {len(plan.inputs)} inputs; give "
                                           f"calibration samples as a dict or .npz")
        calibration = {plan.inputs[0]: calibration}
    out = {}
    for n in plan.inputs:
        if n not in calibration:
            raise errors.QuantizationError(f"Calibration data lacks samples for graph input "
                                           f"{n!r}")
        shape = plan.shapes_of(n)[1:]
        x = np.asarray(calibration[n], dtype=np.float32)
        out[n] = x.reshape((-1,) + shape)
    return out


def boundary_values(plan: PartitionPlan, samples: dict) -> dict:
    """Float values of every boundary tensor over ``samples`` (onnxruntime, float32)."""
    import onnxruntime as ort

    wanted = sorted({t for p in plan.parts for t in p.inputs + p.outputs} - set(plan.inputs))
    m = onnx.ModelProto()
    m.CopyFrom(plan.model)
    present = {o.name for o in m.graph.output}
    for t in wanted:
        if t not in present:
            m.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    count = len(next(iter(samples.values())))
    feeds_names = [i.name for i in sess.get_inputs()]
    collected = {t: [] for t in wanted}
    for k in range(count):
        feed = {n: samples[n][k:k + 1] for n in plan.inputs if n in feeds_names}
        values = dict(zip(names, sess.run(None, feed)))
        for t in wanted:
            collected[t].append(np.asarray(values[t], dtype=np.float32).reshape(plan.shapes[t]))
    out = {t: np.concatenate(v) for t, v in collected.items()}
    out.update(samples)
    return out


# Compile -------------------------------------------------------------------------------

@dataclass
class PartitionResult:
    """What :func:`compile_partitioned` produced.

    Members
    -------
    out_dir : Path
    plan : PartitionPlan
    segments : dict of str to compiler.compile.CompileResult
        Per accelerator segment (key ``seg<i>``); ``.graph`` is its quantized graph.
    host_plan : dict
        The contents of ``host_plan.json``.
    timings : dict
    """

    out_dir: Path
    plan: PartitionPlan
    segments: dict
    host_plan: dict
    timings: dict = field(default_factory=dict)


def _io_spec(spec: dict, onnx_shape) -> dict:
    return {"name": spec["name"], "scale": spec["scale"], "bits": spec["bits"],
            "shape": list(spec["shape"]), "onnx_shape": list(onnx_shape)}


def compile_partitioned(model, arch, out_dir, calibration=None, *, scale_mode=None,
                        seed: int = 0, verify: bool = False,
                        random_samples: int = 8) -> PartitionResult:
    """Compile ``model`` with host fallback into ``out_dir`` (see the module docstring).

    Calibration samples feed the float model in onnxruntime; each segment is
    calibrated on the float values of its own inputs. With ``verify``, each segment
    is checked ISS == golden before anything is written, and then the whole chain.
    """
    from compiler.codegen.output import write_output_dir
    from compiler.compile import compile_model

    timings = {}
    start = time.perf_counter()
    plan = plan_partition(model)
    timings["partition"] = time.perf_counter() - start
    start = time.perf_counter()
    samples = _float_samples(plan, calibration, random_samples, seed)
    values = boundary_values(plan, samples)
    timings["calibration"] = time.perf_counter() - start
    files: dict = {}
    segments = {}
    steps = []
    title = (Path(model).stem if isinstance(model, (str, Path))
             else plan.model.graph.name or "model")
    with tempfile.TemporaryDirectory(prefix="convforge-partition-") as tmp:
        for part in plan.parts:
            sub = plan.extract(part)
            step = {"index": part.index, "kind": part.kind, "name": part.name,
                    "nodes": [{"name": n, "op_type": op} for n, op in part.nodes],
                    "macs": part.macs}
            if part.kind == "host":
                _host_session(plan, part, sub)
                files[f"{part.name}.onnx"] = sub.SerializeToString()
                step.update(runtime="onnxruntime", model=f"{part.name}.onnx",
                            inputs=[{"name": t, "onnx_shape": list(plan.shapes[t])}
                                    for t in part.inputs],
                            outputs=[{"name": t, "onnx_shape": list(plan.shapes[t])}
                                     for t in part.outputs])
            else:
                calib = {t: values[t] for t in part.inputs}
                t0 = time.perf_counter()
                try:
                    result = compile_model(sub, arch, Path(tmp) / part.name, calib,
                                           scale_mode=scale_mode, seed=seed, verify=verify)
                except errors.ConvForgeError as e:
                    raise type(e)(f"accelerator segment {part.name} "
                                  f"({part.nodes[0][0]} .. {part.nodes[-1][0]}): {e}") from None
                timings[part.name] = time.perf_counter() - t0
                segments[part.name] = result
                man = result.manifest
                missing = [t for t in part.outputs
                           if t not in {o["name"] for o in man["outputs"]}]
                if missing:
                    raise errors.MappingError(
                        f"accelerator segment {part.name}: tensor(s) {', '.join(missing)} "
                        f"needed after it are not outputs of its program")
                for path in sorted((Path(tmp) / part.name).iterdir()):
                    files[f"{part.name}/{path.name}"] = path.read_bytes()
                step.update(dir=part.name,
                            inputs=[_io_spec(s, plan.shapes[s["name"]]) for s in man["inputs"]],
                            outputs=[_io_spec(s, plan.shapes[s["name"]])
                                     for s in man["outputs"] if s["name"] in part.outputs],
                            predicted_cycles=man["predicted_cycles"])
            steps.append(step)
        acc, total = plan.macs
        host_plan = {
            "format": HOST_PLAN_FORMAT,
            "model": title,
            "inputs": [{"name": n, "onnx_shape": list(plan.shapes_of(n))}
                       for n in plan.inputs],
            "outputs": plan.outputs,
            "boundaries": {
                "dequantize": "real = float32(q * scale)",
                "quantize": "q = clamp(round_half_even(real / scale), -2**(bits-1), "
                            "2**(bits-1) - 1)",
            },
            "steps": steps,
            "macs": {"accelerator": acc, "total": total,
                     "accelerator_share": plan.accelerator_share()},
        }
        result = PartitionResult(Path(out_dir), plan, segments, host_plan, timings)
        if verify:
            t0 = time.perf_counter()
            verify_partitioned(result, arch, seed=seed)
            timings["verify_chain"] = time.perf_counter() - t0
        arch_json = arch.to_json()
        cycles = sum(s.get("predicted_cycles", 0) for s in steps)
        report = {"mode": "partitioned", "model": title, "clock_mhz": arch.clock_mhz,
                  "accelerator_cycles_per_frame": cycles,
                  "macs": host_plan["macs"],
                  "steps": [{k: s[k] for k in ("name", "kind", "macs") if k in s}
                            | ({"cycles": s["predicted_cycles"]} if "predicted_cycles" in s
                               else {}) for s in steps]}
        files.update({
            "manifest.json": json.dumps({"format": 1, "mode": "partitioned", "model": title,
                                         "plan": "host_plan.json",
                                         "segments": list(segments)}, indent=2) + "\n",
            "host_plan.json": json.dumps(host_plan, indent=2, default=_json_default) + "\n",
            "arch.json": arch_json,
            "report.json": json.dumps(report, indent=2, default=_json_default) + "\n",
            "report.txt": _report_text(host_plan, arch, cycles),
        })
        result.out_dir = write_output_dir(out_dir, files)
    return result


def _json_default(value):
    from compiler.compile import _json_default as default
    return default(value)


def _report_text(host_plan: dict, arch, cycles: int) -> str:
    macs = host_plan["macs"]
    lines = [(f"{host_plan['model']}: partitioned (host fallback), "
             f"{sum(s['kind'] == 'accelerator' for s in host_plan['steps'])} accelerator "
             f"segment(s)"),
             (f"accelerator cycles per frame: {cycles:,} "
             f"({cycles / (arch.clock_mhz * 1e3):.3f} ms at {arch.clock_mhz:g} MHz; host "
             f"partitions not included)"),
             (f"MACs on the accelerator: {macs['accelerator']:,} of {macs['total']:,} "
             f"({100 * macs['accelerator_share']:.2f} %)"), ""]
    for s in host_plan["steps"]:
        nodes = s["nodes"]
        span = nodes[0]["name"] if len(nodes) == 1 else \
            f"{nodes[0]['name']} .. {nodes[-1]['name']} ({len(nodes)} nodes)"
        if s["kind"] == "host":
            ops = ", ".join(f"{n['name']} ({n['op_type']})" for n in nodes)
            lines.append(f"  {s['name']:<7} host (onnxruntime): {ops}")
        else:
            lines.append(f"  {s['name']:<7} accelerator: {span}, {s['macs']:,} MACs, "
                         f"{s['predicted_cycles']:,} cycles (see {s['dir']}/report.txt)")
    return "\n".join(lines) + "\n"


# Execution -----------------------------------------------------------------------------

def run_plan(host_plan: dict, host_models: dict, inputs: dict, accel) -> tuple[dict, dict]:
    """Run every step of ``host_plan`` in order.

    Parameters
    ----------
    host_plan : dict
        The contents of ``host_plan.json``.
    host_models : dict of str to bytes or onnx.ModelProto
        The host sub-models by file name.
    inputs : dict of str to ndarray
        Graph inputs: float (ONNX layout) or, for a segment input, integers.
    accel : callable
        ``accel(step, {name: int array (1, C, H, W)}) -> {name: int array}``.

    Returns
    -------
    (values, ints)
        Float values of every boundary tensor and graph output, and the integer
        values of the accelerator outputs.
    """
    import onnxruntime as ort

    from sim import golden

    real, ints = {}, {}
    for name, x in inputs.items():
        x = np.asarray(x)
        if x.dtype.kind in "iu":
            ints[name] = x.astype(np.int64)
        else:
            real[name] = x.astype(np.float32)
    for step in host_plan["steps"]:
        if step["kind"] == "host":
            sess = ort.InferenceSession(_bytes(host_models[step["model"]]),
                                        providers=["CPUExecutionProvider"])
            feed = {s["name"]: real[s["name"]].reshape(s["onnx_shape"]).astype(np.float32)
                    for s in step["inputs"]}
            outs = sess.run([s["name"] for s in step["outputs"]], feed)
            for s, y in zip(step["outputs"], outs):
                real[s["name"]] = np.asarray(y, dtype=np.float32).reshape(s["onnx_shape"])
            continue
        fed = {}
        for s in step["inputs"]:
            shape = (1,) + tuple(s["shape"])
            if s["name"] in ints and s["name"] not in real:
                fed[s["name"]] = ints[s["name"]].reshape(shape)
            else:
                fed[s["name"]] = golden.quantize(real[s["name"]].reshape(shape), s["scale"],
                                                 s["bits"])
        got = accel(step, fed)
        for s in step["outputs"]:
            q = np.asarray(got[s["name"]], dtype=np.int64).reshape((1,) + tuple(s["shape"]))
            ints[s["name"]] = q
            real[s["name"]] = (q * s["scale"]).astype(np.float32).reshape(s["onnx_shape"])
    return real, ints


def _bytes(model) -> bytes:
    return model.SerializeToString() if isinstance(model, onnx.ModelProto) else bytes(model)


def _golden_accel(segments: dict):
    from compiler.runner import run_golden_int

    def accel(step, fed):
        return run_golden_int(segments[step["name"]].graph, fed).outputs
    return accel


def verify_partitioned(result: PartitionResult, arch, seed: int = 0) -> None:
    """Run the whole chain twice on a seeded random input, segments once on the golden
    runner and once on the ISS; raise :class:`ConvForgeError` if any value differs."""
    from compiler.compile import ddr_image
    from sim.iss import ISS, decode_activations, encode_activations

    host_models = {s["model"]: result.plan.extract(result.plan.parts[s["index"]])
                   for s in result.host_plan["steps"] if s["kind"] == "host"}
    rng = np.random.default_rng(seed)
    inputs = {n: rng.standard_normal(result.plan.shapes_of(n)).astype(np.float32)
              for n in result.plan.inputs}

    def iss(step, fed):
        seg = result.segments[step["name"]]
        prog = seg.program
        ddr = ddr_image(seg.program_bin, prog.weights, prog.weights_offset, prog.ddr_bytes)
        for name, q in fed.items():
            spec = prog.tensors[name]
            ddr[spec["offset"]:spec["offset"] + spec["bytes"]] = encode_activations(
                q, arch.act_bits)
        ISS(arch).run(seg.program_bin, ddr, check_written=True)
        out = {}
        for s in step["outputs"]:
            spec = prog.tensors[s["name"]]
            out[s["name"]] = decode_activations(ddr[spec["offset"]:spec["offset"]
                                                    + spec["bytes"]], arch.act_bits)
        return out

    want, want_q = run_plan(result.host_plan, host_models, inputs,
                            _golden_accel(result.segments))
    got, got_q = run_plan(result.host_plan, host_models, inputs, iss)
    for name, ref in want_q.items():
        if not np.array_equal(got_q[name].reshape(ref.shape), ref):
            raise errors.ConvForgeError(
                f"Verification failed: ISS and golden differ on {name!r} in the partitioned "
                f"run; please report this model")
    for name in result.plan.outputs:
        if not np.array_equal(got[name], want[name]):
            raise errors.ConvForgeError(
                f"Verification failed: output {name!r} differs between the ISS and golden "
                f"chains; please report this model")


def simulate_partitioned(out_dir, inputs=None, *, backend: str = "iss", seed: int = 0):
    """Run one inference of a partitioned compile output: segments on ``backend``
    (via :func:`compiler.compile.simulate`), host partitions on onnxruntime.

    Returns a :class:`compiler.compile.SimulationResult`: ``outputs`` holds integers
    for outputs an accelerator segment writes and float32 for those a host
    partition writes; ``real`` the float values of both; ``cycles`` the sum of the
    segments' cycles.
    """
    from compiler.compile import SimulationResult, simulate

    out = Path(out_dir)
    try:
        host_plan = json.loads((out / "host_plan.json").read_text())
    except (OSError, ValueError) as e:
        raise errors.ProgramFormatError(f"{out / 'host_plan.json'}: cannot read it ({e}); run "
                                        f"`convforge compile` again") from None
    if host_plan.get("format") != HOST_PLAN_FORMAT:
        raise errors.ProgramFormatError(f"{out / 'host_plan.json'} is not a format-"
                                        f"{HOST_PLAN_FORMAT} host plan; run `convforge "
                                        f"compile` again")
    specs = host_plan["inputs"]
    if not isinstance(inputs, dict):
        if inputs is not None and len(specs) != 1:
            raise errors.ConvForgeError(f"The model has {len(specs)} inputs; pass a dict")
        inputs = {specs[0]["name"]: inputs}
    fed = {}
    rng = np.random.default_rng(seed)
    for spec in specs:
        x = inputs.get(spec["name"])
        if x is None:
            x = rng.standard_normal(spec["onnx_shape"]).astype(np.float32)
        x = np.asarray(x)
        if x.size != math.prod(spec["onnx_shape"]):
            raise errors.ConvForgeError(f"Input {spec['name']!r} must have "
                                        f"{math.prod(spec['onnx_shape'])} elements "
                                        f"(shape {spec['onnx_shape']}), not {x.shape}")
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)):
                raise errors.ConvForgeError(f"Input {spec['name']!r} contains inf or NaN")
            x = x.astype(np.float32).reshape(spec["onnx_shape"])
        fed[spec["name"]] = x
    host_models = {}
    for step in host_plan["steps"]:
        if step["kind"] == "host":
            try:
                host_models[step["model"]] = (out / step["model"]).read_bytes()
            except OSError as e:
                raise errors.ProgramFormatError(f"{out / step['model']}: cannot read it "
                                                f"({e.strerror or e})") from None
    cycles = [0]
    details = {}

    def accel(step, values):
        r = simulate(out / step["dir"], values, backend=backend, seed=seed)
        cycles[0] += r.cycles
        details[step["name"]] = r
        return r.outputs

    real, ints = run_plan(host_plan, host_models, fed, accel)
    outputs = {n: ints[n] if n in ints else real[n] for n in host_plan["outputs"]}
    reals = {n: real[n] for n in host_plan["outputs"]}
    arch = next(iter(details.values())).arch if details else None
    return SimulationResult(outputs, reals, cycles[0], fed, details, arch)
