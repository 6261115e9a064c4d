# amaranth: UnusedElaboratable=no
"""Every table activation, compiled, on all 256 int8 inputs: golden == ISS == RTL (the SEML
core under Verilator, random pauses on the DDR bus)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, load_image
from compiler.runner import run_golden_int
from sim.axi import run_program_rtl
from sim.iss import ISS, decode_activations, encode_activations
from tests.test_system_rtl import ARCH

pytestmark = pytest.mark.rtl

#: Output name -> the nodes computing it from ``x`` (each a different table).
ACTIVATIONS = {
    "sigmoid": [helper.make_node("Sigmoid", ["x"], ["sigmoid"])],
    "tanh": [helper.make_node("Tanh", ["x"], ["tanh"])],
    "hardsigmoid": [helper.make_node("HardSigmoid", ["x"], ["hardsigmoid"], alpha=0.2,
                                     beta=0.5)],
    "hardswish": [helper.make_node("HardSwish", ["x"], ["hardswish"])],
    "silu": [helper.make_node("Sigmoid", ["x"], ["gate"]),
             helper.make_node("Mul", ["x", "gate"], ["silu"])],
    "leakyrelu": [helper.make_node("LeakyRelu", ["x"], ["leakyrelu"], alpha=0.1)],
    "prelu": [helper.make_node("PRelu", ["x", "slope"], ["prelu"])],
}


def _model():
    nodes = [n for group in ACTIVATIONS.values() for n in group]
    slope = numpy_helper.from_array(np.array([0.1, 0.25, -0.3, 0.02], np.float32)
                                    .reshape(4, 1, 1), "slope")
    shape = [1, 4, 16, 16]
    graph = helper.make_graph(
        nodes, "tables", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shape) for o in ACTIVATIONS],
        [slope])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def test_every_table_activation_golden_iss_rtl(tmp_path):
    calib = np.random.default_rng(0).uniform(-6, 6, (8, 4, 16, 16)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_model(_model(), ARCH, tmp_path / "out", calibration=calib)
    arch, program, ddr, manifest = load_image(tmp_path / "out")
    (spec,) = manifest["inputs"]
    # every int8 value once per channel
    x = np.broadcast_to(np.arange(-128, 128), (4, 256)).reshape(1, 4, 16, 16)
    raw = encode_activations(x, spec["bits"])
    ddr[spec["offset"]:spec["offset"] + raw.size] = raw
    iss_ddr = ddr.copy()
    ISS(arch).run(program, iss_ddr, check_written=True)
    rtl_ddr = ddr.copy()
    run_program_rtl(arch, program, rtl_ddr, pause=0.2, seed=3, build_name="seml-system")
    golden = run_golden_int(result.graph, {result.graph.inputs[0]: x}).outputs
    assert len(manifest["outputs"]) == len(ACTIVATIONS)
    for out in manifest["outputs"]:
        span = slice(out["offset"], out["offset"] + out["bytes"])
        iss = decode_activations(iss_ddr[span], arch.act_bits).reshape(x.shape)
        rtl = decode_activations(rtl_ddr[span], arch.act_bits).reshape(x.shape)
        assert np.array_equal(iss, golden[out["name"]]), out["name"]
        assert np.array_equal(rtl, iss), out["name"]
    assert np.array_equal(iss_ddr, rtl_ddr)
