"""Compact example CNNs with table activations, squeeze-and-excitation and upsampling.

Built like the networks of :mod:`examples.models` (seeded He weights, BatchNormalization
statistics measured on a seeded calibration batch layer by layer):

- :func:`mobilenet_v3_small` -- MobileNetV3-small-like: HardSwish stem and head,
  inverted residual blocks with ReLU or HardSwish, squeeze-and-excitation blocks
  (global pool -> 1x1 -> ReLU -> 1x1 -> HardSigmoid -> Mul with the feature map).
- :func:`yolo_tiny` -- a small YOLO-like detector: a LeakyReLU backbone with max
  pooling, two detection heads, and a neck that upsamples the deep features 2x
  (nearest Resize) and concatenates them with the shallower ones, with SiLU
  (``x * Sigmoid(x)``) in the neck.

Below opset 14 HardSwish is written as ``x * HardSigmoid(x)`` (as older exporters do);
from opset 14 on as the HardSwish operator.
"""

from __future__ import annotations

import numpy as np

from examples.models import DEFAULT_OPSET, _calib, _check_int, _Net

__all__ = ["COMPACT_EXAMPLES", "mobilenet_v3_small", "yolo_tiny"]


def _hard_sigmoid(v):
    return np.clip(v / 6.0 + 0.5, 0.0, 1.0)


def _hardswish(net: _Net, x: str, name: str = "hswish") -> str:
    v = net.values[x]
    if net.opset >= 14:
        return net.node("HardSwish", [x], name, v * _hard_sigmoid(v))
    gate = net.node("HardSigmoid", [x], f"{name}.gate", _hard_sigmoid(v), alpha=1.0 / 6.0,
                    beta=0.5)
    return net.node("Mul", [x, gate], name, v * _hard_sigmoid(v))


def _silu(net: _Net, x: str, name: str = "silu") -> str:
    v = net.values[x]
    s = 1.0 / (1.0 + np.exp(-v))
    gate = net.node("Sigmoid", [x], f"{name}.gate", s)
    return net.node("Mul", [x, gate], name, v * s)


def _leaky(net: _Net, x: str, name: str = "leaky", alpha: float = 0.1) -> str:
    v = net.values[x]
    return net.node("LeakyRelu", [x], name, np.where(v >= 0, v, alpha * v), alpha=alpha)


def _act(net: _Net, x: str, kind: str, name: str) -> str:
    if kind == "relu":
        return net.relu(x, name)
    if kind == "hswish":
        return _hardswish(net, x, name)
    if kind == "leaky":
        return _leaky(net, x, name)
    return _silu(net, x, name)


def _squeeze_excite(net: _Net, x: str, name: str) -> str:
    """Global pool -> 1x1 (C/4) -> ReLU -> 1x1 (C) -> HardSigmoid -> Mul with ``x``."""
    c = net.values[x].shape[1]
    pooled = net.gap(x, f"{name}.pool")
    squeezed = net.relu(net.conv(pooled, max(8, c // 4), 1, bias=True,
                                 name=f"{name}.reduce"), f"{name}.relu")
    excited = net.conv(squeezed, c, 1, bias=True, name=f"{name}.expand")
    v = net.values[excited]
    gate = net.node("HardSigmoid", [excited], f"{name}.gate", _hard_sigmoid(v),
                    alpha=1.0 / 6.0, beta=0.5)
    return net.node("Mul", [x, gate], f"{name}.scale", net.values[x] * net.values[gate])


#: (kernel, expanded channels, output channels, squeeze-excite, activation, stride) of
#: the blocks: the start of MobileNetV3-small with fewer channels.
MOBILENET_V3_SMALL_BLOCKS = (
    (3, 16, 16, True, "relu", 2),
    (3, 48, 24, False, "relu", 2),
    (3, 56, 24, False, "relu", 1),
    (3, 64, 32, True, "hswish", 2),
    (3, 96, 32, True, "hswish", 1),
)


def mobilenet_v3_small(input_size: int = 32, num_classes: int = 10, *,
                       blocks=MOBILENET_V3_SMALL_BLOCKS, last_channels: int = 64,
                       seed: int = 0, opset: int = DEFAULT_OPSET):
    """A MobileNetV3-small-like network (HardSwish, squeeze-and-excitation).

    Parameters
    ----------
    input_size : int
        Height and width of the RGB input (at least 16).
    num_classes : int
    blocks : tuple
        ``(kernel, expanded, out, se, activation, stride)`` per inverted residual block;
        activation ``"relu"`` or ``"hswish"``.
    last_channels : int
        Channels of the 1x1 convolution before the pool.
    seed, opset : int
    """
    _check_int("input_size", input_size, 16)
    _check_int("num_classes", num_classes, 1)
    net = _Net("mobilenet_v3_small", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  _calib(net.rng, 3, input_size, input_size))
    y = _hardswish(net, net.bn(net.conv(x, 16, 3, stride=2, name="stem"), "stem.bn"),
                   "stem.act")
    for i, (k, exp, out, se, act, stride) in enumerate(blocks):
        name = f"block{i}"
        c = net.values[y].shape[1]
        h = y
        if exp != c:
            h = _act(net, net.bn(net.conv(h, exp, 1, name=f"{name}.expand"),
                                 f"{name}.expand.bn"), act, f"{name}.expand.act")
        h = _act(net, net.bn(net.conv(h, exp, k, stride=stride, groups=exp,
                                      name=f"{name}.dw"), f"{name}.dw.bn"), act,
                 f"{name}.dw.act")
        if se:
            h = _squeeze_excite(net, h, f"{name}.se")
        h = net.bn(net.conv(h, out, 1, name=f"{name}.project"), f"{name}.project.bn",
                   activated=False, gain=0.5 if stride == 1 and c == out else 1.0)
        y = net.add(y, h, f"{name}.add") if stride == 1 and c == out else h
    y = _hardswish(net, net.bn(net.conv(y, last_channels, 1, name="last"), "last.bn"),
                   "last.act")
    y = net.flatten(net.gap(y, "pool"), "flatten")
    y = net.gemm(y, num_classes, "classifier", logit_std=1.0)
    return net.model([y], doc="MobileNetV3-small-like example (ConvForge)")


def yolo_tiny(input_size: int = 32, num_classes: int = 3, anchors: int = 3, *,
              widths=(8, 16, 32, 32), seed: int = 0, opset: int = DEFAULT_OPSET):
    """A small YOLO-like detector with an upsample + concat neck.

    Backbone: 3x3 conv + BN + LeakyReLU(0.1) stages, 2x2 max pools between them
    (strides 8 and 16 at the last two stages). Head 1 on the deepest features; the neck
    reduces them with a 1x1 conv + SiLU, upsamples 2x (nearest), concatenates the
    stride-8 features and runs a 3x3 conv + SiLU before head 2. Each head is a 1x1
    conv to ``anchors * (5 + num_classes)`` channels.

    Parameters
    ----------
    input_size : int
        Height and width of the RGB input (a multiple of 16, at least 16).
    num_classes, anchors : int
    widths : tuple of 4 int
        Channels of the four backbone stages.
    seed, opset : int
    """
    _check_int("input_size", input_size, 16)
    if input_size % 16:
        raise ValueError(f"input_size must be a multiple of 16, not {input_size!r}")
    net = _Net("yolo_tiny", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  _calib(net.rng, 3, input_size, input_size))
    y = x
    features = []
    for i, c in enumerate(widths):
        if i:
            y = net.maxpool(y, 2, 2, name=f"stage{i}.pool")
        y = _leaky(net, net.bn(net.conv(y, c, 3, name=f"stage{i}.conv"), f"stage{i}.bn"),
                   f"stage{i}.act")
        features.append(y)
    out_c = anchors * (5 + num_classes)
    head1 = net.conv(y, out_c, 1, bias=True, name="head1")
    reduced = _silu(net, net.bn(net.conv(y, widths[-1] // 2, 1, name="neck.reduce"),
                                "neck.reduce.bn"), "neck.reduce.act")
    up_value = net.values[reduced].repeat(2, axis=2).repeat(2, axis=3)
    scales = net.const("neck.scales", np.array([1, 1, 2, 2], dtype=np.float32))
    if opset >= 11:
        up = net.node("Resize", [reduced, "", scales], "neck.upsample", up_value,
                      mode="nearest", coordinate_transformation_mode="asymmetric",
                      nearest_mode="floor")
    else:
        up = net.node("Upsample", [reduced, scales], "neck.upsample", up_value,
                      mode="nearest")
    skip = features[-2]
    cat = net.node("Concat", [up, skip], "neck.concat",
                   np.concatenate([up_value, net.values[skip]], axis=1), axis=1)
    fused = _silu(net, net.bn(net.conv(cat, widths[-2], 3, name="neck.conv"), "neck.bn"),
                  "neck.act")
    head2 = net.conv(fused, out_c, 1, bias=True, name="head2")
    return net.model([head1, head2], doc="Small YOLO-like detector example (ConvForge)")


#: The builders, by example name (merged into ``examples/build_models.py``).
COMPACT_EXAMPLES = {
    "mobilenet_v3_small": mobilenet_v3_small,
    "yolo_tiny": yolo_tiny,
}
