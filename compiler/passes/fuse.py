"""Fusion passes: activations into their producers, flattens into fully connected layers.

``fuse_activations`` folds an :attr:`~compiler.ir.OpKind.ACTIVATION` into the layer
producing its input (conv, pooling, add ...), composing clamps when the producer
already has one; ``lower_activations`` turns the leftovers (after a concat or a
graph input) into identity depthwise 1x1 convolutions that carry the clamp.
``absorb_flattens`` lets a fully connected layer read the unflattened
``(C, H, W)`` map directly (its weight columns are already in ``C, H, W`` order).
"""

from __future__ import annotations

from compiler.ir import Graph, Layer, OpKind, combine_activations
from compiler.passes.rewrite import absorb_successor, bypass, make_channel_conv, sole_consumer

__all__ = ["absorb_flattens", "fuse_activations", "lower_activations"]

#: Kinds whose output is clamped in their requantization step.
_CLAMPABLE = frozenset({OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC,
                        OpKind.AVGPOOL, OpKind.GAP, OpKind.ADD, OpKind.ACTIVATION,
                        OpKind.TABLE, OpKind.MUL})


def _clamp_into(layer: Layer, act: Layer) -> bool:
    """Give ``layer`` the composition of its clamp and ``act``'s, if expressible."""
    combined = combine_activations(layer, act)
    if combined is None:
        return False
    layer.activation, layer.clip = combined
    return True


def fuse_activations(graph: Graph, ctx=None) -> Graph:
    """Fuse every ACTIVATION layer into its producer where the producer can clamp.

    Max pooling passes values through without requantizing, so it carries no
    clamp; but a clamp commutes with a maximum, so an activation after a max pool
    moves onto the layer feeding the pool (``conv -> maxpool -> relu`` becomes
    ``conv+relu -> maxpool``).
    """
    for act in [layer for layer in graph.layers if layer.kind is OpKind.ACTIVATION]:
        producer = graph.producer(act.inputs[0])
        if producer is None or sole_consumer(graph, producer.output) is not act:
            continue
        if producer.kind in _CLAMPABLE:
            if _clamp_into(producer, act):
                absorb_successor(graph, producer, act)
        elif producer.kind is OpKind.MAXPOOL:
            inner = graph.producer(producer.inputs[0])
            if (inner is not None and inner.kind in _CLAMPABLE
                    and sole_consumer(graph, inner.output) is producer
                    and _clamp_into(inner, act)):
                inner.origin = inner.origin + act.origin
                act.origin = ()
                absorb_successor(graph, producer, act)
    return graph


def lower_activations(graph: Graph, ctx=None) -> Graph:
    """Turn every remaining ACTIVATION into an identity depthwise 1x1 conv with its clamp."""
    for layer in graph.layers:
        if layer.kind is not OpKind.ACTIVATION:
            continue
        make_channel_conv(graph, layer)
    return graph


def absorb_flattens(graph: Graph, ctx=None) -> Graph:
    """Remove FLATTEN layers: FC layers read the unflattened map; a flatten of a
    ``(C, 1, 1)`` map is a no-op."""
    for flat in [layer for layer in graph.layers if layer.kind is OpKind.FLATTEN]:
        src = flat.inputs[0]
        _, h, w = graph.shape(src)
        if h == w == 1:
            if not bypass(graph, flat):
                flat.kind = OpKind.IDENTITY
            continue
        readers = graph.consumers(flat.output)
        if flat.output in graph.outputs or any(r.kind is not OpKind.FC for r in readers):
            # The frontend refuses such models; leaving the layer makes validate() fail.
            continue
        for reader in readers:
            reader.inputs = [src if t == flat.output else t for t in reader.inputs]
            reader.origin = flat.origin + reader.origin
        graph.layers.remove(flat)
        del graph.tensors[flat.output]
    return graph
