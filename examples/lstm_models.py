"""Seeded ONNX LSTM models built with ``onnx.helper`` (forward, batch 1)."""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_model"]


def lstm_model(input_size=16, hidden=32, steps=8, layers=1, *, seed=0, output="sequence",
               weight_scale=None, gate_scales=(1.0, 1.0, 1.0, 1.0)):
    """``layers`` stacked LSTMs (``LSTM -> Squeeze -> LSTM ...``), weights ~ U(-a, a) with
    ``a = weight_scale or 1 / sqrt(hidden)`` (PyTorch's default), biases likewise.

    ``output``: ``"sequence"`` (the last layer's squeezed Y, [T, 1, H]) or ``"last"`` (Y_h).
    ``gate_scales`` multiplies the weights of the gates i, o, f, c (trained LSTMs have
    gates of different magnitudes, which unbalances global magnitude pruning).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    a = weight_scale or 1.0 / np.sqrt(hidden)
    nodes, inits = [], []
    x = "X"
    size = input_size
    for i in range(layers):
        w = rng.uniform(-a, a, (1, 4 * hidden, size)).astype(np.float32)
        r = rng.uniform(-a, a, (1, 4 * hidden, hidden)).astype(np.float32)
        scale = np.repeat(np.asarray(gate_scales, dtype=np.float32), hidden)[None, :, None]
        w, r = w * scale, r * scale
        b = rng.uniform(-a, a, (1, 8 * hidden)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(r, f"R{i}"),
                  numpy_helper.from_array(b, f"B{i}")]
        last = i == layers - 1
        outs = [f"Y{i}", "Y_h"] if last and output == "last" else [f"Y{i}"]
        nodes.append(helper.make_node("LSTM", [x, f"W{i}", f"R{i}", f"B{i}"], outs,
                                      name=f"lstm{i}", hidden_size=hidden))
        nodes.append(helper.make_node("Squeeze", [f"Y{i}", "axes1"], [f"S{i}"],
                                      name=f"squeeze{i}"))
        x = f"S{i}"
        size = hidden
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"))
    if output == "last":
        out = helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, hidden])
        nodes = nodes[:-1]
    else:
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [steps, 1, hidden])
    graph = helper.make_graph(
        nodes, "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                      [steps, 1, input_size])],
        [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
