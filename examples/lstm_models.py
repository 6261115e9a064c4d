"""Seeded ONNX LSTM models built with ``onnx.helper`` (forward, batch 1)."""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_model"]


def lstm_model(input_size=16, hidden=32, steps=8, layers=1, *, seed=0, output="sequence",
               weight_scale=None, gate_scales=(1.0, 1.0, 1.0, 1.0), linear_in=None,
               linear_out=None, gemm=False):
    """``layers`` stacked LSTMs (``LSTM -> Squeeze -> LSTM ...``), weights ~ U(-a, a) with
    ``a = weight_scale or 1 / sqrt(hidden)`` (PyTorch's default), biases likewise.

    ``output``: ``"sequence"`` (the last layer's squeezed Y, [T, 1, H]) or ``"last"`` (Y_h).
    ``gate_scales`` multiplies the weights of the gates i, o, f, c (trained LSTMs have
    gates of different magnitudes, which unbalances global magnitude pruning).
    ``linear_in`` / ``linear_out``: a Linear layer (PyTorch ``nn.Linear`` as exported:
    ``MatMul`` + ``Add``) from the input to ``linear_in`` features before the first LSTM,
    and from the last LSTM's output to ``linear_out`` features after it (as ``Reshape`` +
    ``Gemm`` with ``gemm``; ``output="last"`` then feeds it ``Y_h``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    a = weight_scale or 1.0 / np.sqrt(hidden)
    nodes, inits = [], []
    x = "X"
    size = input_size

    def linear(x, size, out, name):
        bound = 1.0 / np.sqrt(size)
        w = rng.uniform(-bound, bound, (size, out)).astype(np.float32)
        b = rng.uniform(-bound, bound, (out,)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_W"),
                      numpy_helper.from_array(b, f"{name}_B")])
        nodes.append(helper.make_node("MatMul", [x, f"{name}_W"], [f"{name}_mm"],
                                      name=f"{name}_matmul"))
        nodes.append(helper.make_node("Add", [f"{name}_mm", f"{name}_B"], [f"{name}_y"],
                                      name=f"{name}_add"))
        return f"{name}_y"

    if linear_in:
        x = linear(x, size, linear_in, "fc_in")
        size = linear_in
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
        x, rows = "Y_h", 1
    else:
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [steps, 1, hidden])
        rows = steps
    if linear_out and gemm:
        inits.append(numpy_helper.from_array(np.array([rows, hidden], dtype=np.int64),
                                             "flat"))
        nodes.append(helper.make_node("Reshape", [x, "flat"], ["fc_out_x"], name="flatten"))
        bound = 1.0 / np.sqrt(hidden)
        w = rng.uniform(-bound, bound, (linear_out, hidden)).astype(np.float32)
        b = rng.uniform(-bound, bound, (linear_out,)).astype(np.float32)
        inits += [numpy_helper.from_array(w, "fc_out_W"), numpy_helper.from_array(b, "fc_out_B")]
        nodes.append(helper.make_node("Gemm", ["fc_out_x", "fc_out_W", "fc_out_B"], ["fc_out_y"],
                                      name="fc_out_gemm", transB=1))
        out = helper.make_tensor_value_info("fc_out_y", TensorProto.FLOAT, [rows, linear_out])
    elif linear_out:
        x = linear(x, hidden, linear_out, "fc_out")
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [rows, 1, linear_out])
    graph = helper.make_graph(
        nodes, "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                      [steps, 1, input_size])],
        [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
