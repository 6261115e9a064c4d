"""``convforge check``: the legality report of a model, before any other work."""

from __future__ import annotations

import sys
from collections import Counter

from compiler.errors import UnsupportedModelError

__all__ = ["check_command", "summary"]


def summary(path, graph) -> str:
    """One paragraph describing a model that imported and lowered cleanly."""
    kinds = Counter(layer.kind.value for layer in graph.layers)
    ins = ", ".join(f"{n} {'x'.join(map(str, graph.shape(n)))}" for n in graph.inputs)
    outs = ", ".join(f"{n} {'x'.join(map(str, graph.shape(n)))}" for n in graph.outputs)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    lines = [f"{path}: OK, {len(graph.layers)} layers ({counts})",
             f"  inputs: {ins}", f"  accelerator outputs: {outs}"]
    lines += [f"  host: {op.name} ({op.op_type}) after {op.input}" for op in graph.host_ops]
    lines += [f"  note: {note}" for note in graph.notes]
    return "\n".join(lines)


def check_command(args) -> int:
    """Print the legality report; exit 1 if the model is unsupported, 0 if it is OK."""
    from compiler.pipeline import import_model

    try:
        graph = import_model(args.model)
    except UnsupportedModelError as e:
        return _check_host_fallback(args.model, e)
    print(summary(args.model, graph))
    return 0


def _check_host_fallback(model, error: UnsupportedModelError) -> int:
    """A model refused only for nodes with no accelerator mapping: the partition into
    accelerator segments and host partitions (exit 0); otherwise the refusal (exit 1)."""
    from compiler.partition import host_fallback_needed, plan_partition

    if not host_fallback_needed(model):
        print(str(error), file=sys.stderr)
        return 1
    try:
        plan = plan_partition(model)
    except UnsupportedModelError as e:
        # Every issue, then which of the nodes would run on the host.
        host = str(e).rsplit("\n", 1)[-1] if getattr(e, "issues", None) else str(e)
        print(str(error) if getattr(e, "issues", None) else "", file=sys.stderr)
        print(host, file=sys.stderr)
        return 1
    segs = [p for p in plan.parts if p.kind == "accelerator"]
    print(f"{model}: OK with host fallback, {sum(len(p.nodes) for p in segs)} nodes in "
          f"{len(segs)} accelerator segment(s)")
    print(plan.summary())
    return 0
