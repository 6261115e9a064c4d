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
def pipeline(name):
    return build_pipeline(quantized(name), ARCH, BUDGET, name=name)
