"""Golden ops against the ONNX project's own backend test data (PyTorch-converted).

Each case ships ``model.onnx`` with one input and the expected float output, computed by
PyTorch. The input is quantized per tensor (symmetric int8), weights per output channel
(int8), biases to int32 at the accumulator scale; the golden ops run the graph, the
result is dequantized and compared by signal-to-noise ratio:

- accumulators of Conv (before requantization): SNR >= 30 dB against PyTorch's output;
- int8 outputs of every case (after requantization to an output scale calibrated on the
  expected output; max pooling keeps its input scale): SNR >= 30 dB.

Attributes come from the nodes (kernel_shape, strides, pads, group, dilations).
Only 1-D and 2-D cases with dilation 1 are supported; 3-D and dilated cases are left out
of the list by name and by attribute.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sim.golden import (
    avg_pool2d,
    conv2d,
    dequantize,
    fixed_point_multiplier,
    max_pool2d,
    qrange,
    quantize,
    requantize,
    snr_db,
)

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
PREFIXES = ("test_Conv1d", "test_Conv2d", "test_MaxPool", "test_AvgPool")
SNR_DB_MIN = 30.0
BITS = 8
LO, HI = qrange(BITS)


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def supported(case_dir):
    """Whether every node is one the golden ops express (no dilation, 1-D or 2-D)."""
    model = onnx.load(case_dir / "model.onnx")
    for node in model.graph.node:
        attrs = attributes(node)
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            if any(d != 1 for d in attrs.get("dilations", [1])):
                return False
            if len(attrs.get("kernel_shape", [])) not in (1, 2):
                return False
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                return False
            if attrs.get("ceil_mode", 0):
                return False
        elif node.op_type not in ("Unsqueeze", "Squeeze"):
            return False
    return True


def _case_names():
    dirs = sorted(p for p in DATA.iterdir() if p.name.startswith(PREFIXES))
    # The golden ops are 1-D and 2-D; 3-D variants are left out by name.
    return [p.name for p in dirs if "3d" not in p.name and supported(p)]


CASES = _case_names()


def quantize_tensor(x):
    scale = float(np.abs(x).max()) / HI
    return quantize(x, scale, BITS), scale


def as_2d(shape_list, one_d, fill):
    """ONNX 1-D attribute values as the (H, W) pair of an H = 1 image."""
    return (fill, shape_list[0]) if one_d else tuple(shape_list)


def pads_2d(pads, one_d):
    if one_d:  # (begin, end) -> (top, left, bottom, right)
        return (0, pads[0], 0, pads[1])
    return (pads[0], pads[1], pads[2], pads[3])  # ONNX: (h_begin, w_begin, h_end, w_end)


class QTensor:
    """An int tensor with its per-tensor scale, carried through the graph."""

    def __init__(self, q, scale):
        self.q, self.scale = q, scale


def run_conv(node, inputs, inits, reference, out_max):
    x = inputs[node.input[0]]
    attrs = attributes(node)
    w = inits[node.input[1]]
    one_d = w.ndim == 3
    scale_w = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / HI
    wq = quantize(w, scale_w, BITS, axis=0)
    acc_scale = x.scale * scale_w
    bq = None
    if len(node.input) > 2:
        bq = quantize(inits[node.input[2]], acc_scale, 32, axis=0)
    xq = x.q[:, :, None, :] if one_d else x.q
    w4 = wq[:, :, None, :] if one_d else wq
    acc = conv2d(xq, w4, bq, stride=as_2d(attrs.get("strides", [1] * (w.ndim - 2)), one_d, 1),
                 pads=pads_2d(attrs.get("pads", [0] * 2 * (w.ndim - 2)), one_d),
                 groups=attrs.get("group", 1))
    if one_d:
        acc = acc[:, :, 0, :]
    # Before requantization: the accumulator, dequantized, is the float conv of the
    # quantized operands.
    if reference is not None:
        assert snr_db(reference, dequantize(acc, acc_scale)) >= SNR_DB_MIN
    out_scale = out_max / HI if out_max is not None else x.scale
    m, s = fixed_point_multiplier(acc_scale / out_scale)
    return QTensor(requantize(acc, m, s, LO, HI, axis=1), out_scale)


def run_pool(node, inputs, out_max):
    x = inputs[node.input[0]]
    attrs = attributes(node)
    one_d = len(attrs["kernel_shape"]) == 1
    kernel = as_2d(attrs["kernel_shape"], one_d, 1)
    stride = as_2d(attrs.get("strides", [1] * len(attrs["kernel_shape"])), one_d, 1)
    pads = pads_2d(attrs.get("pads", [0] * 2 * len(attrs["kernel_shape"])), one_d)
    xq = x.q[:, :, None, :] if one_d else x.q
    out_scale = x.scale
    if node.op_type == "MaxPool":
        y = max_pool2d(xq, kernel, stride, pads)
    else:
        # The golden divisor counts padded zeros; ONNX's default excludes them, which only
        # differs when there is padding.
        assert attrs.get("count_include_pad", 0) == 1 or not any(pads)
        if out_max is not None:
            out_scale = out_max / HI
        m, s = fixed_point_multiplier(x.scale / out_scale / (kernel[0] * kernel[1]))
        y = avg_pool2d(xq, kernel, stride, m, s, LO, HI, pads)
    return QTensor(y[:, :, 0, :] if one_d else y, out_scale)


def run_case(case_dir):
    model = onnx.load(case_dir / "model.onnx")
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in inits]
    assert len(graph_inputs) == 1
    x = numpy_helper.to_array(onnx.load_tensor(case_dir / "test_data_set_0" / "input_0.pb"))
    expected = numpy_helper.to_array(
        onnx.load_tensor(case_dir / "test_data_set_0" / "output_0.pb")).astype(np.float64)
    values = {graph_inputs[0]: QTensor(*quantize_tensor(x.astype(np.float64)))}
    final = model.graph.output[0].name
    computing = [n for n in model.graph.node if n.op_type not in ("Unsqueeze", "Squeeze")]
    for node in model.graph.node:
        src = values[node.input[0]]
        attrs = attributes(node)
        # Output calibration: the last computing node's output range is the expected
        # output's (only reshapes follow it).
        out_max = float(np.abs(expected).max()) if node is computing[-1] else None
        if node.op_type == "Conv":
            ref = expected if node.output[0] == final else None
            out = run_conv(node, values, inits, ref, out_max)
        elif node.op_type in ("MaxPool", "AveragePool"):
            out = run_pool(node, values, out_max)
        elif node.op_type == "Unsqueeze":
            out = QTensor(np.expand_dims(src.q, tuple(attrs["axes"])), src.scale)
        else:  # Squeeze
            out = QTensor(np.squeeze(src.q, tuple(attrs["axes"])), src.scale)
        values[node.output[0]] = out
    result = values[final]
    return dequantize(result.q, result.scale), expected


def test_case_list_covers_conv_depthwise_and_pools():
    # Every supported 1-D / 2-D case of the four families, and nothing else.
    assert len(CASES) == 24
    assert {"test_Conv2d_depthwise", "test_Conv2d_depthwise_strided",
            "test_Conv2d_depthwise_padded", "test_Conv2d_depthwise_with_multiplier",
            "test_Conv2d_groups", "test_Conv1d_groups", "test_MaxPool2d",
            "test_AvgPool2d", "test_AvgPool1d", "test_MaxPool1d"} <= set(CASES)
    assert not any("dilat" in c or "3d" in c for c in CASES)


@pytest.mark.parametrize("case", CASES)
def test_backend_case(case):
    got, expected = run_case(DATA / case)
    assert got.shape == expected.shape
    assert snr_db(expected, got) >= SNR_DB_MIN
