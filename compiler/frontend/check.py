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
        print(str(e), file=sys.stderr)
        return 1
    print(summary(args.model, graph))
    return 0
