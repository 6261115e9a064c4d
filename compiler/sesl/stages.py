"""Quantized IR graph -> SESL stage records (one per layer), before folding."""

from __future__ import annotations

import numpy as np

from compiler.errors import MappingError
from compiler.ir import Graph, Layer, OpKind
from hw.sesl.config import StageConfig
from sim import golden

__all__ = ["graph_stages", "stage_golden"]


def _per_channel(arr, n):
    arr = np.asarray(arr, dtype=np.int64).reshape(-1)
    return tuple(int(v) for v in (np.repeat(arr, n) if arr.size == 1 else arr))


def _ints(arr) -> tuple:
    return tuple(int(v) for v in np.asarray(arr, dtype=np.int64).reshape(-1))


def _unrollable(graph: Graph, layer: Layer) -> bool:
    """A conv (or pointwise) layer over one-row frames, kernel ``(1, K)``, stride 1:
    what :class:`hw.sesl.unrolled.UnrolledConvStage` implements."""
    return (layer.kind in (OpKind.CONV, OpKind.POINTWISE) and layer.groups == 1
            and graph.shape(layer.inputs[0])[1] == 1 and layer.kernel[0] == 1
            and tuple(layer.stride) == (1, 1))


def _stage(graph: Graph, layer: Layer, unroll: bool = False) -> StageConfig:
    q = layer.quant
    if q is None:
        raise MappingError(f"Layer {layer.name!r} is not quantized; SESL maps quantized graphs")
    if unroll and _unrollable(graph, layer):
        # constant weights: any integer value maps (zero, shifts, shift-add, multiplier)
        import dataclasses

        plain = dataclasses.replace(layer, quant=dataclasses.replace(q, weight_scheme="uniform"))
        return dataclasses.replace(_stage(graph, plain), unrolled=True)
    if q.weight_scheme != "uniform":
        raise MappingError(f"Layer {layer.name!r}: the SESL stages multiply uniform weights; "
                           f"the {q.weight_scheme!r} scheme is served by the SEML mode")
    ins = tuple(layer.inputs)
    in_shapes = tuple(graph.shape(t) for t in ins)
    out = graph.shape(layer.output)
    common = {"name": layer.name, "inputs": ins, "output": layer.output, "in_shapes": in_shapes,
                  "out_shape": out, "layer_kind": layer.kind.value, "lo": int(q.lo), "hi": int(q.hi)}
    kind = layer.kind
    c = in_shapes[0][0]
    if kind in (OpKind.CONV, OpKind.POINTWISE):
        if layer.groups != 1:
            raise MappingError(f"Layer {layer.name!r}: grouped convolution (groups="
                               f"{layer.groups}) has no SESL stage; use --mode seml")
        return StageConfig(op="conv", kernel=tuple(layer.kernel), stride=tuple(layer.stride),
                           pads=tuple(layer.pads), weights=_ints(q.weight),
                           bias=_ints(q.bias) if q.bias is not None else (0,) * out[0],
                           m=_per_channel(q.m, out[0]), s=_per_channel(q.s, out[0]), **common)
    if kind is OpKind.DEPTHWISE:
        if out[0] != c:
            raise MappingError(f"Layer {layer.name!r}: depthwise convolution with a channel "
                               f"multiplier ({c} -> {out[0]}) has no SESL stage")
        return StageConfig(op="depthwise", kernel=tuple(layer.kernel),
                           stride=tuple(layer.stride), pads=tuple(layer.pads),
                           weights=_ints(q.weight),
                           bias=_ints(q.bias) if q.bias is not None else (0,) * out[0],
                           m=_per_channel(q.m, out[0]), s=_per_channel(q.s, out[0]), **common)
    if kind is OpKind.FC:
        _, h, w = in_shapes[0]
        weight = np.asarray(q.weight, dtype=np.int64).reshape(out[0], c, h, w)
        return StageConfig(op="conv", kernel=(h, w), weights=_ints(weight),
                           bias=_ints(q.bias) if q.bias is not None else (0,) * out[0],
                           m=_per_channel(q.m, out[0]), s=_per_channel(q.s, out[0]), **common)
    if kind is OpKind.MAXPOOL:
        lo, hi = golden.qrange(q.act_bits)
        return StageConfig(op="max", kernel=tuple(layer.kernel), stride=tuple(layer.stride),
                           pads=tuple(layer.pads), m=(1,) * c, s=(0,) * c,
                           **{**common, "lo": lo, "hi": hi})
    if kind in (OpKind.AVGPOOL, OpKind.GAP):
        if layer.count_pads is not None:
            raise MappingError(f"Layer {layer.name!r}: average pooling whose divisor varies "
                               f"along the border (count_include_pad=0 with padding, or "
                               f"ceil_mode) has no SESL stage; use --mode seml")
        if kind is OpKind.GAP:
            geometry = {"kernel": tuple(in_shapes[0][1:])}
        else:
            geometry = {"kernel": tuple(layer.kernel), "stride": tuple(layer.stride),
                            "pads": tuple(layer.pads)}
        return StageConfig(op="avg", m=_per_channel(q.m, c), s=_per_channel(q.s, c),
                           **geometry, **common)
    if kind is OpKind.ADD:
        if len(set(ins)) != len(ins):
            raise MappingError(f"Layer {layer.name!r} adds a tensor to itself; SESL joins "
                               f"need distinct inputs")
        s = _ints(q.s)
        if len(s) != 1:
            raise MappingError(f"Layer {layer.name!r}: per-channel add shifts have no SESL "
                               f"stage")
        return StageConfig(op="add", input_m=tuple(int(v) for v in q.input_m), input_s=s,
                           **common)
    if kind is OpKind.CONCAT:
        if len(set(ins)) != len(ins):
            raise MappingError(f"Layer {layer.name!r} concatenates a tensor with itself; "
                               f"SESL joins need distinct inputs")
        return StageConfig(op="concat", input_m=tuple(int(v) for v in q.input_m),
                           input_s=_ints(q.s), **common)
    raise MappingError(f"Layer {layer.name!r} of kind {kind.value!r} has no SESL stage; "
                       f"use --mode seml")


def graph_stages(graph: Graph, unroll: bool = False) -> list[StageConfig]:
    """One unfolded stage (``simd = pe = 1``) per layer, in topological order;
    ``unroll``: the conv layers over one-row frames (stride 1) as fully parallel stages
    with constant weights (:attr:`StageConfig.unrolled`), of any weight scheme.

    Raises
    ------
    MappingError
        A layer kind or a form of it that has no SESL stage, naming the layer, or a
        graph with several inputs or outputs.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise MappingError(f"SESL pipelines have one input and one output; the model has "
                           f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    return [_stage(graph, layer, unroll) for layer in graph.layers]


def stage_golden(st: StageConfig, xs: list[np.ndarray], act_bits: int = 8) -> np.ndarray:
    """One stage with the golden ops on ``(N, C, H, W)`` integers (the ISS of SESL)."""
    x = xs[0]
    if st.op in ("conv", "depthwise"):
        c = st.in_channels
        kh, kw = st.kernel
        if st.op == "conv":
            w = np.asarray(st.weights, dtype=np.int64).reshape(st.out_channels, c, kh, kw)
            groups = 1
        else:
            w = np.asarray(st.weights, dtype=np.int64).reshape(c, 1, kh, kw)
            groups = c
        acc = golden.conv2d(x, w, np.asarray(st.bias, dtype=np.int64), stride=st.stride,
                            pads=st.pads, groups=groups)
        return golden.requantize(acc, np.asarray(st.m), np.asarray(st.s), st.lo, st.hi, axis=1)
    if st.op == "max":
        return golden.max_pool2d(x, st.kernel, st.stride, st.pads)
    if st.op == "avg":
        m = np.asarray(st.m)
        s = np.asarray(st.s)
        if len(set(st.m)) == 1 and len(set(st.s)) == 1:
            m, s = st.m[0], st.s[0]
        return golden.avg_pool2d(x, st.kernel, st.stride, m, s, st.lo, st.hi, st.pads)
    if st.op == "add":
        return golden.add(xs[0], xs[1], st.input_m[0], st.input_m[1], st.input_s[0],
                          st.lo, st.hi)
    s = list(st.input_s) if len(st.input_s) > 1 else st.input_s[0]
    return golden.concat(list(xs), list(st.input_m), s, st.lo, st.hi)
