"""Gated activations: ``x * Sigmoid(x)`` becomes one SiLU table, ``x * HardSigmoid(x)``
one HardSwish table.

Exporters write SiLU / Swish and (before opset 14) HardSwish as a product of the input
with its gate. Run as two layers, the gate would be quantized to 8 bits before the
product; one table of the whole function is exact by construction and saves the
product pass.
"""

from __future__ import annotations

from compiler.ir import Graph, OpKind
from compiler.passes.rewrite import sole_consumer
from compiler.table_act import TableActivation

__all__ = ["fuse_gated_activations"]

#: Gate function -> the function of ``x * gate(x)``.
_GATED = {"sigmoid": "silu", "hardsigmoid": "hardswish"}


def fuse_gated_activations(graph: Graph, ctx=None) -> Graph:
    """Replace ``MUL(x, TABLE_gate(x))`` by one TABLE layer when the gate has no other
    reader."""
    for mul in [layer for layer in graph.layers if layer.kind is OpKind.MUL]:
        for x, gated in (mul.inputs, mul.inputs[::-1]):
            gate = graph.producer(gated)
            if (gate is None or gate.kind is not OpKind.TABLE or gate.inputs[0] != x
                    or gate.table_act.function not in _GATED
                    or sole_consumer(graph, gated) is not mul or gated in graph.outputs):
                continue
            act = gate.table_act
            mul.kind = OpKind.TABLE
            mul.inputs = [x]
            mul.table_act = TableActivation(_GATED[act.function], act.alpha, act.beta)
            mul.origin = gate.origin + mul.origin
            graph.layers.remove(gate)
            del graph.tensors[gated]
            break
    return graph
