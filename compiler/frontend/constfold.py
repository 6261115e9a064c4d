"""Constant folding of ONNX graphs.

Every node whose inputs are all constants (initializers, ``Constant`` outputs, or
the ``Shape`` / ``Size`` of a tensor whose shape is static) is evaluated once with
``onnx.reference.ReferenceEvaluator`` and replaced by initializers. This removes the
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains that tracing exporters
write for ``x.view(x.size(0), -1)``, weight transposes, ``ConstantOfShape`` and the
like, without reimplementing any operator.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.errors import ModelFileError

__all__ = ["fold_constants", "static_shapes"]

#: Operators whose output is not a function of their inputs, or that hold subgraphs
#: reading the enclosing scope; never folded.
_NOT_FOLDABLE = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceMap",
})


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully known tensor shapes recorded in the graph (inputs, outputs, value_info)."""
    shapes = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = t.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return np.array(shape[start:end], dtype=np.int64)


def fold_constants(model: onnx.ModelProto, consts: dict[str, np.ndarray],
                   small: int = 1024) -> tuple[onnx.ModelProto, int]:
    """Fold every constant subgraph of ``model`` into constants.

    Parameters
    ----------
    model : onnx.ModelProto
        Shapes already inferred, so that ``Shape`` nodes on static tensors fold.
    consts : dict of str to numpy.ndarray
        Every constant tensor (initializers, whether or not ``model`` still holds
        them); folded values are added to it.
    small : int
        Folded values up to this many elements become initializers of the returned
        model; larger ones become typed graph inputs (their values are in ``consts``).

    Returns the rewritten model (a copy) and the number of nodes folded.
    """
    g = model.graph
    constant = set(consts)
    constant.add("")  # an omitted optional input
    shapes = static_shapes(model)
    folded_nodes: list[onnx.NodeProto] = []
    precomputed: dict[str, np.ndarray] = {}
    for node in g.node:
        if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDABLE:
            continue
        if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
            precomputed[node.output[0]] = _shape_value(node, shapes[node.input[0]])
            constant.add(node.output[0])
            folded_nodes.append(node)
        elif all(i in constant for i in node.input):
            folded_nodes.append(node)
            constant.update(node.output)
    if not folded_nodes:
        return model, 0

    folded_ids = {id(n) for n in folded_nodes}
    remaining = [n for n in g.node if id(n) not in folded_ids]
    needed = {i for n in remaining for i in n.input} | {o.name for o in g.output}
    produced = {o for n in folded_nodes for o in n.output}
    wanted = sorted((produced & needed) - {""})

    values = dict(precomputed)
    to_run = [n for n in folded_nodes if n.output[0] not in precomputed]
    run_outputs = [w for w in wanted if w not in precomputed]
    if to_run and run_outputs:
        run_produced = {o for n in to_run for o in n.output}
        run_inputs = sorted({i for n in to_run for i in n.input} - {""} - run_produced)
        inits = [numpy_helper.from_array(np.asarray(precomputed.get(name, consts.get(name))),
                                         name) for name in run_inputs]
        sub = helper.make_graph(
            to_run, "constants", [],
            [helper.make_empty_tensor_value_info(name) for name in run_outputs], inits)
        sub_model = helper.make_model(sub, opset_imports=list(model.opset_import))
        try:
            results = ReferenceEvaluator(sub_model).run(None, {})
        except (ArithmeticError, IndexError, KeyError, NotImplementedError, RuntimeError,
                TypeError, ValueError) as e:  # what the reference operators raise on bad input
            names = ", ".join(n.name or n.op_type for n in to_run[:4])
            more = f" and {len(to_run) - 4} more" if len(to_run) > 4 else ""
            raise ModelFileError(
                f"The model's constant nodes ({names}{more}) cannot be evaluated: "
                f"{type(e).__name__}: {e}; check that the model runs in onnxruntime") from None
        values.update(zip(run_outputs, results))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.node[:]
    og.node.extend(remaining)
    for name in wanted:
        value = np.asarray(values[name])
        consts[name] = value
        if value.size <= small:
            og.initializer.append(numpy_helper.from_array(value, name))
        else:
            og.input.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    stale = {vi.name for vi in og.value_info} & set(wanted)
    if stale:
        kept_vi = [vi for vi in og.value_info if vi.name not in stale]
        del og.value_info[:]
        og.value_info.extend(kept_vi)
    return out, len(folded_nodes)
