"""The golden network runner: a quantized graph executed with :mod:`sim.golden` ops.

This is the reference the ISS and the RTL must match bit for bit, so it is
nothing but the straightforward composition of golden operations, one layer
at a time:

* conv / depthwise / pointwise / fully connected: accumulate (+ bias), then
  ``requantize(acc, m, s, lo, hi)``;
* max pooling passes values through; average pooling and global average
  pooling requantize window sums;
* residual add and concat rescale each input by its own multiplier.

It also measures how far the integers stay from float: :func:`compare_with_onnx`
runs onnxruntime on the float model (with the intermediate tensors exposed) and
reports per-layer and final SNR and top-1 agreement; :func:`compare_with_qdq`
checks an imported QDQ model against onnxruntime's own integer execution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import QuantizationError
from compiler.ir import Graph, Layer, OpKind
from compiler.onnxrun import onnx_runs
from compiler.quant.report import QuantReport
from compiler.reference import execute, run_float
from compiler.samples import as_batches
from sim import golden

__all__ = [
    "GoldenResult",
    "compare_with_onnx",
    "compare_with_qdq",
    "onnx_reference",
    "onnx_runs",
    "quantize_inputs",
    "run_golden",
    "run_golden_int",
    "run_layer",
]


@dataclass
class GoldenResult:
    """Integer outputs of a golden run.

    Parameters
    ----------
    outputs : dict of str to ndarray
        Graph outputs, int64 ``(N, C, H, W)``.
    tensors : dict of str to ndarray
        Every tensor (graph inputs included) when run with ``keep_all``; else the
        outputs only.
    scales : dict of str to float
        Scale of every tensor (``real = scale * integer``).
    """

    outputs: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray]
    scales: dict[str, float]

    def real(self, name: str) -> np.ndarray:
        """Dequantized values of tensor ``name``."""
        return self.tensors[name].astype(np.float64) * self.scales[name]


def _param(arr):
    """A one-entry parameter array as a scalar, per-channel arrays as they are."""
    arr = np.asarray(arr, dtype=np.int64)
    return int(arr[0]) if arr.size == 1 else arr


def run_layer(layer: Layer, xs: list[np.ndarray]) -> np.ndarray:
    """One quantized layer on integer ``(N, C, H, W)`` inputs; returns its int64 output."""
    q = layer.quant
    if q is None:
        raise QuantizationError(f"Layer {layer.name!r} is not quantized; run the quantize "
                                f"pass (or import a QDQ model) first")
    kind = layer.kind
    x = xs[0]
    m, s = _param(q.m), _param(q.s)
    if kind in (OpKind.CONV, OpKind.DEPTHWISE, OpKind.POINTWISE):
        acc = golden.conv2d(x, q.weight, q.bias, stride=layer.stride, pads=layer.pads,
                            groups=layer.groups)
        return golden.requantize(acc, m, s, q.lo, q.hi, axis=1)
    if kind is OpKind.FC:
        acc = golden.fully_connected(x.reshape(x.shape[0], -1), q.weight, q.bias)
        y = golden.requantize(acc, m, s, q.lo, q.hi, axis=1)
        return y.reshape(y.shape + (1, 1))
    if kind is OpKind.MAXPOOL:
        return golden.max_pool2d(x, layer.kernel, layer.stride, layer.pads)
    if kind is OpKind.AVGPOOL and layer.count_pads is not None:
        return golden.avg_pool2d_counted(x, layer.kernel, layer.stride, layer.pads,
                                         layer.count_pads, q.div_m, q.div_s, q.lo, q.hi)
    if kind is OpKind.AVGPOOL:
        return golden.avg_pool2d(x, layer.kernel, layer.stride, m, s, q.lo, q.hi, layer.pads)
    if kind is OpKind.GAP:
        return golden.global_avg_pool(x, m, s, q.lo, q.hi)
    if kind is OpKind.ADD:
        return golden.add(xs[0], xs[1], q.input_m[0], q.input_m[1], s, q.lo, q.hi)
    if kind is OpKind.CONCAT:
        return golden.concat(list(xs), list(q.input_m), s, q.lo, q.hi)
    if kind is OpKind.PAD:
        top, left, bottom, right = layer.pads
        return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))).astype(np.int64)
    if kind is OpKind.TABLE:
        if q.table.shape[0] == 1:
            return golden.table_lookup(x, q.table[0])
        return np.stack([golden.table_lookup(x[:, c], q.table[c])
                         for c in range(x.shape[1])], axis=1)
    if kind is OpKind.MUL:
        a, b = xs
        group = a[0].size // b[0].size
        return np.stack([golden.mul_broadcast(a[n], b[n].reshape(-1), group, m, s, q.lo, q.hi)
                         for n in range(a.shape[0])])
    if kind is OpKind.RESIZE:
        uh, uw = layer.upsample
        return np.repeat(np.repeat(x, uh, axis=2), uw, axis=3).astype(np.int64)
    raise QuantizationError(f"Layer {layer.name!r}: the golden runner has no op for kind "
                            f"{kind.value!r}")


def quantize_inputs(graph: Graph, inputs) -> dict[str, np.ndarray]:
    """Float samples of every graph input as integers at the input's scale.

    Rounding is half to even, as ONNX ``QuantizeLinear``.
    """
    batches = as_batches(graph, inputs)
    act_bits = next((layer.quant.act_bits for layer in graph.layers if layer.quant is not None),
                    None)
    if act_bits is None:
        raise QuantizationError(f"Graph {graph.name!r} is not quantized; run the quantize pass "
                                f"(or import a QDQ model) first")
    out = {}
    for name, x in batches.items():
        scale = graph.tensors[name].scale
        if scale is None:
            raise QuantizationError(f"Graph input {name!r} has no scale; quantize the graph "
                                    f"first")
        out[name] = golden.quantize(x, scale, act_bits)
    return out


def run_golden_int(graph: Graph, inputs: dict[str, np.ndarray], *,
                   keep_all: bool = False) -> GoldenResult:
    """Run the quantized graph on integer inputs ``(N, C, H, W)``, layer by layer."""
    values = {name: np.asarray(inputs[name], dtype=np.int64) for name in graph.inputs}
    values = execute(graph, values, run_layer, keep_all=keep_all)
    scales = {name: t.scale for name, t in graph.tensors.items()}
    outputs = {name: values[name] for name in graph.outputs}
    return GoldenResult(outputs=outputs, tensors=values if keep_all else dict(outputs),
                        scales=scales)


def run_golden(graph: Graph, inputs, *, keep_all: bool = False) -> GoldenResult:
    """Quantize float samples at the input scales and run the golden network.

    Parameters
    ----------
    graph : Graph
        A quantized graph.
    inputs : ndarray or dict of str to ndarray
        Float samples, ``(N, ...)`` per graph input (a single array for one input).
    keep_all : bool
        Keep every intermediate tensor in the result.
    """
    return run_golden_int(graph, quantize_inputs(graph, inputs), keep_all=keep_all)


# Comparison with onnxruntime ---------------------------------------------------------

def onnx_reference(model, graph: Graph, inputs, tensors=None) -> dict[str, np.ndarray]:
    """Run onnxruntime on ``model`` and return ``tensors`` (default: every IR tensor the
    model also computes), as ``(N, C, H, W)`` float64 arrays shaped like the IR tensors.
    """
    collected: dict[str, list[np.ndarray]] = {}
    for values in onnx_runs(model, graph, inputs, tensors):
        for name, value in values.items():
            collected.setdefault(name, []).append(value)
    return {name: np.stack(values).astype(np.float64) for name, values in collected.items()}


def compare_with_onnx(graph: Graph, model, inputs, report: QuantReport | None = None, *,
                      float_graph: Graph | None = None) -> QuantReport | dict:
    """Per-layer and final SNR of the golden run against onnxruntime float, and top-1.

    Top-1 agreement (the fraction of samples whose arg-max class matches) is
    measured on ``(K, 1, 1)`` outputs only; it is ``None`` for other models.

    Parameters
    ----------
    graph : Graph
        The quantized graph.
    model : onnx.ModelProto or path
        The float model it came from.
    inputs : ndarray or dict
        Float samples (typically the calibration set).
    report : QuantReport, optional
        Filled in place (and returned); without it a dict of figures is returned.
    float_graph : Graph, optional
        Float graph for tensors the ONNX model does not compute (layers the
        frontend synthesized): their SNR is measured against it instead.
    """
    batches = as_batches(graph, inputs)
    result = run_golden(graph, batches, keep_all=True)
    ref = onnx_reference(model, graph, batches)
    per_layer = {}
    sources = {}
    float_values = None
    for layer in graph.layers:
        name = layer.output
        if name in ref:
            reference, source = ref[name], "onnxruntime"
        elif float_graph is not None:
            if float_values is None:
                n = len(next(iter(batches.values())))
                runs = [run_float(float_graph, {k: v[i] for k, v in batches.items()},
                                  keep_all=True) for i in range(n)]
                float_values = {t: np.stack([r[t] for r in runs]) for t in runs[0]}
            if name not in float_values:
                continue
            reference, source = float_values[name], "float IR"
        else:
            continue
        per_layer[layer.name] = golden.snr_db(reference.reshape(result.tensors[name].shape),
                                     result.real(name))
        sources[layer.name] = source
    final = {}
    agree = []
    for out in graph.outputs:
        if out not in ref:
            raise QuantizationError(f"onnxruntime does not compute graph output {out!r}; the "
                                    f"model does not match the graph")
        test = result.real(out)
        reference = ref[out].reshape(test.shape)
        final[out] = golden.snr_db(reference, test)
        # Top-1 is meaningful for class scores only: a (K, 1, 1) output.
        c, h, w = graph.tensors[out].shape
        if c > 1 and h == w == 1:
            agree.append(np.mean(np.argmax(reference.reshape(len(test), -1), axis=1)
                                 == np.argmax(test.reshape(len(test), -1), axis=1)))
    top1 = float(np.mean(agree)) if agree else None
    n = len(next(iter(batches.values())))
    if report is None:
        return {"per_layer_snr_db": per_layer, "final_snr_db": final, "top1_agreement": top1,
                "samples": n}
    for row in report.layers:
        if row.name in per_layer:
            row.snr_db = float(per_layer[row.name])
            row.reference = sources[row.name]
    report.final_snr_db = {k: float(v) for k, v in final.items()}
    report.top1_agreement = top1
    report.samples_compared = n
    return report


def compare_with_qdq(graph: Graph, qdq_model, inputs) -> dict:
    """Golden run of an imported QDQ graph against onnxruntime running the QDQ model.

    Returns, per graph output, the fraction of elements within one LSB of
    onnxruntime's integer result, the largest difference in LSBs and the SNR.
    """
    batches = as_batches(graph, inputs)
    result = run_golden(graph, batches)
    ref = onnx_reference(qdq_model, graph, batches, tensors=graph.outputs)
    figures = {}
    for out in graph.outputs:
        ours = result.outputs[out]
        theirs = np.rint(ref[out].reshape(ours.shape) / graph.tensors[out].scale)
        diff = np.abs(ours - theirs)
        figures[out] = {"within_1_lsb": float(np.mean(diff <= 1)),
                        "exact": float(np.mean(diff == 0)),
                        "max_lsb": int(diff.max()),
                        "snr_db": float(golden.snr_db(ref[out].reshape(ours.shape),
                                                      result.real(out)))}
    return figures
