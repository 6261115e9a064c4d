"""A ShuffleNetV2-like example: channel Split, Concat and channel shuffle
(Reshape -> Transpose -> Reshape), as torchvision's ShuffleNetV2 exports them."""

from __future__ import annotations

import numpy as np
import onnx

from examples.models import DEFAULT_OPSET, _calib, _check_int, _Net

__all__ = ["shufflenet_v2_small"]


def _split(net: _Net, x: str, name: str) -> tuple[str, str]:
    """Split ``x`` into two channel halves (opset 13+: sizes as an input)."""
    xv = net.values[x]
    c = xv.shape[1] // 2
    outs = [net.unique(f"{name}_out0"), net.unique(f"{name}_out1")]
    name = net.unique(name)
    if net.opset >= 13:
        sizes = net.const(f"{name}.split", np.array([c, c], dtype=np.int64))
        node = onnx.helper.make_node("Split", [x, sizes], outs, name=name, axis=1)
    else:
        node = onnx.helper.make_node("Split", [x], outs, name=name, axis=1, split=[c, c])
    net.nodes.append(node)
    net.values[outs[0]], net.values[outs[1]] = xv[:, :c], xv[:, c:]
    return outs[0], outs[1]


def _shuffle(net: _Net, x: str, groups: int, name: str) -> str:
    """Channel shuffle: Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape."""
    xv = net.values[x]
    n, c, h, w = xv.shape
    five = net.const(f"{name}.shape5", np.array([1, groups, c // groups, h, w], dtype=np.int64))
    four = net.const(f"{name}.shape4", np.array([1, c, h, w], dtype=np.int64))
    r = net.node("Reshape", [x, five], f"{name}.reshape1",
                 xv.reshape(n, groups, c // groups, h, w))
    t = net.node("Transpose", [r], f"{name}.transpose",
                 net.values[r].transpose(0, 2, 1, 3, 4), perm=[0, 2, 1, 3, 4])
    return net.node("Reshape", [t, four], f"{name}.reshape2",
                    net.values[t].reshape(n, c, h, w))


def _concat(net: _Net, a: str, b: str, name: str) -> str:
    return net.node("Concat", [a, b], name,
                    np.concatenate([net.values[a], net.values[b]], axis=1), axis=1)


def _branch(net: _Net, x: str, c: int, stride: int, p: str) -> str:
    y = net.relu(net.bn(net.conv(x, c, 1, name=f"{p}.pw1"), f"{p}.bn1"), f"{p}.relu1")
    y = net.bn(net.conv(y, c, 3, stride, groups=c, name=f"{p}.dw"), f"{p}.bn2",
               activated=False)
    return net.relu(net.bn(net.conv(y, c, 1, name=f"{p}.pw2"), f"{p}.bn3"), f"{p}.relu2")


def _unit(net: _Net, x: str, out_c: int, stride: int, p: str) -> str:
    c = out_c // 2
    if stride == 1:
        x1, x2 = _split(net, x, f"{p}.split")
        y = _concat(net, x1, _branch(net, x2, c, 1, f"{p}.branch2"), f"{p}.concat")
    else:
        in_c = net.values[x].shape[1]
        b1 = net.bn(net.conv(x, in_c, 3, stride, groups=in_c, name=f"{p}.branch1.dw"),
                    f"{p}.branch1.bn1", activated=False)
        b1 = net.relu(net.bn(net.conv(b1, c, 1, name=f"{p}.branch1.pw"), f"{p}.branch1.bn2"),
                      f"{p}.branch1.relu")
        y = _concat(net, b1, _branch(net, x, c, stride, f"{p}.branch2"), f"{p}.concat")
    return _shuffle(net, y, 2, f"{p}.shuffle")


def shufflenet_v2_small(input_size: int = 32, stages=((48, 2), (96, 2)), num_classes: int = 10,
                        *, seed: int = 0, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """A small ShuffleNetV2: 3x3 stride-2 stem (24 channels), stages of one stride-2
    unit (both branches, concat, shuffle) and stride-1 units (split, branch, concat,
    shuffle), a 1x1 conv to 128 channels, global average pool and a classifier."""
    _check_int("input_size", input_size, 8)
    net = _Net(f"shufflenet_v2_{input_size}", opset, seed)
    x = net.input("input", (1, 3, input_size, input_size),
                  _calib(net.rng, 3, input_size, input_size))
    x = net.relu(net.bn(net.conv(x, 24, 3, 2, name="conv1"), "bn1"), "relu1")
    for si, (out_c, repeats) in enumerate(stages):
        for ui in range(repeats):
            x = _unit(net, x, out_c, 2 if ui == 0 else 1, f"stage{si + 2}.{ui}")
    x = net.relu(net.bn(net.conv(x, 128, 1, name="conv5"), "bn5"), "relu5")
    x = net.flatten(net.gap(x, "avgpool"), "flatten")
    x = net.gemm(x, num_classes, "fc", gain=1.0, logit_std=1.0)
    return net.model([x], "ShuffleNetV2-like network: channel split, concat and shuffle")
