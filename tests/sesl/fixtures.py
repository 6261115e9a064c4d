"""Quantized example models and their SESL pipelines, built once per test session."""

import functools
import warnings

from compiler.passes.quantize import QuantConfig, quantize
from compiler.pipeline import PassContext, import_model
from compiler.sesl.compile import build_pipeline
from compiler.sesl.plan import Budget
from examples import models
from hw.arch import ArchConfig

ARCH = ArchConfig()
#: The DSP budget of the default SEML arch's MAC units (conv 4x4x9 + dw 4x9 + pw 8x8).
BUDGET = Budget(ARCH.conv_macs + ARCH.dw_macs + ARCH.pw_macs)
BUILDERS = {"mobilenet_v2_small": models.mobilenet_v2_small, "resnet_small": models.resnet,
            "dpd_cnn": models.dpd_cnn}


@functools.cache
def quantized(name):
    graph = import_model(BUILDERS[name](), PassContext(arch=ARCH))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qgraph, _ = quantize(graph, QuantConfig.from_arch(ARCH), None)
    return qgraph


@functools.cache
def pipeline(name, firb=False):
    return build_pipeline(quantized(name), ARCH, BUDGET, name=name + ("_firb" if firb else ""),
                          firb=firb)


def _window(rng, name, op, inp, in_shape, out_c, kernel, stride, pads, simd=1, pe=1,
            lo=-128, hi=127):

    from hw.sesl.config import StageConfig
    c, h, w = in_shape
    oh = (h + pads[0] + pads[2] - kernel[0]) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - kernel[1]) // stride[1] + 1
    m = out_c if op in ("conv",) else c
    params = {}
    if op == "conv":
        params["weights"] = tuple(int(v) for v in rng.integers(-128, 128, m * c * kernel[0]
                                                                * kernel[1]))
    elif op == "depthwise":
        params["weights"] = tuple(int(v) for v in rng.integers(-128, 128, c * kernel[0]
                                                                * kernel[1]))
    if op in ("conv", "depthwise"):
        params["bias"] = tuple(int(v) for v in rng.integers(-5000, 5000, m))
        params["m"] = tuple(int(v) for v in rng.integers(1, 1 << 16, m))
        params["s"] = tuple(int(v) for v in rng.integers(14, 26, m))
    elif op == "avg":
        params["m"] = (int(rng.integers(1, 1 << 16)),) * m
        params["s"] = (int(rng.integers(14, 20)),) * m
    else:
        params["m"], params["s"] = (1,) * m, (0,) * m
    return StageConfig(name=name, op=op, inputs=(inp,), output=f"{name}_out",
                       in_shapes=(in_shape,), out_shape=(m, oh, ow), kernel=kernel,
                       stride=stride, pads=pads, simd=simd, pe=pe, lo=lo, hi=hi,
                       layer_kind=op, **params)


def random_pipeline(seed=0):
    """A small pipeline with every stage kind, random parameters and foldings that do
    not divide the channel counts: two branches off the input joined by a concat, a
    fork joined again by an add, and a fully connected layer over a 2-D window."""
    import numpy as np

    from compiler.sesl import plan
    from hw.sesl.config import PipelineConfig, StageConfig
    rng = np.random.default_rng(seed)
    x = ("x", (5, 7, 9))
    a = _window(rng, "a_conv", "conv", x[0], x[1], 6, (3, 3), (1, 1), (1, 1, 1, 1), 2, 4,
                lo=0)
    b = _window(rng, "b_dw", "depthwise", x[0], x[1], 5, (3, 3), (2, 2), (1, 1, 1, 1), pe=2)
    c = _window(rng, "c_max", "max", a.output, a.out_shape, 6, (3, 3), (2, 2), (1, 1, 1, 1),
                pe=4)
    d = StageConfig(name="d_cat", op="concat", inputs=(b.output, c.output),
                    output="d_cat_out", in_shapes=(b.out_shape, c.out_shape),
                    out_shape=(11, 4, 5), pe=3, input_m=(int(rng.integers(1, 4000)),
                                                         int(rng.integers(1, 4000))),
                    input_s=(11, 12), lo=-100, hi=120, layer_kind="concat")
    e = _window(rng, "e_avg", "avg", d.output, d.out_shape, 11, (2, 2), (1, 1), (0, 0, 0, 0),
                pe=5)
    f = _window(rng, "f_pw", "conv", e.output, e.out_shape, 4, (1, 1), (1, 1), (0, 0, 0, 0),
                3, 3)
    f2 = _window(rng, "f2_pw", "conv", e.output, e.out_shape, 4, (3, 3), (1, 1),
                 (1, 1, 1, 1), 4, 1)
    g = StageConfig(name="g_add", op="add", inputs=(f2.output, f.output), output="g_add_out",
                    in_shapes=(f2.out_shape, f.out_shape), out_shape=f.out_shape, pe=3,
                    input_m=(int(rng.integers(1, 1 << 16)), int(rng.integers(1, 1 << 16))),
                    input_s=(17,), layer_kind="add")
    h = _window(rng, "h_fc", "conv", g.output, g.out_shape, 3, (3, 4), (1, 1), (0, 0, 0, 0),
                4, 2)
    stages = [a, b, c, d, e, f, f2, g, h]
    cycles = plan.steady_cycles(stages, 63)
    fifos = plan.fifo_depths(stages, "x", x[1], cycles)
    return PipelineConfig("random", "x", h.output, x[1], h.out_shape, tuple(stages),
                          tuple(fifos))


def residual_pipeline(seed=0, width=8):
    """input -> 3x3 conv -> 3x3 conv -> add with the input: one skip FIFO."""
    import numpy as np

    from compiler.sesl import plan
    from hw.sesl.config import PipelineConfig, StageConfig
    rng = np.random.default_rng(seed)
    shape = (4, 6, width)
    a = _window(rng, "conv1", "conv", "x", shape, 4, (3, 3), (1, 1), (1, 1, 1, 1), 2, 2, lo=0)
    b = _window(rng, "conv2", "conv", a.output, a.out_shape, 4, (3, 3), (1, 1), (1, 1, 1, 1),
                2, 2)
    add = StageConfig(name="add", op="add", inputs=("x", b.output), output="add_out",
                      in_shapes=(shape, shape), out_shape=shape, pe=4, input_m=(3000, 5000),
                      input_s=(13,), layer_kind="add")
    stages = [a, b, add]
    cycles = plan.steady_cycles(stages, shape[1] * shape[2])
    fifos = plan.fifo_depths(stages, "x", shape, cycles)
    return PipelineConfig("residual", "x", add.output, shape, shape, tuple(stages),
                          tuple(fifos))


def bottleneck_pipeline(seed=0, fused=False):
    """input -> pointwise expand (x3) -> 3x3 depthwise -> pointwise project -> add with
    the input: one inverted residual bottleneck, layer by layer or fused (FIRB)."""
    import numpy as np

    from compiler.sesl import plan
    from compiler.sesl.firb import fuse_bottlenecks
    from hw.sesl.config import PipelineConfig, StageConfig
    rng = np.random.default_rng(seed)
    shape = (4, 6, 8)
    e = _window(rng, "expand", "conv", "x", shape, 12, (1, 1), (1, 1), (0, 0, 0, 0), 4, 1,
                lo=0)
    d = _window(rng, "dw", "depthwise", e.output, e.out_shape, 12, (3, 3), (1, 1),
                (1, 1, 1, 1), pe=2, lo=0)
    p = _window(rng, "project", "conv", d.output, d.out_shape, 4, (1, 1), (1, 1),
                (0, 0, 0, 0), 6, 1)
    p = StageConfig(**{**p.__dict__, "layer_kind": "pointwise"})
    e = StageConfig(**{**e.__dict__, "layer_kind": "pointwise"})
    add = StageConfig(name="add", op="add", inputs=("x", p.output), output="add_out",
                      in_shapes=(shape, shape), out_shape=shape, pe=4, input_m=(3000, 5000),
                      input_s=(13,), layer_kind="add")
    stages = [e, d, p, add]
    cycles = plan.steady_cycles(stages, shape[1] * shape[2])
    fifos = plan.fifo_depths(stages, "x", shape, cycles)
    if fused:
        stages = fuse_bottlenecks(stages)
    return PipelineConfig("firb" if fused else "bottleneck", "x", add.output, shape, shape,
                          tuple(stages), tuple(fifos))
