"""Compact CNN builders for the SEML / SESL / hybrid comparison: MobileNetV1 and a
ProxylessNAS-mobile-like network (MobileNetV2 is :func:`examples.models.mobilenet_v2`).

Weights are seeded random with BN statistics measured on a calibration batch, as in
:mod:`examples.models`; the layer shapes follow the published networks.
"""

from __future__ import annotations

import onnx

# examples.models registers these builders when it is imported: its helpers are looked up
# when a network is built, so that either module may be imported first.
DEFAULT_OPSET = 13


def _models():
    from examples import models

    return models

__all__ = ["MOBILENET_V1_BLOCKS", "PROXYLESS_MOBILE_BLOCKS", "mobilenet_v1",
           "proxylessnas_mobile"]

#: (output channels, stride) of MobileNetV1's depthwise-separable blocks.
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

#: (expansion t, output channels c, depthwise kernel k, stride s) of the inverted
#: residual blocks of ProxylessNAS-mobile (searched kernels 3/5/7, expansions 3/6).
PROXYLESS_MOBILE_BLOCKS = (
    (1, 16, 3, 1),
    (3, 32, 5, 2), (3, 32, 3, 1),
    (3, 40, 7, 2), (3, 40, 3, 1), (3, 40, 5, 1), (3, 40, 5, 1),
    (6, 80, 7, 2), (3, 80, 5, 1), (3, 80, 5, 1), (3, 80, 5, 1),
    (6, 96, 5, 1), (3, 96, 5, 1), (3, 96, 5, 1), (3, 96, 5, 1),
    (6, 192, 7, 2), (6, 192, 7, 1), (3, 192, 7, 1), (3, 192, 7, 1),
    (6, 320, 7, 1),
)


def _head(net, x, last, num_classes, index):
    x = net.relu6(net.bn(net.conv(x, last, 1, name=f"features.{index}.conv"),
                         f"features.{index}.bn"), f"features.{index}.relu6")
    x = net.flatten(net.gap(x, "pool"), "flatten")
    return net.gemm(x, num_classes, "classifier.fc", gain=1.0, logit_std=1.0)


def mobilenet_v1(input_size: int = 224, width: float = 1.0, num_classes: int = 1000, *,
                 blocks=MOBILENET_V1_BLOCKS, seed: int = 0,
                 opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """A MobileNetV1: a 3x3 stride-2 conv, then depthwise-separable blocks (3x3 depthwise
    + BN + ReLU6, 1x1 pointwise + BN + ReLU6), global average pool, fully connected."""
    m = _models()
    m._check_int("input_size", input_size, 8)
    m._check_int("num_classes", num_classes, 1)
    net = m._Net(f"mobilenet_v1_{input_size}_{width:g}", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  m._calib(net.rng, 3, input_size, input_size))
    c = m._make_divisible(32 * width)
    x = net.relu6(net.bn(net.conv(x, c, 3, 2, name="features.0.conv"), "features.0.bn"),
                  "features.0.relu6")
    for i, (ch, s) in enumerate(blocks, start=1):
        out_c = m._make_divisible(ch * width)
        p = f"features.{i}"
        x = net.relu6(net.bn(net.conv(x, c, 3, s, groups=c, name=f"{p}.dw"), f"{p}.dw_bn"),
                      f"{p}.dw_relu6")
        x = net.relu6(net.bn(net.conv(x, out_c, 1, name=f"{p}.pw"), f"{p}.pw_bn"),
                      f"{p}.pw_relu6")
        c = out_c
    x = net.flatten(net.gap(x, "pool"), "flatten")
    x = net.gemm(x, num_classes, "classifier.fc", gain=1.0, logit_std=1.0)
    return net.model([x], "MobileNetV1 depthwise-separable network")


def proxylessnas_mobile(input_size: int = 224, num_classes: int = 1000, *,
                        blocks=PROXYLESS_MOBILE_BLOCKS, last_channels: int = 1280,
                        seed: int = 0, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """A ProxylessNAS-mobile-like network: inverted residual blocks with 3x3, 5x5 and 7x7
    depthwise kernels and expansions 3 and 6 (:data:`PROXYLESS_MOBILE_BLOCKS`)."""
    m = _models()
    m._check_int("input_size", input_size, 8)
    m._check_int("num_classes", num_classes, 1)
    net = m._Net(f"proxylessnas_mobile_{input_size}", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  m._calib(net.rng, 3, input_size, input_size))
    c = 32
    x = net.relu6(net.bn(net.conv(x, c, 3, 2, name="features.0.conv"), "features.0.bn"),
                  "features.0.relu6")
    for index, (t, out_c, k, stride) in enumerate(blocks, start=1):
        p = f"features.{index}"
        hidden = c * t
        y = x
        if t != 1:
            y = net.relu6(net.bn(net.conv(y, hidden, 1, name=f"{p}.expand"),
                                 f"{p}.expand_bn"), f"{p}.expand_relu6")
        y = net.relu6(net.bn(net.conv(y, hidden, k, stride, groups=hidden, name=f"{p}.dw"),
                             f"{p}.dw_bn"), f"{p}.dw_relu6")
        residual = stride == 1 and c == out_c
        y = net.bn(net.conv(y, out_c, 1, name=f"{p}.project"), f"{p}.project_bn",
                   activated=False, gain=m._RESIDUAL_GAIN if residual else 1.0)
        if residual:
            y = net.add(x, y, f"{p}.add")
        x, c = y, out_c
    x = _head(net, x, last_channels, num_classes, len(blocks) + 1)
    return net.model([x], "ProxylessNAS-mobile-like inverted residual network")


#: Name -> builder with default arguments (registered in :data:`examples.models.EXAMPLES`).
EXAMPLES = {"mobilenet_v1_224": mobilenet_v1, "proxylessnas_mobile_224": proxylessnas_mobile}
