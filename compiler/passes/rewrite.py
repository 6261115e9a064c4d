"""Graph surgery shared by the lowering passes: removing a layer, merging two."""

from __future__ import annotations

import numpy as np

from compiler.ir import Graph, Layer, conv_kind

__all__ = ["absorb_successor", "bypass", "make_channel_conv", "replace_uses", "sole_consumer"]


def replace_uses(graph: Graph, old: str, new: str) -> None:
    """Make every reader of tensor ``old`` (layers and graph outputs) read ``new``."""
    for layer in graph.layers:
        layer.inputs = [new if t == old else t for t in layer.inputs]
    graph.outputs = [new if t == old else t for t in graph.outputs]
    for op in graph.host_ops:
        if op.input == old:
            op.input = new


def sole_consumer(graph: Graph, tensor: str) -> Layer | None:
    """The only layer reading ``tensor``, if exactly one does and it is no graph output."""
    if tensor in graph.outputs:
        return None
    readers = graph.consumers(tensor)
    if len(readers) != 1 or readers[0].inputs.count(tensor) != 1:
        return None
    return readers[0]


def _rename(graph: Graph, old: str, new: str) -> None:
    """Rename tensor ``old`` to the (currently unused) name ``new`` everywhere."""
    tensor = graph.tensors.pop(old)
    tensor.name = new
    graph.tensors[new] = tensor
    for layer in graph.layers:
        layer.outputs = [new if t == old else t for t in layer.outputs]
    replace_uses(graph, old, new)
    graph.inputs = [new if t == old else t for t in graph.inputs]


def bypass(graph: Graph, layer: Layer) -> bool:
    """Remove a single-input layer that does not change its input's values.

    Readers of its output read its input instead. When its output is a graph output,
    the input tensor takes the output's name so the graph keeps its interface.
    Returns ``False`` (graph unchanged) when the layer maps a graph input straight
    to a graph output, or its input is itself a graph output or read elsewhere.
    """
    src, dst = layer.inputs[0], layer.output
    if dst in graph.outputs:
        if src in graph.inputs or src in graph.outputs or len(graph.consumers(src)) != 1:
            return False
        graph.layers.remove(layer)
        del graph.tensors[dst]
        _rename(graph, src, dst)
        return True
    graph.layers.remove(layer)
    del graph.tensors[dst]
    replace_uses(graph, dst, src)
    return True


def absorb_successor(graph: Graph, first: Layer, second: Layer) -> None:
    """Let ``first`` produce ``second``'s output and delete ``second``.

    The caller has folded ``second``'s computation into ``first`` and checked that
    ``second`` is the sole consumer of ``first``'s output.
    """
    old = first.output
    first.outputs = list(second.outputs)
    first.origin = first.origin + tuple(o for o in second.origin if o not in first.origin)
    graph.layers.remove(second)
    del graph.tensors[old]


def make_channel_conv(graph: Graph, layer: Layer, scale=None, shift=None) -> None:
    """Turn ``layer`` in place into a per-channel 1x1 conv ``y = x * scale + shift``.

    Depthwise for several channels, pointwise for one; defaults are the identity.
    The layer keeps its name, tensors and activation.
    """
    c = graph.shape(layer.inputs[0])[0]
    scale = np.ones(c) if scale is None else scale
    shift = np.zeros(c) if shift is None else shift
    layer.kind = conv_kind(c, c, (1, 1), (1, 1), (0, 0, 0, 0), c)
    layer.groups = c
    layer.weight = np.asarray(scale, dtype=np.float32).reshape(c, 1, 1, 1)
    layer.bias = np.asarray(shift, dtype=np.float32).reshape(c)
