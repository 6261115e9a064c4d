# amaranth: UnusedElaboratable=no
"""The compact example models (MobileNetV3-small-like, small YOLO-like): build, run in
onnxruntime, import (table activations, squeeze-and-excitation, upsampling), compile with
ISS == golden, follow the float model; on the RTL (slow) equal to the ISS."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import onnx
import pytest

from compiler.compile import compile_model, load_image
from compiler.ir import OpKind
from compiler.pipeline import import_model
from compiler.runner import run_golden_int
from examples import build_models, compact_models
from sim import golden
from tests.compiler.test_frontend import assert_float_matches
from tests.test_examples import run_onnxruntime
from tests.test_system_rtl import ARCH, run_model_on_rtl_and_iss

MODELS = {"mobilenet_v3_small": compact_models.mobilenet_v3_small,
          "yolo_tiny": compact_models.yolo_tiny}


@pytest.mark.parametrize("opset", [13, 14])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compact_example_imports_and_matches(name, opset):
    model = MODELS[name](opset=opset)
    onnx.checker.check_model(model, full_check=True)
    outs = run_onnxruntime(model)
    assert all(np.all(np.isfinite(y)) for y in outs)
    graph = import_model(model)
    assert_float_matches(model, graph)
    kinds = Counter(layer.kind for layer in graph.layers)
    tables = Counter(layer.table_act.function for layer in graph.layers
                     if layer.kind is OpKind.TABLE)
    if name == "mobilenet_v3_small":
        # every HardSwish is one table whether written as an operator or as x * gate
        assert tables["hardswish"] == 6 and tables["hardsigmoid"] == 3
        assert kinds[OpKind.MUL] == 3  # the squeeze-and-excitation gates
    else:
        assert tables["leakyrelu"] == 4 and tables["silu"] == 2
        assert kinds[OpKind.RESIZE] == 1 and kinds[OpKind.CONCAT] == 1
        assert len(graph.outputs) == 2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compact_example_compiles_iss_equals_golden(name, tmp_path):
    """``compile`` runs the program on the ISS against the golden runner (verify); the
    quantized network follows onnxruntime's float output."""
    model = MODELS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_model(model, ARCH, tmp_path / "out", verify=True)
    assert result.program.cycles > 0
    qg = result.graph
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = run_onnxruntime_with(model, x)
    q = golden.quantize(x, qg.tensors[qg.inputs[0]].scale, 8)
    got = run_golden_int(qg, {qg.inputs[0]: q}).outputs
    for out, ref in zip(qg.outputs, want):
        snr = golden.snr_db(ref, (got[out] * qg.tensors[out].scale).reshape(ref.shape))
        assert snr > 15, (name, out, snr)
    manifest = load_image(tmp_path / "out")[3]
    assert len(manifest["outputs"]) == len(qg.outputs)


def run_onnxruntime_with(model, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def test_build_models_writes_the_compact_examples(tmp_path):
    paths = build_models.build(tmp_path, ["mobilenet_v3_small", "yolo_tiny"])
    assert [p.name for p in paths] == ["mobilenet_v3_small.onnx", "yolo_tiny.onnx"]
    for p in paths:
        onnx.checker.check_model(onnx.load(str(p)))


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compact_example_rtl_equals_iss(name, tmp_path):
    summary = run_model_on_rtl_and_iss(MODELS[name](), tmp_path)
    assert summary["rtl_cycles"] > 0
