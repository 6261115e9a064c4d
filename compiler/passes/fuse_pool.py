"""Max-pool fusion: which max pools run inside the layer before them.

The CONV engine fuses a 2x2 stride-2 max pool after requantization (the only pool an
engine fuses, :attr:`hw.engine_kinds.EngineKind.fused_pool`). :func:`plan_pool_fusion`
finds, in a lowered graph, every unpadded 2x2 stride-2 ``MaxPool`` that is the sole
consumer of a layer emitted on the CONV engine; code generation then emits the pair as
one COMPUTE with ``pool = MAX`` and the pool's output as its result. The graph itself
is left as it is, so the golden runner and the reports still see both layers.
"""

from __future__ import annotations

from compiler.ir import Graph, Layer, OpKind

__all__ = ["fusable_pool", "plan_pool_fusion", "runs_pointwise"]


def runs_pointwise(layer: Layer) -> bool:
    """Whether a conv / pointwise layer runs on the POINTWISE engine (1x1, unpadded,
    ungrouped); the others run on the CONV engine."""
    return tuple(layer.kernel) == (1, 1) and not any(layer.pads) and layer.groups == 1


def fusable_pool(graph: Graph, layer: Layer) -> Layer | None:
    """The max pool fused into ``layer``: a 2x2 stride-2 unpadded MaxPool, sole consumer of
    a layer emitted as CONV (the only pool the engines fuse), else ``None``."""
    if layer.kind not in (OpKind.CONV, OpKind.POINTWISE) or runs_pointwise(layer):
        return None
    if layer.output in graph.outputs:
        return None
    consumers = graph.consumers(layer.output)
    if len(consumers) != 1:
        return None
    pool = consumers[0]
    if (pool.kind is not OpKind.MAXPOOL or tuple(pool.kernel) != (2, 2)
            or tuple(pool.stride) != (2, 2) or any(pool.pads)):
        return None
    return pool


def plan_pool_fusion(graph: Graph) -> dict[str, Layer]:
    """Layer name -> the max-pool layer fused into it, for every fusable pair of ``graph``
    (in layer order)."""
    fused = {}
    for layer in graph.layers:
        pool = fusable_pool(graph, layer)
        if pool is not None:
            fused[layer.name] = pool
    return fused
