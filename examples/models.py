"""Example CNNs built directly with ``onnx.helper``.

Every builder returns an ``onnx.ModelProto`` with seeded random weights (He
initialization) whose BatchNormalization statistics are set the way training
leaves them: each running mean and variance is measured on the actual input of
that BatchNormalization for a seeded batch of synthetic inputs, propagating
layer by layer through the network built so far (data-dependent
initialization). On top sits a random affine like a trained one: ``gamma``
around 1, and ``beta`` with a small positive mean in front of ReLU / ReLU6
(about 70 % of units active) and around 0 in front of linear outputs; the
last BatchNormalization of every residual branch has half the gain, so
branches refine the identity path instead of swamping it. The classifier is
scaled so the logits have unit spread on the calibration batch.

Activations are therefore normalized in every layer, as in trained networks:
int8 quantization sees realistic ranges, a small input perturbation reaches
the output about as small (the networks are not chaotic, even at 224x224 and
17 inverted residual blocks), and BN folding is exercised on non-trivial
values.

Builders
--------
- :func:`mobilenet_v2` -- inverted residual network; :func:`mobilenet_v2_small`
  (32x32, a few blocks, for RTL runs) and ``mobilenet_v2(224, 1.0)`` (the full
  MobileNetV2-1.0-224 topology, for benchmarks).
- :func:`resnet` -- basic residual blocks, max-pool stem, strided 1x1 shortcut.
- :func:`vgg` -- 3x3 convolutions, 2x2 max pooling, two fully connected layers.
- :func:`dpd_cnn` -- the 1-D CNN for digital pre-distortion (I/Q in, I/Q out).
- :func:`unsupported_model` -- several nodes ConvForge cannot map, for the
  legality report.

All are exported at opset 13 by default; ``opset`` 9 to 12 selects the older
attribute forms of Clip, Unsqueeze and Dropout.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hw.arch import KERNEL_SIZES as CONV_KERNELS

__all__ = [
    "DEFAULT_OPSET",
    "EXAMPLES",
    "dpd_cnn",
    "mobilenet_v2",
    "mobilenet_v2_small",
    "resnet",
    "unsupported_model",
    "vgg",
]

DEFAULT_OPSET = 13
_BN_EPS = 1e-5
#: Mean of ``beta`` (in units of the normalized pre-activation) of a BatchNormalization
#: followed by ReLU / ReLU6: about 70 % of the units are active.
_ACTIVE_BETA = 0.5
#: Gain of the last BatchNormalization of a residual branch relative to the identity path.
_RESIDUAL_GAIN = 0.5
#: Pixels (batch x height x width) of the calibration batch that sets BN statistics.
_CALIB_PIXELS = 4 * 64 * 64


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channel counts as MobileNetV2 does (never below 90 % of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """(N, C, H, W) -> (N, C, OH, OW, KH, KW) strided window view."""
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, ::stride[0], ::stride[1]]


class _Net:
    """Emits ONNX nodes and evaluates them eagerly on a calibration batch.

    The eager values are what BatchNormalization statistics are measured on; they
    are not part of the model.
    """

    def __init__(self, name: str, opset: int, seed: int):
        if not isinstance(opset, int) or not 9 <= opset <= onnx.defs.onnx_opset_version():
            raise ValueError(f"opset must be an integer from 9 to "
                             f"{onnx.defs.onnx_opset_version()}, not {opset!r}")
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.values: dict[str, np.ndarray] = {}
        self._used: set[str] = set()

    # Plumbing -----------------------------------------------------------------------

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def const(self, base: str, array) -> str:
        name = self.unique(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        self.values[name] = np.asarray(array)
        return name

    def node(self, op: str, inputs: list[str], name: str, value: np.ndarray | None,
             **attrs) -> str:
        name = self.unique(name)
        out = self.unique(f"{name}_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        if value is not None:
            self.values[out] = value.astype(np.float32)
        return out

    def input(self, name: str, shape: tuple[int, ...], calib: np.ndarray) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.values[name] = calib.astype(np.float32)
        return name

    def model(self, outputs: list[str], doc: str = "") -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT,
                                              [1] + list(self.values[o].shape[1:]))
                for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="convforge-examples", doc_string=doc)
        model.ir_version = min(model.ir_version, 8)
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model)
        # Inferred intermediate shapes carry the calibration batch; keep only outputs.
        del model.graph.value_info[:]
        return model

    # Layers -------------------------------------------------------------------------

    def conv(self, x: str, out_c: int, k: int, stride: int = 1, groups: int = 1,
             pad: int | None = None, bias: bool = False, name: str = "conv",
             dilation: int = 1) -> str:
        xv = self.values[x]
        one_d = xv.ndim == 3
        c = xv.shape[1]
        pad = (k // 2) * dilation if pad is None else pad
        fan_in = (c // groups) * k * (1 if one_d else k)
        wshape = (out_c, c // groups, k) if one_d else (out_c, c // groups, k, k)
        w = self.rng.normal(0.0, math.sqrt(2.0 / fan_in), wshape).astype(np.float32)
        inputs = [x, self.const(f"{name}.weight", w)]
        b = None
        if bias:
            b = self.rng.normal(0.0, 0.05, out_c).astype(np.float32)
            inputs.append(self.const(f"{name}.bias", b))
        nd = 1 if one_d else 2
        x4 = xv[:, :, None, :] if one_d else xv
        w4 = w[:, :, None, :] if one_d else w
        value = _conv_eval(x4, w4, b, (1, stride) if one_d else (stride, stride),
                           (0, pad, 0, pad) if one_d else (pad, pad, pad, pad), groups, dilation)
        if one_d:
            value = value[:, :, 0, :]
        attrs = {"kernel_shape": [k] * nd, "strides": [stride] * nd, "pads": [pad] * (2 * nd),
                 "group": groups}
        if dilation != 1:
            attrs["dilations"] = [dilation] * nd
        return self.node("Conv", inputs, name, value, **attrs)

    def bn(self, x: str, name: str = "bn", *, activated: bool = True,
           gain: float = 1.0) -> str:
        """BatchNormalization with the running statistics of its actual input.

        ``activated``: a ReLU / ReLU6 follows, so ``beta`` leans positive;
        ``gain`` scales ``gamma`` and ``beta`` (residual branches).
        """
        xv = self.values[x].astype(np.float64)
        axes = (0,) + tuple(range(2, xv.ndim))
        c = xv.shape[1]
        mean = xv.mean(axis=axes)
        var = xv.var(axis=axes)
        gamma = gain * self.rng.uniform(0.75, 1.25, c)
        beta = gain * self.rng.normal(_ACTIVE_BETA if activated else 0.0, 0.25, c)
        shape = (1, c) + (1,) * (xv.ndim - 2)
        scale = gamma / np.sqrt(var + _BN_EPS)
        value = (xv - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)
        params = [self.const(f"{name}.{p}", a.astype(np.float32))
                  for p, a in (("weight", gamma), ("bias", beta), ("running_mean", mean),
                               ("running_var", var))]
        return self.node("BatchNormalization", [x] + params, name, value, epsilon=_BN_EPS)

    def relu(self, x: str, name: str = "relu") -> str:
        return self.node("Relu", [x], name, np.maximum(self.values[x], 0.0))

    def relu6(self, x: str, name: str = "relu6") -> str:
        value = np.clip(self.values[x], 0.0, 6.0)
        if self.opset < 11:
            return self.node("Clip", [x], name, value, min=0.0, max=6.0)
        lo = self.const(f"{name}.min", np.array(0.0, dtype=np.float32))
        hi = self.const(f"{name}.max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, lo, hi], name, value)

    def add(self, a: str, b: str, name: str = "add") -> str:
        return self.node("Add", [a, b], name, self.values[a] + self.values[b])

    def maxpool(self, x: str, k: int, stride: int, pad: int = 0, name: str = "maxpool") -> str:
        xp = np.pad(self.values[x], ((0, 0), (0, 0), (pad, pad), (pad, pad)),
                    constant_values=-np.inf)
        value = _windows(xp, (k, k), (stride, stride)).max(axis=(4, 5))
        return self.node("MaxPool", [x], name, value, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4)

    def gap(self, x: str, name: str = "gap") -> str:
        return self.node("GlobalAveragePool", [x], name,
                         self.values[x].mean(axis=(2, 3), keepdims=True))

    def flatten(self, x: str, name: str = "flatten") -> str:
        xv = self.values[x]
        return self.node("Flatten", [x], name, xv.reshape(xv.shape[0], -1), axis=1)

    def flatten_by_shape(self, x: str, name: str = "view") -> str:
        """``x.view(x.size(0), -1)`` as a tracing exporter writes it: a constant chain."""
        xv = self.values[x]
        shape = self.node("Shape", [x], f"{name}.shape", None)
        idx = self.const(f"{name}.index", np.array(0, dtype=np.int64))
        batch = self.node("Gather", [shape, idx], f"{name}.gather", None, axis=0)
        if self.opset >= 13:
            axes = self.const(f"{name}.axes", np.array([0], dtype=np.int64))
            batch = self.node("Unsqueeze", [batch, axes], f"{name}.unsqueeze", None)
        else:
            batch = self.node("Unsqueeze", [batch], f"{name}.unsqueeze", None, axes=[0])
        minus = self.const(f"{name}.minus_one", np.array([-1], dtype=np.int64))
        target = self.node("Concat", [batch, minus], f"{name}.concat", None, axis=0)
        return self.node("Reshape", [x, target], name, xv.reshape(xv.shape[0], -1))

    def gemm(self, x: str, out_f: int, name: str = "fc", trans_b: bool = True,
             gain: float = 2.0, logit_std: float | None = None) -> str:
        """Fully connected layer; ``logit_std`` rescales the weights so the outputs
        have that standard deviation on the calibration batch (a classifier)."""
        xv = self.values[x]
        k = xv.shape[1]
        w = self.rng.normal(0.0, math.sqrt(gain / k), (out_f, k))
        b = self.rng.normal(0.0, 0.05, out_f)
        if logit_std is not None:
            w *= logit_std / max(float(np.std(xv @ w.T)), 1e-6)
        w, b = w.astype(np.float32), b.astype(np.float32)
        stored = w if trans_b else np.ascontiguousarray(w.T)
        inputs = [x, self.const(f"{name}.weight", stored), self.const(f"{name}.bias", b)]
        return self.node("Gemm", inputs, name, xv @ w.T + b, transB=int(trans_b))

    def dropout(self, x: str, name: str = "dropout") -> str:
        if self.opset < 12:
            return self.node("Dropout", [x], name, self.values[x], ratio=0.2)
        ratio = self.const(f"{name}.ratio", np.array(0.2, dtype=np.float32))
        return self.node("Dropout", [x, ratio], name, self.values[x])

    def softmax(self, x: str, name: str = "softmax") -> str:
        xv = self.values[x]
        e = np.exp(xv - xv.max(axis=1, keepdims=True))
        return self.node("Softmax", [x], name, e / e.sum(axis=1, keepdims=True), axis=1)


def _conv_eval(x, w, b, stride, pads, groups, dilation=1):
    """Float convolution of the calibration batch (N, C, H, W)."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    m, cg, kh, kw = w.shape
    mg = m // groups
    oh = (xp.shape[2] - (kh - 1) * dilation - 1) // stride[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dilation - 1) // stride[1] + 1

    def tap(i, j, lo=0, hi=None):
        r, c = i * dilation, j * dilation
        return xp[:, lo:hi, r:r + (oh - 1) * stride[0] + 1:stride[0],
                  c:c + (ow - 1) * stride[1] + 1:stride[1]]

    if cg == 1 and mg == 1:
        out = sum(tap(i, j) * w[None, :, 0, i, j, None, None]
                  for i in range(kh) for j in range(kw))
    else:
        # im2col and one product per group. Plain einsum, not BLAS: multithreaded BLAS
        # is slower on these small products when the machine is busy.
        n = xp.shape[0]
        out = np.concatenate(
            [np.einsum("mk,nkp->nmp", w[g * mg:(g + 1) * mg].reshape(mg, cg * kh * kw),
                       np.stack([tap(i, j, g * cg, (g + 1) * cg) for i in range(kh)
                                 for j in range(kw)], axis=2).reshape(n, cg * kh * kw, -1))
             for g in range(groups)], axis=1).reshape(n, m, oh, ow)
    if b is not None:
        out = out + b[None, :, None, None]
    return out


def _check_int(name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value!r}")


def _calib(rng, channels, *spatial, batch=None):
    """Seeded standard-normal calibration inputs; by default as many samples as fit
    in ``_CALIB_PIXELS`` (at least 1, at most 8)."""
    if batch is None:
        batch = min(8, max(1, _CALIB_PIXELS // math.prod(spatial)))
    return rng.normal(0.0, 1.0, (batch, channels) + tuple(spatial)).astype(np.float32)


#: (expansion t, output channels c, repeats n, first stride s) of MobileNetV2.
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(input_size: int = 224, width: float = 1.0, num_classes: int = 1000, *,
                 blocks=MOBILENET_V2_BLOCKS, last_channels: int = 1280, seed: int = 0,
                 opset: int = DEFAULT_OPSET, calib_size: int | None = None) -> onnx.ModelProto:
    """A MobileNetV2-style network.

    Parameters
    ----------
    input_size : int
        Height and width of the RGB input.
    width : float
        Width multiplier applied to every channel count (rounded to multiples of 8).
    num_classes : int
    blocks : sequence of (t, c, n, s)
        Inverted residual stages: expansion, output channels, repeats, first stride.
    last_channels : int
        Channels of the final 1x1 conv (scaled by ``width`` when ``width > 1``).
    seed : int
    opset : int
    calib_size : int or None
        Input size of the calibration batch that sets BN statistics (default
        ``input_size``: statistics measured at another size miss the border
        effects of the real one).
    """
    _check_int("input_size", input_size, 8)
    _check_int("num_classes", num_classes, 1)
    if not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number, not {width!r}")
    net = _Net(f"mobilenet_v2_{input_size}_{width:g}", opset, seed)
    cs = calib_size or input_size
    x = net.input("input", (1, 3, input_size, input_size), _calib(net.rng, 3, cs, cs))
    c = _make_divisible(32 * width)
    x = net.relu6(net.bn(net.conv(x, c, 3, 2, name="features.0.conv"), "features.0.bn"),
                  "features.0.relu6")
    index = 1
    for t, ch, n, s in blocks:
        out_c = _make_divisible(ch * width)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{index}"
            hidden = round(c * t)
            y = x
            if t != 1:
                y = net.relu6(net.bn(net.conv(y, hidden, 1, name=f"{p}.expand"),
                                     f"{p}.expand_bn"), f"{p}.expand_relu6")
            y = net.relu6(net.bn(net.conv(y, hidden, 3, stride, groups=hidden,
                                          name=f"{p}.dw"), f"{p}.dw_bn"), f"{p}.dw_relu6")
            residual = stride == 1 and c == out_c
            y = net.bn(net.conv(y, out_c, 1, name=f"{p}.project"), f"{p}.project_bn",
                       activated=False, gain=_RESIDUAL_GAIN if residual else 1.0)
            if residual:
                y = net.add(x, y, f"{p}.add")
            x, c = y, out_c
            index += 1
    last = _make_divisible(last_channels * max(1.0, width))
    x = net.relu6(net.bn(net.conv(x, last, 1, name=f"features.{index}.conv"),
                         f"features.{index}.bn"), f"features.{index}.relu6")
    x = net.flatten(net.gap(x, "pool"), "flatten")
    x = net.softmax(net.gemm(net.dropout(x, "classifier.dropout"), num_classes,
                             "classifier.fc", gain=1.0, logit_std=1.0), "softmax")
    return net.model([x], "MobileNetV2-style inverted residual network")


def mobilenet_v2_small(seed: int = 0, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """A 32x32 MobileNetV2 with four inverted residual blocks, small enough for RTL runs."""
    return mobilenet_v2(32, 0.25, 10, blocks=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 1, 2)),
                        last_channels=64, seed=seed, opset=opset)


def resnet(input_size: int = 32, stages=(16, 32, 64), blocks_per_stage: int = 1,
           num_classes: int = 10, *, stem_kernel: int = 3, seed: int = 0,
           opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """A ResNet-style network of basic blocks.

    The stem is a ``stem_kernel`` conv (stride 2) + BN + ReLU and a 3x3 stride-2
    max pool; every stage after the first starts with a stride-2 block whose
    shortcut is a strided 1x1 conv + BN; the head flattens with a
    Shape/Gather/Unsqueeze/Concat/Reshape chain, as traced exporters do.
    """
    _check_int("input_size", input_size, 8)
    _check_int("blocks_per_stage", blocks_per_stage, 1)
    net = _Net(f"resnet_{input_size}", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  _calib(net.rng, 3, input_size, input_size))
    c = stages[0]
    x = net.relu(net.bn(net.conv(x, c, stem_kernel, 2, name="conv1"), "bn1"), "relu")
    x = net.maxpool(x, 3, 2, 1, "maxpool")
    for si, out_c in enumerate(stages):
        for bi in range(blocks_per_stage):
            stride = 2 if si > 0 and bi == 0 else 1
            p = f"layer{si + 1}.{bi}"
            y = net.relu(net.bn(net.conv(x, out_c, 3, stride, name=f"{p}.conv1"), f"{p}.bn1"),
                         f"{p}.relu1")
            y = net.bn(net.conv(y, out_c, 3, name=f"{p}.conv2"), f"{p}.bn2",
                       activated=False, gain=_RESIDUAL_GAIN)
            shortcut = x
            if stride != 1 or c != out_c:
                shortcut = net.bn(net.conv(x, out_c, 1, stride, name=f"{p}.downsample.0"),
                                  f"{p}.downsample.1")
            x = net.relu(net.add(y, shortcut, f"{p}.add"), f"{p}.relu2")
            c = out_c
    x = net.flatten_by_shape(net.gap(x, "avgpool"), "view")
    x = net.gemm(x, num_classes, "fc", gain=1.0, logit_std=1.0)
    return net.model([x], "ResNet-style network of basic blocks")


def vgg(input_size: int = 32, stages=((16,), (32,), (64, 64)), hidden: int = 64,
        num_classes: int = 10, *, seed: int = 0, opset: int = DEFAULT_OPSET,
        batch_norm: bool = True) -> onnx.ModelProto:
    """A VGG-style network: stages of 3x3 conv (+ BN) + ReLU, each ending in a 2x2
    max pool; then Flatten, Gemm + ReLU, Dropout, Gemm."""
    _check_int("input_size", input_size, 2 ** len(stages))
    net = _Net(f"vgg_{input_size}", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  _calib(net.rng, 3, input_size, input_size))
    for si, stage in enumerate(stages):
        for ci, out_c in enumerate(stage):
            p = f"features.{si}.{ci}"
            x = net.conv(x, out_c, 3, bias=not batch_norm, name=f"{p}.conv")
            if batch_norm:
                x = net.bn(x, f"{p}.bn")
            x = net.relu(x, f"{p}.relu")
        x = net.maxpool(x, 2, 2, 0, f"features.{si}.pool")
    x = net.flatten(x, "flatten")
    x = net.relu(net.gemm(x, hidden, "classifier.0"), "classifier.1")
    x = net.gemm(net.dropout(x, "classifier.2"), num_classes, "classifier.3", gain=1.0,
                 logit_std=1.0)
    return net.model([x], "VGG-style network")


def dpd_cnn(hidden_channels: int = 4, hidden_layers: int = 2, kernel_size: int = 5,
            length: int = 64, *, seed: int = 0, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The 1-D CNN for digital pre-distortion: I/Q in, pre-distorted I/Q out.

    ``hidden_layers`` Conv1d layers of ``hidden_channels`` channels, each followed
    by ReLU, then a linear Conv1d back to 2 channels. "Same" padding keeps the
    signal length. The input is ``(1, 2, length)``.
    """
    _check_int("hidden_channels", hidden_channels, 1)
    _check_int("hidden_layers", hidden_layers, 1)
    _check_int("length", length, 1)
    if kernel_size not in CONV_KERNELS:
        raise ValueError(f"kernel_size must be one of {', '.join(map(str, CONV_KERNELS))}, "
                         f"not {kernel_size!r}")
    net = _Net(f"dpd_cnn_k{kernel_size}_l{hidden_layers}_c{hidden_channels}", opset, seed)
    x = net.input("iq", (1, 2, length), net.rng.normal(0.0, 0.5, (4, 2, length)))
    for i in range(hidden_layers):
        x = net.relu(net.conv(x, hidden_channels, kernel_size, bias=True, name=f"conv{i}"),
                     f"relu{i}")
    x = net.conv(x, 2, kernel_size, bias=True, name="conv_out")
    return net.model([x], "1-D CNN digital pre-distortion")


def unsupported_model(opset: int = DEFAULT_OPSET, seed: int = 0) -> onnx.ModelProto:
    """A small network with several nodes ConvForge cannot map.

    Contains an LRN, a dilated conv, an ``auto_pad=SAME_UPPER`` conv, a
    ``ceil_mode=1`` max pool, an Elu and an 11x11 conv, all on the main path.
    """
    net = _Net("unsupported", opset, seed)
    x = net.input("input", (1, 3, 32, 32), _calib(net.rng, 3, 32, 32))
    x = net.relu(net.conv(x, 8, 3, name="conv_ok"), "relu_ok")
    x = net.node("LRN", [x], "lrn", None, size=3)
    net.values[x] = net.values[net.nodes[-1].input[0]]
    x = net.conv(x, 8, 3, dilation=2, name="conv_dilated")
    w = net.const("conv_same.weight", net.rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32))
    x = net.node("Conv", [x, w], "conv_same", net.values[x], kernel_shape=[3, 3],
                 auto_pad="SAME_UPPER")
    x = net.node("MaxPool", [x], "pool_ceil", net.values[x][:, :, ::2, ::2],
                 kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    v = net.values[x]
    x = net.node("Elu", [x], "elu", np.where(v >= 0, v, np.expm1(np.minimum(v, 0))))
    x = net.conv(x, 4, 11, pad=5, name="conv_k11")
    return net.model([x], "Model with unsupported nodes")


#: Name -> builder with default arguments, as written by ``examples/build_models.py``.
EXAMPLES = {
    "mobilenet_v2_small": mobilenet_v2_small,
    "mobilenet_v2_224": mobilenet_v2,
    "resnet_small": resnet,
    "vgg_small": vgg,
    "dpd_cnn": dpd_cnn,
    "unsupported": unsupported_model,
}


def _shufflenet_v2_small(**kwargs):
    from examples.shufflenet import shufflenet_v2_small
    return shufflenet_v2_small(**kwargs)


EXAMPLES["shufflenet_v2_small"] = _shufflenet_v2_small


def _register_compact_examples():
    from examples import imagenet_models

    assert imagenet_models.DEFAULT_OPSET == DEFAULT_OPSET
    EXAMPLES.update(imagenet_models.EXAMPLES)


_register_compact_examples()
