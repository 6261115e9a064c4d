"""Folding passes: per-channel affines (BatchNormalization) and zero padding.

``fold_scales`` multiplies a :attr:`~compiler.ir.OpKind.SCALE` into the weights and
bias of the conv or fully connected layer that produces its input, when nothing
else reads that layer's output and no activation sits between them.
``lower_scales`` turns the scales left over (a BatchNormalization after a pooling
layer or a graph input, say) into depthwise 1x1 convolutions.
``fold_pads`` merges a zero :attr:`~compiler.ir.OpKind.PAD` into the padding of the
convolution or average pooling that reads it.
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Activation, Graph, OpKind
from compiler.passes.rewrite import absorb_successor, make_channel_conv, sole_consumer

__all__ = ["fold_pads", "fold_scales", "lower_scales"]

_FOLDABLE_PRODUCERS = (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.FC)


def fold_scales(graph: Graph, ctx=None) -> Graph:
    """Fold every SCALE layer into the weighted layer producing its input."""
    for scale in [layer for layer in graph.layers if layer.kind is OpKind.SCALE]:
        producer = graph.producer(scale.inputs[0])
        if (producer is None or producer.kind not in _FOLDABLE_PRODUCERS
                or producer.activation is not Activation.NONE
                or sole_consumer(graph, producer.output) is not scale):
            continue
        s = scale.weight.astype(np.float64)
        w = producer.weight.astype(np.float64)
        producer.weight = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        b = np.zeros_like(s) if producer.bias is None else producer.bias.astype(np.float64)
        producer.bias = (b * s + scale.bias).astype(np.float32)
        absorb_successor(graph, producer, scale)
    return graph


def lower_scales(graph: Graph, ctx=None) -> Graph:
    """Turn every remaining SCALE layer into a depthwise 1x1 convolution."""
    for layer in graph.layers:
        if layer.kind is not OpKind.SCALE:
            continue
        make_channel_conv(graph, layer, layer.weight, layer.bias)
    return graph


_PAD_ABSORBERS = (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE, OpKind.AVGPOOL)


def fold_pads(graph: Graph, ctx=None) -> Graph:
    """Merge zero PAD layers into the padding of the conv / average pool reading them.

    The zeros of a Pad count in an average pool's divisor, so they join its counted
    padding (:attr:`Layer.count_pads`) too. Max pooling pads with minus infinity, so a
    zero Pad stays in front of it. A pad is kept where the merged padding would reach
    the kernel size.
    """
    for pad in [layer for layer in graph.layers if layer.kind is OpKind.PAD]:
        user = sole_consumer(graph, pad.output)
        if user is None or user.kind not in _PAD_ABSORBERS:
            continue
        merged = tuple(a + b for a, b in zip(pad.pads, user.pads))
        kh, kw = user.kernel
        if max(merged[0], merged[2]) >= kh or max(merged[1], merged[3]) >= kw:
            continue
        user.pads = merged
        if user.count_pads is not None:
            user.count_pads = tuple(a + b for a, b in zip(pad.pads, user.count_pads))
        if user.kind is OpKind.POINTWISE and any(merged):
            user.kind = OpKind.CONV
        user.inputs = [pad.inputs[0] if t == pad.output else t for t in user.inputs]
        user.origin = pad.origin + user.origin
        graph.layers.remove(pad)
        del graph.tensors[pad.output]
    return graph
