"""onnxruntime runs of a float model, with the graph's intermediate tensors exposed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from compiler.ir import Graph
from compiler.samples import as_batches

__all__ = ["onnx_runs", "session_for"]


def _load(model):
    import onnx
    if isinstance(model, (str, Path)):
        return onnx.load(str(model))
    return model


def session_for(model, extra_outputs):
    """``(session, model)``: a one-thread CPU onnxruntime session of ``model`` (a path or a
    ``ModelProto``) that also outputs those of ``extra_outputs`` the model computes."""
    import onnx
    import onnxruntime as ort
    model = _load(model)
    produced = {o for node in model.graph.node for o in node.output}
    present = {o.name for o in model.graph.output}
    exposed = [t for t in extra_outputs if t in produced and t not in present]
    if exposed:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for name in exposed:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session, model


def onnx_runs(model, graph: Graph, inputs, tensors=None):
    """Run onnxruntime on ``model`` one sample at a time.

    Yields, per sample, a dict of the requested ``tensors`` (default: every IR
    tensor the model also computes) that onnxruntime produced, as float32 arrays
    shaped like the IR tensors ``(C, H, W)``. Intermediate tensors are exposed as
    extra model outputs.
    """
    batches = as_batches(graph, inputs)
    wanted = list(tensors) if tensors is not None else list(graph.tensors)
    session, _ = session_for(model, wanted)
    names = [o.name for o in session.get_outputs()]
    keep = [name in wanted for name in names]
    feeds_meta = {i.name: i for i in session.get_inputs()}
    n = len(next(iter(batches.values())))
    for k in range(n):
        feed = {}
        for name, batch in batches.items():
            meta = feeds_meta[name]
            shape = [d if isinstance(d, int) else 1 for d in meta.shape]
            feed[name] = batch[k].reshape(shape).astype(np.float32)
        values = {}
        for name, value, wanted_name in zip(names, session.run(names, feed), keep):
            if not wanted_name:
                continue
            value = np.asarray(value)
            shape = graph.tensors[name].shape if name in graph.tensors else None
            if shape is not None and value.size == math.prod(shape):
                value = value.reshape(shape)
            elif value.shape[:1] == (1,):
                value = value[0]
            values[name] = value
        yield values
