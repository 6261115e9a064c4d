"""Magnitude pruning: zero the smallest weights until a target sparsity is reached.

Runs on the float graph before quantization (zeros stay zeros through every
weight scheme, and quantization can only add zeros). ``scope="layer"`` prunes
each weighted layer to the target on its own; ``scope="global"`` ranks all
weights of the selected layers together, so layers with many small weights
lose more (seed 001's pruning sweep uses per-layer targets; seed 002's Descartes
prunes globally).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from compiler.errors import QuantizationError
from compiler.ir import WEIGHTED_KINDS, Graph, OpKind

__all__ = ["PRUNE_SCOPES", "PruneReport", "prune", "prune_graph"]

PRUNE_SCOPES = ("layer", "global")


@dataclass
class PruneReport:
    """Achieved sparsity of a pruning run.

    Parameters
    ----------
    target : float
        Requested fraction of zero weights.
    scope : str
        ``"layer"`` or ``"global"``.
    layers : dict of str to float
        Achieved fraction of zero weights per pruned layer.
    achieved : float
        Fraction of zero weights over all pruned layers.
    """

    target: float
    scope: str
    layers: dict[str, float] = field(default_factory=dict)
    achieved: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [(f"Pruning to {100 * self.target:.1f}% ({self.scope}): achieved "
                 f"{100 * self.achieved:.2f}%")]
        lines += [f"  {name:<32} {100 * s:6.2f}%" for name, s in self.layers.items()]
        return "\n".join(lines)


def _prune_count(size: int, sparsity: float) -> int:
    return round(size * sparsity)


def prune(graph: Graph, sparsity: float, *, scope: str = "layer", layers=None,
          skip_kinds=(OpKind.DEPTHWISE,)) -> tuple[Graph, PruneReport]:
    """Zero the smallest-magnitude float weights of ``graph``.

    Parameters
    ----------
    graph : Graph
        Float graph; not modified.
    sparsity : float
        Target fraction of zero weights, ``0 <= sparsity < 1``.
    scope : str
        ``"layer"`` (each layer to the target) or ``"global"`` (one threshold).
    layers : iterable of str, optional
        Names of the layers to prune (default: every weighted layer whose kind is
        not in ``skip_kinds``).
    skip_kinds : tuple of OpKind
        Kinds left dense by default: a depthwise filter has so few weights per
        channel that pruning it costs far more accuracy than it saves.

    Returns
    -------
    (Graph, PruneReport)
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a number, not {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise QuantizationError(
            f"Pruning sparsity must be at least 0 and below 1 (a fraction of weights), "
            f"not {sparsity!r}")
    if scope not in PRUNE_SCOPES:
        raise QuantizationError(f"Pruning scope must be one of {', '.join(PRUNE_SCOPES)}, "
                                f"not {scope!r}")
    out = graph.copy()
    weighted = [layer for layer in out.layers if layer.kind in WEIGHTED_KINDS]
    if layers is None:
        chosen = [layer for layer in weighted if layer.kind not in skip_kinds]
    else:
        names = list(layers)
        by_name = {layer.name: layer for layer in weighted}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise QuantizationError(
                f"Cannot prune layer(s) {', '.join(unknown)}: not weighted layers of "
                f"{graph.name!r}; weighted layers are {', '.join(by_name)}")
        chosen = [by_name[n] for n in names]
    report = PruneReport(target=float(sparsity), scope=scope)
    if not chosen:
        return out, report
    if scope == "global":
        flat = np.concatenate([np.abs(layer.weight).ravel() for layer in chosen])
        k = _prune_count(flat.size, sparsity)
        if k:
            order = np.argsort(flat, kind="stable")
            keep = np.ones(flat.size, dtype=bool)
            keep[order[:k]] = False
            offset = 0
            for layer in chosen:
                n = layer.weight.size
                mask = keep[offset:offset + n].reshape(layer.weight.shape)
                layer.weight = np.where(mask, layer.weight, np.float32(0)).astype(np.float32)
                offset += n
    else:
        for layer in chosen:
            w = layer.weight
            k = _prune_count(w.size, sparsity)
            if k:
                order = np.argsort(np.abs(w).ravel(), kind="stable")
                flat = w.ravel().copy()
                flat[order[:k]] = 0.0
                layer.weight = flat.reshape(w.shape).astype(np.float32)
    zeros = total = 0
    for layer in chosen:
        z = int(np.count_nonzero(layer.weight == 0))
        report.layers[layer.name] = z / layer.weight.size
        zeros += z
        total += layer.weight.size
    report.achieved = zeros / total
    out.validate()
    return out, report


def prune_graph(graph: Graph, ctx) -> Graph:
    """Pipeline pass: prune to ``ctx.options["prune_sparsity"]`` (no-op if absent).

    ``ctx.options["prune_scope"]`` selects ``"layer"`` (default) or ``"global"``;
    the :class:`PruneReport` goes to ``ctx.options["prune_report"]``.
    """
    sparsity = ctx.options.get("prune_sparsity")
    if not sparsity:
        return graph
    pruned, report = prune(graph, sparsity, scope=ctx.options.get("prune_scope", "layer"))
    ctx.options["prune_report"] = report
    return pruned
