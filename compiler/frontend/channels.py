"""Channel views in ONNX graphs: channel shuffle, Split and Slice along channels.

A channel shuffle is exported as ``Reshape (N, C, H, W) -> (N, g, C/g, H, W)``,
``Transpose perm=(0, 2, 1, 3, 4)``, ``Reshape -> (N, C, H, W)`` (ShuffleNet). It and
Split / Slice along the channel axis (step 1) become one
:data:`~compiler.ir.OpKind.CHANNELS` layer per output: output channel ``j`` is input
channel ``select[j]``. :mod:`compiler.passes.channels` folds these views into the
weights of the layers around them, so nothing moves at run time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from compiler.frontend.ops import Issue
from compiler.ir import Layer, OpKind

__all__ = ["channel_layers"]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def channel_layers(nodes, names, shapes: dict, consts: dict, opset: int):
    """The CHANNELS layers of every recognized pattern.

    Returns ``(layers, issues)``: ``layers`` maps ``id(node)`` to the layers the node
    becomes (an empty list for the first two nodes of a shuffle), ``issues`` holds
    refusals of Split / Slice nodes along channels that cannot be views.
    """
    consumers: dict[str, list] = {}
    for node in nodes:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    out: dict[int, list] = {}
    issues: list[Issue] = []
    by_id = {id(n): nm for n, nm in zip(nodes, names)}
    for node in nodes:
        name = by_id[id(node)]
        if node.op_type == "Reshape" and id(node) not in out:
            found = _shuffle(node, consumers, shapes)
            if found is not None:
                transpose, last, select = found
                x = node.input[0]
                out[id(node)] = []
                out[id(transpose)] = []
                out[id(last)] = [Layer(by_id[id(last)], OpKind.CHANNELS, [x], [last.output[0]],
                                       select=select,
                                       origin=(name, by_id[id(transpose)], by_id[id(last)]))]
        elif node.op_type == "Split" and node.domain in ("", "ai.onnx"):
            layers = _split(node, name, shapes, consts, opset, issues)
            if layers is not None:
                out[id(node)] = layers
        elif node.op_type == "Slice" and node.domain in ("", "ai.onnx"):
            layers = _slice(node, name, shapes, consts, opset, issues)
            if layers is not None:
                out[id(node)] = layers
    return out, issues


def _shuffle(first, consumers, shapes):
    x, r1 = first.input[0], first.output[0]
    src, mid = shapes.get(x), shapes.get(r1)
    if src is None or mid is None or len(src) != 4 or len(mid) != 5:
        return None
    n, c, h, w = src
    if tuple(mid[3:]) != (h, w) or mid[0] != n or mid[1] * mid[2] != c:
        return None
    after = consumers.get(r1, [])
    if len(after) != 1 or after[0].op_type != "Transpose":
        return None
    transpose = after[0]
    perm = list(_attrs(transpose).get("perm", []))
    if perm != [0, 2, 1, 3, 4]:
        return None
    t = transpose.output[0]
    after = consumers.get(t, [])
    if len(after) != 1 or after[0].op_type != "Reshape":
        return None
    last = after[0]
    if tuple(shapes.get(last.output[0], ())) != tuple(src):
        return None
    g = mid[1]
    select = tuple(int(v) for v in np.arange(c).reshape(g, c // g).T.reshape(-1))
    return transpose, last, select


def _channel_axis(axis: int, rank: int) -> bool:
    return rank in (3, 4) and axis % rank == 1


def _split(node, name, shapes, consts, opset, issues):
    x = node.input[0]
    shape = shapes.get(x)
    if shape is None or x in consts:
        return None
    attrs = _attrs(node)
    axis = int(attrs.get("axis", 0))
    if not _channel_axis(axis, len(shape)):
        return None
    c = shape[1]
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in consts:
            issues.append(Issue(name, "Split", "the split sizes must be constants"))
            return []
        sizes = [int(v) for v in np.asarray(consts[node.input[1]]).reshape(-1)]
    elif "split" in attrs:
        sizes = [int(v) for v in attrs["split"]]
    else:
        k = len(node.output)
        sizes = [-(-c // k)] * (k - 1)
        sizes.append(c - sum(sizes))
    if len(sizes) != len(node.output) or sum(sizes) != c or min(sizes) < 1:
        issues.append(Issue(name, "Split", f"split sizes {sizes} do not cover the {c} "
                                           f"channels in {len(node.output)} parts"))
        return []
    layers, start = [], 0
    for k, (o, size) in enumerate(zip(node.output, sizes)):
        if o:
            layers.append(Layer(name if k == 0 else f"{name}:{k}", OpKind.CHANNELS, [x], [o],
                                select=tuple(range(start, start + size)), origin=(name,)))
        start += size
    return layers


def _slice(node, name, shapes, consts, opset, issues):
    x = node.input[0]
    shape = shapes.get(x)
    if shape is None or x in consts or len(shape) not in (3, 4):
        return None
    rank = len(shape)
    attrs = _attrs(node)
    if opset < 10:
        starts, ends = attrs.get("starts", []), attrs.get("ends", [])
        axes = attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        ins = list(node.input) + [""] * (5 - len(node.input))
        if any(t and t not in consts for t in ins[1:]):
            return None
        starts = [int(v) for v in np.asarray(consts[ins[1]]).reshape(-1)]
        ends = [int(v) for v in np.asarray(consts[ins[2]]).reshape(-1)]
        axes = ([int(v) for v in np.asarray(consts[ins[3]]).reshape(-1)] if ins[3]
                else list(range(len(starts))))
        steps = ([int(v) for v in np.asarray(consts[ins[4]]).reshape(-1)] if ins[4]
                 else [1] * len(starts))
    select = None
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % rank
        dim = shape[axis]
        lo, hi = (s + dim if s < 0 else s for s in (start, end))
        lo, hi = max(0, min(lo, dim)), max(0, min(hi, dim))
        if axis == 1:
            if step != 1:
                issues.append(Issue(name, "Slice", f"a channel slice with step {step} is not "
                                                   f"supported (only 1)"))
                return []
            if hi <= lo:
                issues.append(Issue(name, "Slice", "the channel slice is empty"))
                return []
            select = tuple(range(lo, hi))
        elif not (lo == 0 and hi == dim and step == 1):
            return None  # a spatial crop: not a channel view
    if select is None:
        return None
    return [Layer(name, OpKind.CHANNELS, [x], [node.output[0]], select=select, origin=(name,))]
