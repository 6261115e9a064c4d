"""ONNX import: load, normalize, check legality, translate into the IR.

Steps, in order:

1. load the file and run ``onnx.checker`` (not a file / not ONNX: :class:`ModelFileError`);
2. fix a dynamic batch dimension to 1 (noted on the graph); any other dynamic
   dimension is illegal;
3. shape inference (``onnx.shape_inference``) and constant folding
   (:mod:`compiler.frontend.constfold`), then shape inference again;
4. translate every node (:mod:`compiler.frontend.ops`), collecting every legality
   issue of every node; a trailing Softmax becomes a host op;
5. if anything is illegal, raise one :class:`~compiler.errors.UnsupportedModelError`
   listing all of it, before any other work is done.

The result is an unlowered :class:`~compiler.ir.Graph`; :mod:`compiler.pipeline`
runs the lowering passes on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from compiler.errors import ModelFileError, UnsupportedModelError
from compiler.frontend.constfold import fold_constants, static_shapes
from compiler.frontend.ops import HOST_OPS, Issue, NodeTranslator, _chw, _Reject
from compiler.ir import Graph, HostOp, IRError, OpKind, Tensor, infer_shape

__all__ = [
    "MIN_OPSET",
    "ModelFileError",
    "format_issues",
    "import_onnx",
    "legality_issues",
    "load_model",
]

#: Oldest default-domain opset accepted.
MIN_OPSET = 9
#: Constants up to this many elements stay in the model during shape inference
#: (shape tensors must, for data propagation); larger ones are kept aside.
SMALL_CONSTANT = 1024


def load_model(model) -> onnx.ModelProto:
    """Load an ONNX model from a path (or pass a ``ModelProto`` through) and check it.

    Raises
    ------
    ModelFileError
        The file does not exist, cannot be read, or is not a valid ONNX model.
    """
    if isinstance(model, onnx.ModelProto):
        proto = model
        where = f"model {proto.graph.name or '(unnamed)'}"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        where = str(path)
        if not path.exists():
            raise ModelFileError(f"Model file {path} does not exist; check the path")
        if path.is_dir():
            raise ModelFileError(f"Model path {path} is a directory, not an ONNX file")
        try:
            proto = onnx.load(str(path))
        except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path} is not an ONNX model (it cannot be parsed: "
                                 f"{type(e).__name__}); pass a .onnx file") from None
        except OSError as e:
            raise ModelFileError(f"Model file {path} cannot be read: {e.strerror or e}") \
                from None
    else:
        raise TypeError(f"model must be a path or an onnx.ModelProto, not {model!r}")
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelFileError(f"{where} is not an ONNX model (no graph or no opset); pass a "
                             f".onnx file")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid model"
        raise ModelFileError(f"{where} is not a valid ONNX model: {first}") from None
    return proto


def format_issues(issues: list[Issue], where: str = "the model") -> str:
    """The legality report: one line per issue."""
    head = (f"{where} cannot be mapped onto ConvForge: {len(issues)} unsupported "
            f"node(s) or attribute(s):")
    lines = [head]
    lines += [f"  - {issue}" for issue in issues]
    return "\n".join(lines)


def _slim_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """A copy of ``model`` without its large initializers, and every initializer's value.

    Shape inference and folding serialize the model, more than once; weights are
    only needed for their shapes there, so large ones become typed graph inputs
    (shape inference treats both alike) and their values travel alongside.
    """
    consts = {}
    slim = onnx.ModelProto()
    slim.ir_version = model.ir_version
    slim.opset_import.extend(model.opset_import)
    g, sg = model.graph, slim.graph
    sg.name = g.name
    sg.node.extend(g.node)
    sg.output.extend(g.output)
    sg.value_info.extend(g.value_info)
    listed = {vi.name for vi in g.input}
    sg.input.extend(g.input)
    for init in g.initializer:
        value = numpy_helper.to_array(init)
        consts[init.name] = value
        if value.size <= SMALL_CONSTANT:
            sg.initializer.append(init)
        elif init.name not in listed:
            sg.input.append(helper.make_tensor_value_info(init.name, init.data_type,
                                                          list(init.dims)))
    return slim, consts


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _fix_inputs(model: onnx.ModelProto, issues: list[Issue], notes: list[str],
                consts) -> list[str]:
    """Fix dynamic batch dims to 1 in place; record other dynamic dims as issues."""
    inits = set(consts)
    names = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        names.append(vi.name)
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            issues.append(Issue(vi.name, "input", "graph input is not a tensor"))
            continue
        if t.elem_type != onnx.TensorProto.FLOAT:
            issues.append(Issue(vi.name, "input",
                                f"element type {onnx.TensorProto.DataType.Name(t.elem_type)} "
                                f"is not supported; export a float32 model"))
        if not t.HasField("shape"):
            issues.append(Issue(vi.name, "input", "shape is unknown; export the model with "
                                                  "a fixed input shape"))
            continue
        dims = t.shape.dim
        if not 2 <= len(dims) <= 4:
            issues.append(Issue(vi.name, "input", f"rank {len(dims)} is not supported (need "
                                                  f"(N, C, H, W), (N, C, L) or (N, K))"))
            continue
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                if axis == 0 and d.dim_value != 1:
                    issues.append(Issue(vi.name, "input", f"batch size {d.dim_value} is not "
                                                          f"supported (only 1)"))
                continue
            label = d.dim_param or "?"
            if axis == 0:
                d.Clear()
                d.dim_value = 1
                notes.append(f"graph input {vi.name!r}: dynamic batch dimension {label!r} "
                             f"fixed to 1")
            else:
                issues.append(Issue(vi.name, "input",
                                    f"dynamic dimension {label!r} at axis {axis}; export the "
                                    f"model with a fixed input size"))
    return names


def _node_names(model: onnx.ModelProto) -> list[str]:
    """Stable unique node names; ``<op>_<index>`` for empty or repeated names."""
    taken = {n.name for n in model.graph.node if n.name}
    seen = set()
    names = []
    for i, node in enumerate(model.graph.node):
        name = node.name
        if not name or name in seen:
            base = f"{node.op_type}_{i}"
            name, k = base, 1
            while name in taken or name in seen:
                name = f"{base}_{k}"
                k += 1
        seen.add(name)
        names.append(name)
    return names


def legality_issues(model) -> tuple[list[Issue], Graph | None]:
    """Check and translate ``model``; return (every issue, the graph if none).

    ``model`` is a path or an ``onnx.ModelProto``. File errors raise
    :class:`ModelFileError`.
    """
    proto, consts = _slim_copy(load_model(model))
    issues: list[Issue] = []
    notes: list[str] = []
    opset = _opset(proto)
    if opset < MIN_OPSET:
        issues.append(Issue(proto.graph.name or "model", "model",
                            f"opset {opset} is too old (need {MIN_OPSET} or newer); "
                            f"convert it with onnx.version_converter"))
        return issues, None
    # Outputs are unique in ONNX, so they key node names through folding.
    name_by_output = {n.output[0]: nm for n, nm in zip(proto.graph.node, _node_names(proto))
                      if n.output}
    input_names = _fix_inputs(proto, issues, notes, consts)
    # Nodes are still checked when inputs are refused, so the report is complete.
    bad_inputs = {issue.node for issue in issues}

    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    folded, n_folded = fold_constants(inferred, consts, SMALL_CONSTANT)
    if n_folded:
        notes.append(f"{n_folded} constant node(s) folded")
        folded = onnx.shape_inference.infer_shapes(folded, data_prop=True)
    g = folded.graph
    shapes = {k: v for k, v in static_shapes(folded).items() if k not in consts}
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    translator = NodeTranslator(consts, shapes, opset, used)
    translator.refused.update(bad_inputs)

    nodes = list(g.node)
    node_names = [name_by_output[n.output[0]] for n in nodes]
    graph_outputs = [o.name for o in g.output]
    consumers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1

    # Host ops: a chain of Softmax / LogSoftmax at the very end of the graph.
    host_ops: list[HostOp] = []
    host_ids = set()
    for node, name in reversed(list(zip(nodes, node_names))):
        if (node.op_type in HOST_OPS and node.domain in ("", "ai.onnx")
                and node.output[0] in graph_outputs and consumers.get(node.output[0], 0) == 0
                and consumers.get(node.input[0], 0) == 1):
            attrs = NodeTranslator.attrs(node)
            host_ops.insert(0, HostOp(name, node.op_type, node.input[0], node.output[0],
                                      {"axis": int(attrs.get("axis", 1 if opset < 13 else -1))}))
            host_ids.add(id(node))
            graph_outputs = [node.input[0] if o == node.output[0] else o for o in graph_outputs]
        else:
            break

    graph = Graph(name=g.name or "model", inputs=input_names, outputs=graph_outputs,
                  host_ops=host_ops, notes=notes)
    for name in input_names:
        if name in bad_inputs:
            continue
        try:
            graph.tensors[name] = Tensor(name, _chw(shapes[name]))
        except _Reject as e:
            issues.append(Issue(name, "input", str(e)))
    # Channel shuffles and channel Split / Slice: views folded later.
    from compiler.frontend.channels import channel_layers
    views, view_issues = channel_layers(nodes, node_names, shapes, consts, opset)
    issues.extend(view_issues)
    for node, name in zip(nodes, node_names):
        if id(node) in host_ids:
            continue
        if id(node) in views:
            graph.layers.extend(views[id(node)])
            continue
        for layer in translator.translate(node, name):
            graph.layers.append(layer)
    issues.extend(translator.issues)
    for out in graph_outputs:
        if out in consts:
            issues.append(Issue(out, "output", "graph output is a constant"))
    if not issues:
        _prune_unused(graph)
        _register_tensors(graph, shapes, issues)
        issues.extend(_structural_issues(graph))
    return issues, (None if issues else graph)


def _prune_unused(graph: Graph) -> None:
    """Drop layers whose results reach no output, and graph inputs nothing reads."""
    live = set(graph.outputs)
    kept = []
    for layer in reversed(graph.layers):
        if layer.output in live:
            kept.append(layer)
            live.update(layer.inputs)
        else:
            graph.notes.append(f"layer {layer.name!r} computes nothing the outputs use; "
                               f"dropped")
    graph.layers = kept[::-1]
    for name in list(graph.inputs):
        if name not in live:
            graph.inputs.remove(name)
            graph.tensors.pop(name, None)
            graph.notes.append(f"graph input {name!r} is not used; dropped")


def _register_tensors(graph: Graph, shapes, issues: list[Issue]) -> None:
    for layer in graph.layers:
        shape = infer_shape(layer, [graph.tensors[t].shape for t in layer.inputs])
        if layer.output in shapes and _chw(shapes[layer.output]) != shape:
            issues.append(Issue(layer.name, "model", f"shape mismatch on {layer.output!r}"))
        graph.tensors[layer.output] = Tensor(layer.output, shape)


def _structural_issues(graph: Graph) -> list[Issue]:
    """Issues that depend on how layers connect rather than on one node."""
    issues = []
    by_input: dict[str, list] = {}
    for layer in graph.layers:
        for t in layer.inputs:
            by_input.setdefault(t, []).append(layer)

    def final_consumers(tensor):
        """Consumers after skipping identities; 'output' if it reaches a graph output."""
        found, stack = [], [tensor]
        while stack:
            t = stack.pop()
            if t in graph.outputs:
                found.append("output")
            for c in by_input.get(t, []):
                if c.kind is OpKind.IDENTITY:
                    stack.append(c.output)
                else:
                    found.append(c)
        return found

    for layer in graph.layers:
        if layer.kind is not OpKind.FLATTEN:
            continue
        _, h, w = graph.tensors[layer.inputs[0]].shape
        if h == w == 1:
            continue
        bad = [c for c in final_consumers(layer.output)
               if c == "output" or c.kind is not OpKind.FC]
        if bad:
            what = ", ".join("a graph output" if c == "output" else f"{c.name} ({c.kind.value})"
                             for c in bad)
            issues.append(Issue(layer.origin[0] if layer.origin else layer.name, "Flatten",
                                f"a flattened {h}x{w} feature map must feed a fully connected "
                                f"layer only, not {what}"))
    if not any(layer.kind is not OpKind.IDENTITY for layer in graph.layers):
        issues.append(Issue(graph.name, "model", "the model has no layer to accelerate"))
    return issues


def import_onnx(model) -> Graph:
    """Import an ONNX model (path or ``ModelProto``) into an unlowered IR graph.

    Raises
    ------
    ModelFileError
        The file is missing or not an ONNX model.
    UnsupportedModelError
        Listing every unsupported node and attribute; ``.issues`` holds them.
    """
    issues, graph = legality_issues(model)
    if issues:
        err = UnsupportedModelError(format_issues(issues, _where(model)))
        err.issues = issues
        raise err
    try:
        graph.validate()
    except IRError as e:
        # Shape inference lets some inconsistencies through (e.g. weights that do not
        # match their input's channels); onnxruntime would refuse the model too.
        raise ModelFileError(f"{_where(model)} is not a consistent ONNX model: {e}; check "
                             f"that it runs in onnxruntime") from None
    return graph


def _where(model) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else \
        f"model {model.graph.name or '(unnamed)'}"

