"""Clean-up passes: drop no-op layers, and close the lowering.

``remove_identities`` deletes IDENTITY layers (Dropout, Identity, no-op reshapes).
``finish_lowering`` turns any identity that cannot be deleted (a graph input wired
straight to a graph output) into an identity depthwise 1x1 conv and marks the
graph lowered, after which :meth:`~compiler.ir.Graph.validate` refuses every
frontend-only kind.
"""

from __future__ import annotations

from compiler.ir import Graph, OpKind
from compiler.passes.rewrite import bypass, make_channel_conv

__all__ = ["finish_lowering", "remove_identities"]


def remove_identities(graph: Graph, ctx=None) -> Graph:
    """Delete every IDENTITY layer that can be bypassed."""
    for layer in [layer for layer in graph.layers if layer.kind is OpKind.IDENTITY]:
        bypass(graph, layer)
    return graph


def finish_lowering(graph: Graph, ctx=None) -> Graph:
    """Lower the identities left and mark the graph lowered."""
    for layer in graph.layers:
        if layer.kind is OpKind.IDENTITY:
            make_channel_conv(graph, layer)
    graph.lowered = True
    return graph
