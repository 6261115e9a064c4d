"""Import of pre-quantized QDQ models, without re-calibrating.

A QDQ model (``onnxruntime.quantization.quantize_static(..., QuantFormat.QDQ)``)
is a float graph with ``QuantizeLinear`` / ``DequantizeLinear`` pairs on every
quantized activation and ``DequantizeLinear`` nodes on integer weight and bias
initializers. ConvForge's numerics are symmetric (zero point 0), so the model
must have been quantized with ``ActivationSymmetric=True`` and
``WeightSymmetric=True``; a non-zero zero point is refused, naming the tensor.

The import takes the graph apart in two steps:

1. :func:`strip_qdq` removes the pairs and turns the integer initializers back
   into float ones, recording every scale: the result is an ordinary float model
   the frontend imports like any other.
2. :func:`import_qdq` quantizes the imported graph with those scales (activation
   scales from ``QuantizeLinear``, integer weights from the initializers) and
   derives the multipliers and shifts.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.errors import QuantizationError, UnsupportedModelError
from compiler.ir import WEIGHTED_KINDS, Graph
from compiler.quant.report import QuantReport

__all__ = ["QDQImport", "QDQParams", "import_qdq", "is_qdq_model", "strip_qdq"]

_SIGNED_BITS = {onnx.TensorProto.INT8: 8, onnx.TensorProto.INT16: 16,
                onnx.TensorProto.INT32: 32, onnx.TensorProto.INT4: 4}


@dataclass
class QDQParams:
    """What :func:`strip_qdq` learned from the QDQ nodes.

    Parameters
    ----------
    act_scales : dict of str to float
        Scale of every quantized activation tensor, by name in the stripped model.
    act_bits : dict of str to int
        Width of each quantized activation (from the zero point's type).
    weights : dict of str to (ndarray, ndarray, int, int)
        Per float initializer of the stripped model that came from integers:
        ``(integers, scale, axis, bits)`` (``scale`` scalar or 1-D along ``axis``,
        ``bits`` the width of the integer type).
    dq_names : dict of str to str
        Stripped tensor name to the ``DequantizeLinear`` output that carries the
        same value in the QDQ model (what onnxruntime exposes for comparison).
    """

    act_scales: dict[str, float] = field(default_factory=dict)
    act_bits: dict[str, int] = field(default_factory=dict)
    weights: dict[str, tuple[np.ndarray, np.ndarray, int, int]] = field(default_factory=dict)
    dq_names: dict[str, str] = field(default_factory=dict)


@dataclass
class QDQImport:
    """The result of :func:`import_qdq`.

    Parameters
    ----------
    graph : Graph
        The quantized graph.
    report : QuantReport
    params : QDQParams
    float_model : onnx.ModelProto
        The stripped float model the graph was imported from.
    """

    graph: Graph
    report: QuantReport
    params: QDQParams
    float_model: onnx.ModelProto


def is_qdq_model(model: onnx.ModelProto) -> bool:
    """Whether the model holds QuantizeLinear / DequantizeLinear nodes."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _qparams(node, inits, role):
    """Scale array, zero-point width and axis of a Q or DQ node; refuse non-zero points."""
    scale_name = node.input[1]
    if scale_name not in inits:
        raise UnsupportedModelError(
            f"{role} node {node.name or node.output[0]!r}: scale {scale_name!r} is not a "
            f"constant initializer; export the QDQ model with static scales")
    scale = numpy_helper.to_array(inits[scale_name]).astype(np.float64)
    bits = 8
    tensor = node.input[0] if role == "QuantizeLinear" else node.output[0]
    if len(node.input) > 2 and node.input[2]:
        zp_init = inits.get(node.input[2])
        if zp_init is None:
            raise UnsupportedModelError(
                f"{role} node {node.name or node.output[0]!r}: zero point {node.input[2]!r} "
                f"is not a constant initializer")
        zp = numpy_helper.to_array(zp_init)
        if zp_init.data_type not in _SIGNED_BITS:
            raise QuantizationError(
                f"Tensor {tensor!r} is quantized to "
                f"{onnx.TensorProto.DataType.Name(zp_init.data_type)}; ConvForge needs "
                f"signed symmetric integers: quantize with activation_type=QuantType.QInt8 "
                f"and weight_type=QuantType.QInt8")
        if np.any(zp != 0):
            raise QuantizationError(
                f"Tensor {tensor!r} has zero point {zp.ravel()[:4].tolist()} but ConvForge's "
                f"numerics are symmetric (zero point 0): re-quantize with "
                f"extra_options={{'ActivationSymmetric': True, 'WeightSymmetric': True}}")
        bits = _SIGNED_BITS[zp_init.data_type]
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise QuantizationError(f"Tensor {tensor!r} has non-positive or non-finite scale "
                                f"{scale.ravel()[:4].tolist()}")
    return scale, bits, int(_attr(node, "axis", 1))


def strip_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, QDQParams]:
    """Remove QDQ pairs and integer initializers; return a float model and the scales.

    Raises
    ------
    QuantizationError
        For a non-zero zero point or an unsigned type, naming the tensor.
    UnsupportedModelError
        For a QDQ structure that is not static (scales computed at run time).
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    params = QDQParams()
    rename: dict[str, str] = {}
    drop = set()
    new_inits = []
    graph_outputs = {o.name for o in g.output}

    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale, bits, axis = _qparams(node, inits, "DequantizeLinear")
            q = numpy_helper.to_array(inits[node.input[0]]).astype(np.int64)
            if scale.size > 1:
                shape = [1] * q.ndim
                shape[axis % q.ndim] = scale.size
                real = q * scale.reshape(shape)
            else:
                real = q * float(scale.reshape(()))
            name = node.output[0]
            new_inits.append(numpy_helper.from_array(real.astype(np.float32), name))
            params.weights[name] = (q, scale, axis, bits)
            drop.add(id(node))
        elif node.op_type == "QuantizeLinear":
            scale, bits, _ = _qparams(node, inits, "QuantizeLinear")
            if scale.size != 1:
                raise UnsupportedModelError(
                    f"QuantizeLinear node {node.name or node.output[0]!r}: activation tensor "
                    f"{node.input[0]!r} has per-channel scales; quantize activations per tensor")
            src = node.input[0]
            users = consumers.get(node.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users) \
                    or node.output[0] in graph_outputs:
                raise UnsupportedModelError(
                    f"QuantizeLinear node {node.name or node.output[0]!r}: its output must feed "
                    f"only DequantizeLinear nodes (a QDQ model), not "
                    f"{sorted({u.op_type for u in users}) or 'the graph output'}")
            params.act_scales[src] = float(scale.reshape(()))
            params.act_bits[src] = bits
            drop.add(id(node))
            for dq in users:
                _qparams(dq, inits, "DequantizeLinear")
                rename[dq.output[0]] = src
                drop.add(id(dq))
        elif node.op_type == "DequantizeLinear":
            producer = producers.get(node.input[0])
            if producer is None or producer.op_type != "QuantizeLinear":
                raise UnsupportedModelError(
                    f"DequantizeLinear node {node.name or node.output[0]!r} reads "
                    f"{node.input[0]!r}, which is neither an integer initializer nor a "
                    f"QuantizeLinear output")

    # A DequantizeLinear output that is a graph output keeps its name: the float
    # tensor it replaces is renamed instead, so the model's interface is unchanged.
    keep = {}
    for dq_out, src in rename.items():
        if dq_out in graph_outputs:
            keep[src] = dq_out
    for dq_out, src in rename.items():
        target = keep.get(src, src)
        rename[dq_out] = target
        params.dq_names.setdefault(target, dq_out)
    for src, out in keep.items():
        rename[src] = out
        params.act_scales[out] = params.act_scales.pop(src)
        params.act_bits[out] = params.act_bits.pop(src)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    used_inits = set()
    for i, node in enumerate(g.node):
        if id(node) in drop:
            continue
        new = onnx.NodeProto()
        new.CopyFrom(node)
        if not new.name:
            new.name = f"{new.op_type}_{i}"
        for k, name in enumerate(new.input):
            new.input[k] = rename.get(name, name)
            used_inits.add(new.input[k])
        for k, name in enumerate(new.output):
            new.output[k] = rename.get(name, name)
        out.graph.node.append(new)
    for o in out.graph.output:
        used_inits.add(o.name)
    kept = [i for i in g.initializer if i.name in used_inits]
    kept += [i for i in new_inits if i.name in used_inits]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    del out.graph.value_info[:]
    # Shapes of the float activations stay valid; those of integer tensors go.
    for vi in g.value_info:
        if (vi.name in producers and vi.name not in rename
                and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT):
            out.graph.value_info.append(vi)
    params.weights = {k: v for k, v in params.weights.items() if k in used_inits}
    return out, params


def _node_weights(layer, model, params):
    """The integer weights and scales feeding the model node a layer came from."""
    nodes = {n.name: n for n in model.graph.node}
    for name in layer.origin or (layer.name,):
        node = nodes.get(name)
        if node is None or node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        for inp in node.input[1:2]:
            if inp in params.weights:
                return params.weights[inp]
    return None


def import_qdq(model, config=None, *, frontend=None) -> QDQImport:
    """Import a QDQ model as a quantized graph, with the model's own scales.

    Parameters
    ----------
    model : onnx.ModelProto or path
    config : compiler.passes.quantize.QuantConfig, optional
        Hardware widths (multiplier, shift, accumulator); ``act_bits`` and
        ``weight_bits`` are taken from the model's integer types.
    frontend : callable, optional
        ``ModelProto -> Graph`` (default :func:`compiler.pipeline.import_model`:
        import and lowering).
    """
    from compiler.frontend.onnx import load_model
    from compiler.passes.quantize import QuantConfig, quantize_with_scales

    if isinstance(model, (str, Path)):
        model = load_model(model)
    if not is_qdq_model(model):
        raise QuantizationError("Model has no QuantizeLinear/DequantizeLinear nodes; it is not "
                                "a QDQ model (quantize it with quantize(), or export with "
                                "QuantFormat.QDQ)")
    float_model, params = strip_qdq(model)
    if frontend is None:
        from compiler.pipeline import import_model as frontend
    graph = frontend(float_model).copy()

    act_bits = max(params.act_bits.values(), default=8)
    if act_bits > 16:
        raise QuantizationError(f"QDQ activations are {act_bits}-bit; ConvForge supports 4 to "
                                f"16-bit activations")
    # Biases are 32-bit integers too; weights are the narrower types.
    weight_bits = max((b for _, _, _, b in params.weights.values() if b <= 16), default=8)
    config = dataclasses.replace(config or QuantConfig(), act_bits=act_bits,
                                 weight_bits=weight_bits, weight_scheme="uniform",
                                 scale_mode="per_channel")
    notes = []

    def out_scale(tensor, layer):
        if tensor in params.act_scales:
            return params.act_scales[tensor]
        raise QuantizationError(
            f"Tensor {tensor!r} has no QuantizeLinear in the QDQ model, so its scale is "
            f"unknown; quantize every activation (ActivationSymmetric=True, no "
            f"op_types_to_quantize restriction)")

    def weight_fn(layer):
        found = _node_weights(layer, float_model, params)
        m = layer.out_channels
        w = layer.weight.astype(np.float64)
        if found is not None:
            _q, scale, _axis, _ = found
            if scale.size in (1, m):
                per_ch = np.broadcast_to(scale.ravel(), (m,)).astype(np.float64)
                bshape = (m,) + (1,) * (w.ndim - 1)
                exact = w / per_ch.reshape(bshape)
                w_int = np.rint(exact).astype(np.int64)
                if np.max(np.abs(exact - w_int), initial=0.0) < 1e-3:
                    return w_int, per_ch
        msg = (f"Layer {layer.name!r}: weights do not sit on the QDQ model's integer grid "
               f"(an operation was folded into them); re-quantized per channel")
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
        from compiler.quant.weights import quantize_weights
        return quantize_weights(layer.weight, weight_bits, per_channel=True,
                                where=f"Layer {layer.name!r}")

    rows = quantize_with_scales(graph, config, out_scale, weight_fn)
    graph.validate()
    weighted = sum(1 for layer in graph.layers if layer.kind in WEIGHTED_KINDS)
    report = QuantReport(model=graph.name, act_bits=act_bits, weight_bits=weight_bits,
                         weight_scheme="uniform", scale_mode="qdq",
                         calibration="scales imported from the QDQ model",
                         calibration_samples=0, layers=rows, warnings=notes,
                         extra={"qdq_weighted_layers": weighted})
    return QDQImport(graph=graph, report=report, params=params, float_model=float_model)
