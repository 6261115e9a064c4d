"""The float reference executor: a graph of :mod:`compiler.ir` run in float32 numpy.

:func:`run_float` is the executable definition of each layer's meaning (used by tests and
by calibration); :func:`execute` is the layer-by-layer evaluation loop it shares with the
integer golden runner (:mod:`compiler.runner`).
"""

from __future__ import annotations

import numpy as np

from compiler import table_act
from compiler.ir import Activation, Graph, IRError, Layer, OpKind
from hw.isa import window_out
from sim.golden import pool_divisors

__all__ = ["execute", "run_float"]


def _pad(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    top, left, bottom, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """View of ``x`` (C, H, W) as (C, OH, OW, KH, KW) windows."""
    kh, kw = kernel
    sh, sw = stride
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return win[:, ::sh, ::sw]


def _conv(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Convolution as one matrix product per group over the im2col matrix."""
    win = _windows(_pad(x, layer.pads), layer.kernel, layer.stride)  # C, OH, OW, KH, KW
    _, oh, ow, kh, kw = win.shape
    w = layer.weight
    g = layer.groups
    m, cg = w.shape[0], w.shape[1]
    mg = m // g
    cols = win.transpose(0, 3, 4, 1, 2).reshape(g, cg * kh * kw, oh * ow)
    out = np.matmul(w.reshape(g, mg, cg * kh * kw), cols)
    return out.reshape(m, oh, ow)


def _depthwise(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Depthwise convolution as KH * KW shifted, strided multiply-adds."""
    xp = _pad(x, layer.pads)
    kh, kw = layer.kernel
    sh, sw = layer.stride
    oh = window_out(xp.shape[1], kh, sh)
    ow = window_out(xp.shape[2], kw, sw)
    w = layer.weight[:, 0]
    out = np.zeros((xp.shape[0], oh, ow), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            out += w[:, i, j, None, None] * xp[:, i:i + sh * (oh - 1) + 1:sh,
                                                j:j + sw * (ow - 1) + 1:sw]
    return out


def _run_layer(layer: Layer, xs: list[np.ndarray]) -> np.ndarray:
    kind = layer.kind
    x = xs[0]
    if kind is OpKind.POINTWISE:
        c, h, w = x.shape
        y = (layer.weight[:, :, 0, 0] @ x.reshape(c, h * w)).reshape(-1, h, w)
    elif kind is OpKind.DEPTHWISE:
        y = _depthwise(layer, x)
    elif kind is OpKind.CONV:
        y = _conv(layer, x)
    elif kind is OpKind.FC:
        y = (layer.weight @ x.reshape(-1))[:, None, None]
    elif kind is OpKind.MAXPOOL:
        y = _windows(_pad(x, layer.pads, -np.inf), layer.kernel, layer.stride).max(axis=(3, 4))
    elif kind is OpKind.AVGPOOL:
        y = _windows(_pad(x, layer.pads), layer.kernel, layer.stride).mean(axis=(3, 4))
        if layer.count_pads is not None:
            counts = pool_divisors(x.shape[1:], layer.kernel, layer.stride, layer.pads,
                                   layer.count_pads)
            y = y * (layer.kernel[0] * layer.kernel[1]) / counts
    elif kind is OpKind.GAP:
        y = x.mean(axis=(1, 2), keepdims=True)
    elif kind is OpKind.ADD:
        y = xs[0] + xs[1]
    elif kind is OpKind.CONCAT:
        y = np.concatenate(xs, axis=0)
    elif kind is OpKind.PAD:
        y = _pad(x, layer.pads)
    elif kind is OpKind.SCALE:
        y = x * layer.weight[:, None, None]
    elif kind in (OpKind.ACTIVATION, OpKind.IDENTITY):
        y = x
    elif kind is OpKind.FLATTEN:
        y = x.reshape(-1, 1, 1)
    elif kind is OpKind.CHANNELS:
        y = x[list(layer.select)]
    elif kind is OpKind.TABLE:
        y = table_act.evaluate(layer.table_act, x)
    elif kind is OpKind.MUL:
        y = xs[0] * xs[1]
    elif kind is OpKind.RESIZE:
        y = np.repeat(np.repeat(x, layer.upsample[0], axis=1), layer.upsample[1], axis=2)
    else:
        raise IRError(f"Layer {layer.name!r}: cannot execute kind {kind!r}")
    if layer.bias is not None:
        y = y + layer.bias[:, None, None]
    lo, hi = layer.act_bounds
    if layer.activation is not Activation.NONE:
        y = np.clip(y, lo, hi)
    return y.astype(np.float32, copy=False)


def _as_sample(name: str, x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Accept one sample as (C, H, W), or in its batch-1 model layout: (1, C, H, W),
    (1, C, L) for H = 1, (1, K) for H = W = 1."""
    c, h, w = shape
    accepted = {(c, h, w), (1, c, h, w)}
    if h == 1:
        accepted.add((1, c, w))
    if h == w == 1:
        accepted.add((1, c))
    if x.shape not in accepted:
        raise ValueError(f"Graph input {name!r} must have shape {shape} (or a batch-1 model "
                         f"layout of it), not {x.shape}")
    return x.reshape(shape)


def run_float(graph: Graph, inputs, *, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Execute ``graph`` in float32 with numpy (host ops excluded).

    Parameters
    ----------
    graph : Graph
    inputs : numpy.ndarray or dict of str to numpy.ndarray
        One sample per graph input, shaped ``(C, H, W)`` or in the model's batch-1
        layout (``(1, C, H, W)``, ``(1, C, L)``, ``(1, K)``); a single array feeds
        the single graph input.
    keep_all : bool
        Return every intermediate tensor, not just the graph outputs.

    Returns
    -------
    dict of str to numpy.ndarray
        Tensor name to ``(C, H, W)`` float32 array.
    """
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise ValueError(f"Graph has {len(graph.inputs)} inputs; pass a dict, "
                             f"not {type(inputs).__name__}")
        inputs = {graph.inputs[0]: inputs}
    values = {}
    for name in graph.inputs:
        if name not in inputs:
            raise ValueError(f"Missing value for graph input {name!r}")
        values[name] = _as_sample(name, np.asarray(inputs[name], dtype=np.float32),
                                  graph.tensors[name].shape)
    values = execute(graph, values, _run_layer, keep_all=keep_all)
    if keep_all:
        return values
    return {name: values[name] for name in graph.outputs}


def execute(graph: Graph, values: dict, run_layer, *, keep_all: bool = False) -> dict:
    """Evaluate the layers of ``graph`` in order with ``run_layer(layer, inputs) -> output``.

    ``values`` maps graph inputs to their values and is filled in place. Unless
    ``keep_all``, a tensor that is not a graph output is dropped after its last
    use, so memory holds only the live tensors. Returns ``values``.
    """
    last_use = {}
    for i, layer in enumerate(graph.layers):
        for t in layer.inputs:
            last_use[t] = i
    for i, layer in enumerate(graph.layers):
        values[layer.output] = run_layer(layer, [values[t] for t in layer.inputs])
        if not keep_all:
            for t in layer.inputs:
                if last_use[t] == i and t not in graph.outputs:
                    del values[t]
    return values
