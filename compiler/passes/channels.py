"""Fold channel views (shuffle, Split / Slice along channels) into weights.

A :data:`~compiler.ir.OpKind.CHANNELS` layer ``y = x[select]`` moves no data once
folded. Views are folded one at a time, first in topological order, by rewriting
every consumer of ``y`` to read ``x`` instead:

- a view of a view composes (``select`` of ``select``);
- a convolution, pointwise or fully connected consumer absorbs it into
  its weights: input channel ``i`` of the new weights is the old column ``j`` with
  ``select[j] == i``, and zero for channels ``x`` has but the view drops (exact; a
  permutation, such as a shuffle, costs nothing, a slice reads the dropped channels
  with zero weights; a grouped convolution first becomes an ungrouped one with
  block-diagonal weights, which multiplies its MACs by its groups);
- a per-channel layer (depthwise, pooling, padding, scale, activation) now runs on
  all of ``x``'s channels (its per-channel parameters scattered, zero for dropped
  channels) and the view moves below it;
- a concatenation now concatenates ``x`` itself and the view moves below it, over
  the concatenated channels.

Before that, a view of the output of an ungrouped convolution or fully connected
layer (possibly followed by its batch norm and activation) that only views read is
folded upwards instead: each view gets its own copy of that layer computing just the
channels it selects (a Split after a conv costs no extra MACs); a view of a
concatenation of such tensors that only views read gets its own concatenation of
the selected channels of each input, then the permutation restoring its order.

Anything else (an Add of a view and another tensor, a graph output) is refused, naming the view's nodes and the consumer.
"""

from __future__ import annotations

import numpy as np

from compiler.errors import UnsupportedModelError
from compiler.ir import Graph, Layer, OpKind, Tensor

__all__ = ["fold_channels"]

_PER_CHANNEL = frozenset({OpKind.DEPTHWISE, OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.GAP,
                          OpKind.PAD, OpKind.SCALE, OpKind.ACTIVATION, OpKind.IDENTITY})


def _what(view: Layer) -> str:
    return ", ".join(view.origin or (view.name,))


def fold_channels(graph: Graph, ctx=None) -> Graph:
    """Fold every CHANNELS layer into its neighbours (see the module docstring)."""
    while True:
        view = next((layer for layer in graph.layers if layer.kind is OpKind.CHANNELS), None)
        if view is None:
            return graph
        if not (_split_producer(graph, view.inputs[0])
                or _split_concat(graph, view.inputs[0])):
            _fold(graph, view)


def _splittable(graph: Graph, t: str, consumer: Layer) -> bool:
    """Whether views of ``t`` (read only by ``consumer``) fold upwards: ``t`` comes
    from an ungrouped conv / fully connected chain or from a concatenation of such."""
    if t in graph.outputs or graph.consumers(t) != [consumer]:
        return False
    layer = graph.producer(t)
    while layer is not None and layer.kind in (OpKind.SCALE, OpKind.ACTIVATION):
        t = layer.inputs[0]
        if t in graph.outputs or len(graph.consumers(t)) != 1:
            return False
        layer = graph.producer(t)
    if layer is None:
        return False
    if layer.kind in (OpKind.CONV, OpKind.POINTWISE, OpKind.FC) and layer.groups == 1:
        return True
    return layer.kind is OpKind.CONCAT and all(_splittable(graph, i, layer)
                                               for i in layer.inputs)


def _split_concat(graph: Graph, x: str) -> bool:
    """If ``x`` is a concatenation that only views read, give each view its own
    concatenation of views of the inputs (each input's selected channels, in
    order), followed by the permutation that restores the view's order. Views of the
    inputs then fold further (a conv's output splits into per-view convs), and a
    permutation moves through later concatenations without carrying extra channels.
    Returns whether it did."""
    concat = graph.producer(x)
    views = graph.consumers(x)
    if (concat is None or concat.kind is not OpKind.CONCAT or x in graph.outputs
            or not views or any(v.kind is not OpKind.CHANNELS for v in views)):
        return False
    owner = []
    for j, t in enumerate(concat.inputs):
        owner += [(j, i) for i in range(graph.shape(t)[0])]
    if all(len(set(v.select)) == len(owner) for v in views):
        return False  # permutations of everything: folding them downstream is free
    partial = {owner[ch][0] for v in views for ch in range(len(owner))
               if ch not in set(v.select)}
    if not all(_splittable(graph, concat.inputs[j], concat) for j in partial):
        return False  # the input views would fold back down through this concat
    _, h, w = graph.shape(x)
    for view in views:
        taken: dict[int, list[int]] = {}
        for ch in view.select:
            j, i = owner[ch]
            taken.setdefault(j, []).append(i)
        parts, base = [], {}
        position = graph.layers.index(view)
        new_layers = []
        count = 0
        for j in sorted(taken):
            t = concat.inputs[j]
            chans = sorted(taken[j])
            base[j] = count
            count += len(chans)
            if chans == list(range(graph.shape(t)[0])):
                parts.append(t)
                continue
            part = graph.unique_name(f"{t}.{view.name}")
            graph.tensors[part] = Tensor(part, (len(chans), h, w))
            new_layers.append(Layer(graph.unique_name(f"{view.name}.in{j}"), OpKind.CHANNELS,
                                    [t], [part], select=tuple(chans), origin=view.origin))
            parts.append(part)
        index = {(j, i): base[j] + k for j in taken for k, i in enumerate(sorted(taken[j]))}
        perm = tuple(index[owner[ch]] for ch in view.select)
        if len(parts) == 1:
            joined = parts[0]
        else:
            joined = graph.unique_name(f"{x}.{view.name}")
            graph.tensors[joined] = Tensor(joined, (count, h, w))
            new_layers.append(Layer(graph.unique_name(f"{concat.name}.{view.name}"),
                                    OpKind.CONCAT, parts, [joined],
                                    origin=concat.origin))
        view.inputs = [joined]
        view.select = perm
        graph.layers[position:position] = new_layers
    graph.layers.remove(concat)
    del graph.tensors[x]
    return True


def _split_producer(graph: Graph, x: str) -> bool:
    """If every consumer of ``x`` is a view and ``x`` comes from an ungrouped
    convolution or fully connected layer (through per-channel scales and activations
    that nothing else reads), give each view its own copy of that chain computing
    only the selected output channels. Returns whether it did."""
    views = graph.consumers(x)
    if x in graph.outputs or not views or any(v.kind is not OpKind.CHANNELS for v in views):
        return False
    chain, t = [], x
    while True:
        layer = graph.producer(t)
        if layer is None:
            return False
        chain.insert(0, layer)
        if layer.kind in (OpKind.CONV, OpKind.POINTWISE, OpKind.FC) and layer.groups == 1:
            break
        if layer.kind not in (OpKind.SCALE, OpKind.ACTIVATION):
            return False
        t = layer.inputs[0]
        if t in graph.outputs or len(graph.consumers(t)) != 1:
            return False
    for view in views:
        sel = list(view.select)
        src = chain[0].inputs[0]
        position = graph.layers.index(view)
        for i, layer in enumerate(chain):
            last = i == len(chain) - 1
            out = view.output if last else graph.unique_name(f"{layer.output}.{view.name}")
            if not last:
                shape = graph.shape(layer.output)
                graph.tensors[out] = Tensor(out, (len(sel),) + tuple(shape[1:]))
            copy = Layer(graph.unique_name(f"{layer.name}.{view.name}"), layer.kind, [src],
                         [out], kernel=layer.kernel, stride=layer.stride, pads=layer.pads,
                         count_pads=layer.count_pads, groups=layer.groups, activation=layer.activation, clip=layer.clip,
                         weight=None if layer.weight is None else
                         np.ascontiguousarray(layer.weight[sel]),
                         bias=None if layer.bias is None else layer.bias[sel],
                         origin=layer.origin + view.origin)
            graph.layers.insert(position, copy)
            position += 1
            src = out
        graph.layers.remove(view)
    for layer in reversed(chain):
        graph.layers.remove(layer)
        del graph.tensors[layer.output]
    return True


def _scatter(values: np.ndarray, select: np.ndarray, channels: int) -> np.ndarray:
    out = np.zeros((channels,) + values.shape[1:], dtype=values.dtype)
    out[select] = values
    return out


def _fold(graph: Graph, view: Layer) -> None:
    x, y = view.inputs[0], view.output
    select = np.asarray(view.select, dtype=np.int64)
    cx = graph.shape(x)[0]
    if len(set(select.tolist())) != select.size:
        raise UnsupportedModelError(f"{_what(view)}: a channel view that repeats channels "
                                    f"is not supported")
    if y in graph.outputs:
        if select.size == cx and np.array_equal(select, np.arange(cx)):
            pass
        else:
            raise UnsupportedModelError(
                f"{_what(view)}: a channel shuffle / slice cannot be a graph output (its "
                f"channels would have to be moved); end the model with a layer after it")
    position = graph.layers.index(view)
    if select.size < cx:
        graph.notes.append(f"channel view {_what(view)} reads {select.size} of {cx} channels: "
                           f"its consumers run over all {cx} (zero weights on the others)")
    identity = select.size == cx and np.array_equal(select, np.arange(cx))
    inserted: list[tuple[Layer, Layer]] = []
    for layer in graph.consumers(y):
        where = f"{_what(view)} feeding {layer.name} ({layer.kind.value})"
        if identity:
            layer.inputs = [x if t == y else t for t in layer.inputs]
            continue
        if layer.kind is OpKind.CONV and layer.groups > 1:
            _ungroup(graph, layer, view)
        if layer.kind is OpKind.CHANNELS:
            layer.select = tuple(int(v) for v in select[list(layer.select)])
            layer.inputs = [x]
        elif layer.kind in (OpKind.CONV, OpKind.POINTWISE) and layer.groups == 1:
            w = layer.weight
            layer.weight = np.ascontiguousarray(
                _scatter(w.transpose(1, 0, 2, 3), select, cx).transpose(1, 0, 2, 3))
            layer.inputs = [x]
        elif layer.kind is OpKind.FC:
            _, h, w_ = graph.shape(y)
            m = layer.weight.shape[0]
            cols = layer.weight.reshape(m, select.size, h * w_).transpose(1, 0, 2)
            layer.weight = np.ascontiguousarray(
                _scatter(cols, select, cx).transpose(1, 0, 2).reshape(m, cx * h * w_))
            layer.inputs = [x]
        elif layer.kind in _PER_CHANNEL:
            if layer.kind is OpKind.DEPTHWISE:
                layer.weight = _scatter(layer.weight, select, cx)
                layer.groups = cx
            if layer.kind in (OpKind.DEPTHWISE, OpKind.SCALE) and layer.weight is not None:
                if layer.kind is OpKind.SCALE:
                    layer.weight = _scatter(layer.weight, select, cx)
                if layer.bias is not None:
                    layer.bias = _scatter(layer.bias, select, cx)
            inserted.append((layer, _move_below(graph, layer, x, select, view)))
        elif layer.kind is OpKind.CONCAT:
            parts, offset = [], 0
            for t in layer.inputs:
                c = cx if t == y else graph.shape(t)[0]
                parts.append(offset + (select if t == y else np.arange(c)))
                offset += c
            layer.inputs = [x if t == y else t for t in layer.inputs]
            inserted.append((layer, _move_below(graph, layer, None, np.concatenate(parts),
                                                view)))
        elif layer.kind is OpKind.ADD and all(t == y for t in layer.inputs):
            layer.inputs = [x, x]
            inserted.append((layer, _move_below(graph, layer, x, select, view)))
        else:
            raise UnsupportedModelError(
                f"{where}: this channel view cannot be folded into a {layer.kind.value} "
                f"layer; only convolutions, "
                f"fully connected layers, per-channel layers and concatenations absorb it")
    graph.layers.pop(position)
    if y not in graph.outputs:
        del graph.tensors[y]
    else:  # an identity view that is a graph output: keep y as x's name
        graph.outputs = [x if t == y else t for t in graph.outputs]
        del graph.tensors[y]
    for layer, new_view in inserted:
        graph.layers.insert(graph.layers.index(layer) + 1, new_view)


def _ungroup(graph: Graph, layer: Layer, view: Layer) -> None:
    """Rewrite a grouped convolution as an ungrouped one with block-diagonal weights
    (exact; its MACs grow by the number of groups)."""
    g = layer.groups
    w = layer.weight
    m, cg = w.shape[:2]
    dense = np.zeros((m, cg * g) + w.shape[2:], dtype=w.dtype)
    for i in range(m):
        k = i // (m // g)
        dense[i, k * cg:(k + 1) * cg] = w[i]
    layer.weight = dense
    layer.groups = 1
    graph.notes.append(f"grouped convolution {layer.name} (groups={g}) made ungrouped to "
                       f"absorb the channel view {_what(view)}: {g}x its MACs")


def _move_below(graph: Graph, layer: Layer, x, select, view: Layer) -> Layer:
    """Make ``layer`` produce all channels into a new tensor and return the view that
    restores its old output from it."""
    z = layer.output
    if x is not None:
        layer.inputs = [x if t == view.output else t for t in layer.inputs]
    old = graph.tensors[z]
    full = graph.unique_name(f"{z}.all")
    channels = int(select.max()) + 1 if x is None else graph.shape(layer.inputs[0])[0]
    if layer.kind is OpKind.CONCAT:
        channels = sum(graph.shape(t)[0] for t in layer.inputs)
    graph.tensors[full] = Tensor(full, (channels,) + tuple(old.shape[1:]))
    layer.outputs = [full]
    return Layer(graph.unique_name(f"{view.name}.moved"), OpKind.CHANNELS, [full], [z],
                 select=tuple(int(v) for v in select), origin=view.origin)
