"""ONNX LSTM import: forward, batch 1, single layer or stacked (``LSTM -> Squeeze -> LSTM``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from compiler import errors

__all__ = ["LstmLayerSpec", "LstmModel", "import_lstm", "is_lstm_model"]

_PASS = {"Squeeze", "Reshape", "Identity"}


@dataclass
class LstmLayerSpec:
    name: str
    input_size: int
    hidden: int
    w: np.ndarray   # (4H, I) float, ONNX gate order i, o, f, c
    r: np.ndarray   # (4H, H)
    b: np.ndarray   # (4H,) Wb + Rb


@dataclass
class LstmModel:
    layers: list
    steps: int
    input_name: str
    output_name: str
    output_kind: str  # "sequence" (Y) or "last" (Y_h)
    onnx_model: object


def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model))
    except FileNotFoundError:
        raise errors.ModelFileError(f"{model}: no such file; pass an ONNX model") from None
    except Exception as e:  # noqa: BLE001 - onnx raises many kinds for a bad file
        raise errors.ModelFileError(f"{model}: not a readable ONNX model ({e})") from None


def is_lstm_model(model) -> bool:
    """True when the ONNX graph holds an ``LSTM`` node (the LSTM flow handles it)."""
    try:
        m = _load(model)
    except errors.ConvForgeError:
        return False
    return any(n.op_type == "LSTM" for n in m.graph.node)


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def import_lstm(model) -> LstmModel:
    """Read the LSTM layers of an ONNX model; every unsupported feature is listed at once."""
    from onnx import numpy_helper

    m = _load(model)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    graph_inputs = [i for i in m.graph.input if i.name not in inits]
    problems = []
    if len(graph_inputs) != 1:
        problems.append(f"the graph has {len(graph_inputs)} runtime inputs; an LSTM model "
                        f"takes one sequence input X [seq, 1, input]")
    layers = []
    producer = {}
    for node in m.graph.node:
        for o in node.output:
            producer[o] = node
    steps = None
    if graph_inputs:
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in graph_inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 3 or dims[1] != 1 or None in dims:
            problems.append(f"input {graph_inputs[0].name!r} has shape {dims}; give a static "
                            f"[seq_length, 1, input_size] shape (batch 1)")
        else:
            steps = dims[0]
    for node in m.graph.node:
        label = f"node {node.name or node.op_type!r} ({node.op_type})"
        if node.op_type in _PASS:
            continue
        if node.op_type != "LSTM":
            problems.append(f"{label}: not supported in an LSTM model (only LSTM, Squeeze, "
                            f"Reshape, Identity)")
            continue
        direction = _attr(node, "direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction != "forward":
            problems.append(f"{label}: direction {direction!r}; only 'forward' is supported")
        acts = _attr(node, "activations")
        if acts and [a.decode() if isinstance(a, bytes) else a for a in acts] != [
                "Sigmoid", "Tanh", "Tanh"]:
            problems.append(f"{label}: activations {acts}; only Sigmoid, Tanh, Tanh")
        if _attr(node, "clip") is not None:
            problems.append(f"{label}: clip is not supported; remove the attribute")
        if _attr(node, "input_forget", 0):
            problems.append(f"{label}: input_forget=1 is not supported")
        if _attr(node, "layout", 0):
            problems.append(f"{label}: layout=1 is not supported; export with layout 0")
        ins = list(node.input) + [""] * (8 - len(node.input))
        for idx, what in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c"),
                          (7, "P (peepholes)")):
            if ins[idx]:
                problems.append(f"{label}: input {what} is not supported; the states start "
                                f"at zero and every sequence has the model's length")
        missing = [ins[i] for i in (1, 2) if ins[i] not in inits]
        if missing or (ins[3] and ins[3] not in inits):
            problems.append(f"{label}: weights must be initializers (constants)")
            continue
        w, r = inits[ins[1]], inits[ins[2]]
        if w.shape[0] != 1:
            problems.append(f"{label}: {w.shape[0]} directions; only one (forward)")
            continue
        hidden = r.shape[-1]
        b = inits[ins[3]][0] if ins[3] else np.zeros(8 * hidden)
        layers.append(LstmLayerSpec(node.name or f"lstm{len(layers)}", w.shape[2], hidden,
                                    w[0], r[0], b[:4 * hidden] + b[4 * hidden:]))
    if not layers and not problems:
        problems.append("the graph holds no LSTM node")
    for a, b in itertools.pairwise(layers):
        if b.input_size != a.hidden:
            problems.append(f"LSTM {b.name!r}: input size {b.input_size} differs from the "
                            f"hidden size {a.hidden} of {a.name!r}")
    out_name, out_kind = None, None
    if len(m.graph.output) != 1:
        problems.append(f"the graph has {len(m.graph.output)} outputs; an LSTM model has one "
                        f"(the last layer's Y or Y_h)")
    elif layers:
        out_name = m.graph.output[0].name
        name = out_name
        while name in producer and producer[name].op_type in _PASS:
            name = producer[name].input[0]
        node = producer.get(name)
        lstm_nodes = [n for n in m.graph.node if n.op_type == "LSTM"]
        if node is None or node.op_type != "LSTM" or node is not lstm_nodes[-1]:
            problems.append(f"output {out_name!r} is not an output of the last LSTM")
        elif list(node.output).index(name) == 0:
            out_kind = "sequence"
        elif list(node.output).index(name) == 1:
            out_kind = "last"
        else:
            problems.append(f"output {out_name!r} is the cell state Y_c; give Y or Y_h")
    if problems:
        raise errors.UnsupportedModelError(
            "The LSTM model cannot be mapped:\n  - " + "\n  - ".join(problems))
    return LstmModel(layers, steps, graph_inputs[0].name, out_name, out_kind, m)
