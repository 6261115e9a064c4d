"""The explicit pass list: model file -> lowered (and later quantized) IR graph.

A pass is a named function ``pass_(graph, ctx) -> graph``; it may rewrite the
graph it is given in place and returns the graph to continue with. The pipeline
copies nothing between passes and runs :meth:`compiler.ir.Graph.validate` after
every one, so a pass that breaks an invariant is caught at its exit, by name.

:data:`FRONTEND_PASSES` lower the imported graph until every layer maps onto an
engine; :data:`QUANT_PASSES` prune and quantize it; :data:`PASSES` is the two in
order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from compiler.frontend import import_onnx
from compiler.ir import Graph, IRError
from compiler.passes.channels import fold_channels
from compiler.passes.cleanup import finish_lowering, remove_identities
from compiler.passes.fold import fold_pads, fold_scales, lower_scales
from compiler.passes.fuse import absorb_flattens, fuse_activations, lower_activations
from compiler.passes.gated import fuse_gated_activations
from compiler.passes.prune import prune_graph
from compiler.passes.quantize import quantize_graph

__all__ = [
    "FRONTEND_PASSES",
    "PASSES",
    "QUANT_PASSES",
    "Pass",
    "PassContext",
    "import_model",
    "run_passes",
]


@dataclass
class PassContext:
    """What passes may read besides the graph, and what the pipeline records.

    Parameters
    ----------
    arch : hw.arch.ArchConfig or None
        Target accelerator, for passes that depend on it.
    options : dict
        Pass-specific options, keyed by option name.
    timings : dict of str to float
        Seconds spent in each pass (filled by :func:`run_passes`).
    """

    arch: object = None
    options: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


Pass = Callable[[Graph, PassContext], Graph]

#: Lowering right after import. Order matters: identities go first so that
#: producer/consumer pairs become adjacent; scales (BatchNormalization) fold into
#: convs before activations fuse, because BN sits between a conv and its ReLU.
FRONTEND_PASSES: tuple[Pass, ...] = (
    remove_identities,
    fold_channels,
    fuse_gated_activations,
    absorb_flattens,
    fold_scales,
    lower_scales,
    fold_pads,
    fuse_activations,
    lower_activations,
    finish_lowering,
)

#: Compression after lowering: magnitude pruning (if ``ctx.options["prune_sparsity"]``),
#: then calibration and quantization (``ctx.options["calibration"]``, ``ctx.arch``).
QUANT_PASSES: tuple[Pass, ...] = (prune_graph, quantize_graph)

#: The whole pipeline, in order.
PASSES: list[Pass] = [*FRONTEND_PASSES, *QUANT_PASSES]


def run_passes(graph: Graph, passes=None, ctx: PassContext | None = None) -> Graph:
    """Run ``passes`` (default :data:`PASSES`) on ``graph``, validating after each.

    Raises
    ------
    compiler.ir.IRError
        A pass produced an invalid graph; the message names the pass.
    """
    ctx = PassContext() if ctx is None else ctx
    for pass_ in PASSES if passes is None else passes:
        name = getattr(pass_, "__name__", repr(pass_))
        start = time.perf_counter()
        graph = pass_(graph, ctx)
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - start
        try:
            graph.validate()
        except IRError as e:
            raise IRError(f"after pass {name}: {e}") from None
    return graph


def import_model(model, ctx: PassContext | None = None) -> Graph:
    """Import an ONNX model (path or ``ModelProto``) and lower it.

    Raises :class:`~compiler.frontend.ModelFileError` or
    :class:`~compiler.errors.UnsupportedModelError` (listing every unsupported
    node) before any pass runs.
    """
    ctx = PassContext() if ctx is None else ctx
    start = time.perf_counter()
    graph = import_onnx(model)
    ctx.timings["import_onnx"] = time.perf_counter() - start
    return run_passes(graph, FRONTEND_PASSES, ctx)
