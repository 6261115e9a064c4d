"""ONNX LSTM import: forward, batch 1, single layer or stacked (``LSTM -> Squeeze -> LSTM``),
with Linear layers (``MatMul`` [+ ``Add``] or ``Gemm`` with constant weights) before, between
or after the LSTMs; the layers form one chain from the input to the output."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from compiler import errors

__all__ = ["LinearSpec", "LstmLayerSpec", "LstmModel", "import_lstm", "is_lstm_model"]

_PASS = {"Squeeze", "Reshape", "Identity"}


@dataclass
class LstmLayerSpec:
    name: str
    input_size: int
    hidden: int
    w: np.ndarray   # (4H, I) float, ONNX gate order i, o, f, c
    r: np.ndarray   # (4H, H)
    b: np.ndarray   # (4H,) Wb + Rb
    kind = "lstm"

    @property
    def output_size(self):
        return self.hidden


@dataclass
class LinearSpec:
    """``y = w @ x + b`` on each time step (ONNX ``MatMul`` [+ ``Add``] or ``Gemm``)."""
    name: str
    input_size: int
    out: int
    w: np.ndarray   # (out, input) float
    b: np.ndarray   # (out,)
    kind = "linear"

    @property
    def output_size(self):
        return self.out


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
    consumers = {}
    for node in m.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    folded = set()   # Add nodes folded into the MatMul before them
    # the tensor each layer reads and the one it writes, for the chain check
    links = []
    for node in m.graph.node:
        label = f"node {node.name or node.op_type!r} ({node.op_type})"
        if node.op_type in _PASS or id(node) in folded:
            continue
        if node.op_type in ("MatMul", "Gemm"):
            spec, out, problem = _linear(node, label, inits, consumers, folded)
            if problem:
                problems.append(problem)
            else:
                layers.append(spec)
                links.append((node.input[0], out))
            continue
        if node.op_type != "LSTM":
            problems.append(f"{label}: not supported in an LSTM model (only LSTM, Linear "
                            f"layers as MatMul [+ Add] or Gemm, Squeeze, Reshape, Identity)")
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
        links.append((node.input[0], list(node.output)))
    if not any(spec.kind == "lstm" for spec in layers) and not problems:
        problems.append("the graph holds no LSTM node")

    def source(name):
        while name in producer and producer[name].op_type in _PASS:
            name = producer[name].input[0]
        return name

    for i, (a, b) in enumerate(itertools.pairwise(layers)):
        if b.input_size != a.output_size:
            problems.append(f"{b.kind} {b.name!r}: input size {b.input_size} differs from "
                            f"the output size {a.output_size} of {a.name!r}")
        outs = links[i][1]
        if source(links[i + 1][0]) not in (outs if isinstance(outs, (list, tuple)) else [outs]):
            problems.append(f"{b.kind} {b.name!r} does not read the output of {a.name!r}: "
                            f"the layers must form one chain")
    if links and graph_inputs and source(links[0][0]) != graph_inputs[0].name:
        problems.append(f"{layers[0].kind} {layers[0].name!r} does not read the graph input")
    lstm_last = max((i for i, spec in enumerate(layers) if spec.kind == "lstm"), default=None)
    tail_last = False   # Linear layers after the last LSTM read its Y_h (last step only)
    if lstm_last is not None and lstm_last + 1 < len(layers):
        outs = list(links[lstm_last][1])
        src = source(links[lstm_last + 1][0])
        if src in outs and outs.index(src) == 2:
            problems.append(f"{layers[lstm_last + 1].name!r} reads the cell state Y_c; "
                            f"give Y or Y_h")
        tail_last = src in outs and outs.index(src) == 1
    out_name, out_kind = None, None
    if len(m.graph.output) != 1:
        problems.append(f"the graph has {len(m.graph.output)} outputs; an LSTM model has one "
                        f"(the last layer's Y or Y_h)")
    elif layers and layers[-1].kind == "linear":
        out_name = m.graph.output[0].name
        if source(out_name) != links[-1][1]:
            problems.append(f"output {out_name!r} is not the output of the last layer "
                            f"{layers[-1].name!r}")
        out_kind = "last" if tail_last else "sequence"
    elif layers:
        out_name = m.graph.output[0].name
        name = source(out_name)
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


def _linear(node, label, inits, consumers, folded):
    """``(LinearSpec, output tensor, None)`` or ``(None, None, problem)``."""
    ins = list(node.input)
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0):
            return None, None, f"{label}: transA=1 is not supported"
        if len(ins) < 2 or ins[1] not in inits:
            return None, None, f"{label}: the weight B must be an initializer (constant)"
        w = inits[ins[1]]
        w = w if _attr(node, "transB", 0) else w.T
        w = w * float(_attr(node, "alpha", 1.0))
        out_size = w.shape[0]
        b = np.zeros(out_size)
        if len(ins) > 2 and ins[2]:
            if ins[2] not in inits:
                return None, None, f"{label}: the bias C must be an initializer (constant)"
            b = np.broadcast_to(inits[ins[2]].reshape(-1), (out_size,)) * float(
                _attr(node, "beta", 1.0))
        out = node.output[0]
    else:
        if len(ins) != 2 or ins[1] not in inits or inits[ins[1]].ndim != 2:
            return None, None, (f"{label}: the second operand must be a 2-D initializer "
                                f"(the Linear layer's weight)")
        w = inits[ins[1]].T
        out_size = w.shape[0]
        b = np.zeros(out_size)
        out = node.output[0]
        users = consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Add":
            add = users[0]
            other = [i for i in add.input if i != out]
            if len(other) == 1 and other[0] in inits and inits[other[0]].size in (1, out_size):
                b = np.broadcast_to(inits[other[0]].reshape(-1), (out_size,))
                folded.add(id(add))
                out = add.output[0]
    if w.ndim != 2:
        return None, None, f"{label}: the weight must be 2-D"
    return LinearSpec(node.name or f"linear_{out}", int(w.shape[1]), int(out_size),
                      np.asarray(w, dtype=np.float64), np.array(b, dtype=np.float64)), out, None
